//! The GDPR sweeper: what must happen because time passed, without anybody asking.
//!
//! Every interval it erases temporary identifications whose expiry has passed (unless a
//! retention duty holds them; they are tried again later), and records `ConsentExpired`
//! for consents whose term ran out. Validity never waits for the sweeper — expiry is a
//! function of time in the domain — the sweeper only makes the log say so. One process per
//! database sweeps (a lease), and every step is safe to repeat.

use std::time::Duration;

use chrono::Utc;
use clap::{Args, FromArgMatches};

use amtsbuch_domain::gdpr::consent::{ConsentCommand, ConsentState, RecordConsentExpiry};
use amtsbuch_infra::lease::Lease;
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::gdpr as models;

use super::dpo::{erase_subject, Erasure};
use crate::command::{execute, refused, Meta};
use crate::module::Jobs;
use crate::problem::Problem;
use crate::AppState;

/// The sweeper as a background job of `serve`, with its flag.
pub const JOBS: Jobs = Jobs {
    args: SweepArgs::augment_args,
    spawn: spawn_from_args,
};

/// The flag of `serve` that tunes the sweeper.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// How often expired temporary accounts are erased and expired consents recorded.
    #[arg(long, env = "AMTSBUCH_SWEEP_INTERVAL_SECS", default_value_t = 60)]
    sweep_interval_secs: u64,
}

fn spawn_from_args(
    state: &AppState,
    args: &clap::ArgMatches,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let args = SweepArgs::from_arg_matches(args)?;
    Ok(vec![spawn(
        state.clone(),
        Duration::from_secs(args.sweep_interval_secs.max(1)),
    )])
}

/// Start sweeping every `every`; the task ends with the process.
pub fn spawn(state: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let lease = match Lease::acquire(&state.store, "amtsbuch_gdpr_sweeper", every).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "GDPR sweeper cannot take its lease; retrying");
                    tokio::time::sleep(every).await;
                    continue;
                }
            };
            tracing::info!("this process runs the GDPR sweeper");
            // Stop as soon as the lease is lost, not at the next interval: another process
            // may sweep from then on.
            while lease.is_held() {
                if let Err(e) = sweep(&state).await {
                    tracing::warn!(status = e.status.as_u16(), detail = %e.detail, "GDPR sweep failed; retrying at the next interval");
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = lease.lost() => {}
                }
            }
            tracing::warn!("GDPR sweeper lost its lease; standing by");
        }
    })
}

/// One sweep. Returns how many subjects were erased and consents marked expired. A
/// subject whose erasure fails is logged and left for the next sweep; a failure to read
/// what is due ends the sweep with the error.
pub async fn sweep(state: &AppState) -> Result<(usize, usize), Problem> {
    if state.sealer.is_none() {
        return Ok((0, 0));
    }
    let db = ReadDb::new(&state.store);
    let now = Utc::now();
    let meta = Meta::system("gdpr-sweeper");
    let mut erased = 0;
    for subject in models::accounts_due_for_erasure(&db, now).await? {
        match erase_subject(state, subject, Erasure::TemporaryExpired, &meta).await {
            Ok(_) => {
                erased += 1;
                tracing::info!(subject = %subject, "temporary identification expired and erased");
            }
            Err(p) if p.kind == "retention-hold" => {
                tracing::info!(subject = %subject, "expired temporary identification kept: a retention duty holds it");
            }
            // One subject that cannot be erased now must not keep the others, and the
            // expiries below, waiting: it is tried again at the next sweep.
            Err(p) => {
                tracing::warn!(subject = %subject, status = p.status.as_u16(), detail = %p.detail, "expired temporary identification not erased; retrying at the next sweep");
            }
        }
    }
    let mut expired = 0;
    for consent_id in models::consents_due_for_expiry(&db, now).await? {
        let command = ConsentCommand::RecordExpiry(RecordConsentExpiry { now });
        let done = execute::<ConsentState>(
            state,
            &consent_id.stream_id(),
            &command,
            |e| refused("consent-refused", e),
            &meta,
        )
        .await;
        match done {
            Ok(d) if d.outcome.is_some() => expired += 1,
            Ok(_) => {}
            // Renewed or ended meanwhile: nothing to record.
            Err(p) if p.kind == "consent-refused" => {}
            Err(p) => return Err(p),
        }
    }
    Ok((erased, expired))
}
