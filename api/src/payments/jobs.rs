//! The flags of `serve` that point Amtsbuch at a payment provider (XBezahldienste REST):
//! its base URL, the originator and endpoint ids it issued, a bearer token or a TLS client
//! certificate, a CA to trust, the secret it signs callbacks with, and this service's
//! public base URL for the callbacks. Without `--payment-provider-url` no provider is
//! configured: checkout and the payer's return answer `503 provider-not-configured`.
//!
//! `spawn` keeps the configured provider in the state's module values, where the handlers
//! find it, and starts the payment policy's process manager (`super::policy`), which runs
//! in one process per database at a time (a lease).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, FromArgMatches};

use super::provider::{Auth, Provider, ProviderConfig};
use super::routes::Configured;
use crate::module::Jobs;
use crate::AppState;

/// The provider's configuration as flags of `serve`.
pub const JOBS: Jobs = Jobs {
    args: ProviderArgs::augment_args,
    spawn: spawn_from_args,
};

/// The flags of `serve` that configure the payment provider.
#[derive(Debug, Args)]
pub struct ProviderArgs {
    /// The provider's base URL, up to (not including) `/paymenttransaction`.
    #[arg(long, env = "AMTSBUCH_PAYMENT_PROVIDER_URL")]
    payment_provider_url: Option<String>,
    /// The provider's name in the callback route `/callbacks/payments/{name}`.
    #[arg(long, env = "AMTSBUCH_PAYMENT_PROVIDER_NAME", default_value = "epaybl")]
    payment_provider_name: String,
    /// The originator id the provider issued for this online service.
    #[arg(
        long,
        env = "AMTSBUCH_PAYMENT_ORIGINATOR_ID",
        default_value = "amtsbuch"
    )]
    payment_originator_id: String,
    /// The endpoint id of the authority at the provider (often its AGS).
    #[arg(long, env = "AMTSBUCH_PAYMENT_ENDPOINT_ID", default_value = "amtsbuch")]
    payment_endpoint_id: String,
    /// A bearer token for the provider (or use a client certificate).
    #[arg(long, env = "AMTSBUCH_PAYMENT_PROVIDER_TOKEN", hide_env_values = true)]
    payment_provider_token: Option<String>,
    /// A TLS client certificate chain (PEM) for mutual TLS, with its key.
    #[arg(
        long,
        env = "AMTSBUCH_PAYMENT_CLIENT_CERT",
        requires = "payment_client_key"
    )]
    payment_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        env = "AMTSBUCH_PAYMENT_CLIENT_KEY",
        requires = "payment_client_cert"
    )]
    payment_client_key: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for the provider instead of the platform's roots.
    #[arg(long, env = "AMTSBUCH_PAYMENT_PROVIDER_CA")]
    payment_provider_ca: Option<PathBuf>,
    /// The secret the provider signs push callbacks with (HMAC-SHA-256).
    #[arg(long, env = "AMTSBUCH_PAYMENT_CALLBACK_SECRET", hide_env_values = true)]
    payment_callback_secret: Option<String>,
    /// This service's public base URL, to which the provider sends callbacks.
    #[arg(long, env = "AMTSBUCH_PAYMENT_NOTIFY_BASE")]
    payment_notify_base: Option<String>,
    /// How long one provider call may take, in milliseconds.
    #[arg(
        long,
        env = "AMTSBUCH_PAYMENT_PROVIDER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    payment_provider_timeout_ms: u64,
}

fn spawn_from_args(
    state: &AppState,
    args: &clap::ArgMatches,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let args = ProviderArgs::from_arg_matches(args)?;
    if let Some(configured) = configure(args)? {
        tracing::info!(
            provider = %configured.provider.config().name,
            base_url = %configured.provider.config().base_url,
            "payment provider configured"
        );
        state.modules.insert(configured);
    }
    Ok(vec![super::policy::spawn(
        state.clone(),
        Duration::from_millis(500),
    )])
}

/// The provider the flags describe, if any.
pub fn configure(args: ProviderArgs) -> anyhow::Result<Option<Configured>> {
    let Some(base_url) = args.payment_provider_url else {
        return Ok(None);
    };
    let read =
        |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let auth = match (
        args.payment_provider_token,
        args.payment_client_cert,
        args.payment_client_key,
    ) {
        (Some(token), None, None) => Auth::Bearer(token),
        (None, Some(cert), Some(key)) => Auth::MutualTls {
            chain_pem: read(&cert)?,
            key_pem: read(&key)?,
        },
        _ => anyhow::bail!(
            "--payment-provider-url needs either --payment-provider-token or --payment-client-cert with --payment-client-key"
        ),
    };
    let secret = args
        .payment_callback_secret
        .filter(|s| !s.is_empty())
        .context("--payment-provider-url needs --payment-callback-secret")?;
    let notify_base = args.payment_notify_base.context(
        "--payment-provider-url needs --payment-notify-base, this service's public base URL",
    )?;
    let provider = Provider::new(ProviderConfig {
        name: args.payment_provider_name,
        base_url,
        originator_id: args.payment_originator_id,
        endpoint_id: args.payment_endpoint_id,
        auth,
        callback_secret: secret.into_bytes(),
        ca_pem: args.payment_provider_ca.as_ref().map(read).transpose()?,
        timeout: Duration::from_millis(args.payment_provider_timeout_ms.max(1)),
    })?;
    Ok(Some(Configured {
        provider,
        notify_base,
    }))
}
