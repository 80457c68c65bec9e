//! The payment provider, as an HTTP client of the XBezahldienste REST interface: create a
//! payment request, read a transaction's status, and check a push callback's signature.
//!
//! The calls run `ureq` (blocking, rustls) on tokio's blocking pool. Authentication is a
//! bearer token or a TLS client certificate (mutual TLS), as configured; the provider's
//! server certificate is checked against the platform's roots or a configured CA.
//!
//! What the provider answers is read strictly: a status or amount Amtsbuch cannot read is
//! an error, never a guess. A push callback is only a hint that something changed; the
//! status is believed only from [`Provider::status`].

use std::sync::Arc;
use std::time::Duration;

use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use amtsbuch_domain::payments::{AttemptStatus, Cents, Method, Reference, TransactionId};

/// How Amtsbuch authenticates to the provider.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// A TLS client certificate: the PEM chain and its PEM private key.
    MutualTls {
        chain_pem: Vec<u8>,
        key_pem: Vec<u8>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer(<secret>)"),
            Self::MutualTls { .. } => f.write_str("MutualTls(<certificate>)"),
        }
    }
}

/// Where the provider is and how to talk to it.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The provider's name in the callback route `/callbacks/payments/{name}`.
    pub name: String,
    /// The base URL, up to (not including) `/paymenttransaction`.
    pub base_url: String,
    /// Identifies the calling online service (≤ 36 characters).
    pub originator_id: String,
    /// Identifies the responsible authority, e.g. its AGS (≤ 36 characters).
    pub endpoint_id: String,
    pub auth: Auth,
    /// The secret the provider signs push callbacks with.
    pub callback_secret: Vec<u8>,
    /// A CA certificate (PEM) to trust instead of the platform's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// How long one call may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("originator_id", &self.originator_id)
            .field("endpoint_id", &self.endpoint_id)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// One item of a payment request: a booking line.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub gross_amount: i64,
}

/// A payment request (XBezahldienste `POST /paymenttransaction/…`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequest {
    /// Amtsbuch's id of the request; the same id again gets the same transaction.
    pub request_id: Uuid,
    pub currency: &'static str,
    pub gross_amount: i64,
    /// The Verwendungszweck: the Kassenzeichen.
    pub purpose: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the provider sends the payer back.
    pub redirect_url: String,
    /// Where the provider sends push callbacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    pub items: Vec<Item>,
}

/// What the provider says of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInformation {
    pub request_id: String,
    pub transaction_id: TransactionId,
    /// Where to send the payer (the payment page).
    pub transaction_url: String,
    pub reference: Option<Reference>,
    pub method: Option<Method>,
    pub status: AttemptStatus,
    pub gross: Cents,
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not be reached, timed out, or answered 5xx: try again later.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the call (4xx).
    #[error("the payment provider refused the call with {status}: {detail}")]
    Refused { status: u16, detail: String },
    /// The answer is not what XBezahldienste describes.
    #[error("the payment provider's answer cannot be read: {0}")]
    Malformed(String),
    /// The configuration cannot be used (a certificate that does not parse).
    #[error("the payment provider's configuration is unusable: {0}")]
    Config(String),
}

/// A configured provider.
#[derive(Clone)]
pub struct Provider {
    config: Arc<ProviderConfig>,
    agent: ureq::Agent,
    callback_key: hmac::Key,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InfoDoc {
    transaction_id: String,
    transaction_url: String,
    #[serde(default)]
    transaction_reference: Option<String>,
    #[serde(default)]
    payment_method: Option<String>,
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionDoc {
    request_id: String,
    gross_amount: i64,
    payment_information: InfoDoc,
}

fn method(s: &str) -> Method {
    match s {
        "GIROPAY" => Method::Giropay,
        "PAYDIRECT" => Method::Paydirect,
        "CREDITCARD" => Method::Creditcard,
        "PAYPAL" => Method::Paypal,
        _ => Method::Other,
    }
}

fn status(s: &str) -> Result<AttemptStatus, ProviderError> {
    Ok(match s {
        "INITIAL" => AttemptStatus::Initial,
        "PAYED" => AttemptStatus::Payed,
        "CANCELED" => AttemptStatus::Canceled,
        "FAILED" => AttemptStatus::Failed,
        other => {
            return Err(ProviderError::Malformed(format!(
                "unknown status {:?}",
                other.chars().take(20).collect::<String>()
            )))
        }
    })
}

/// Reads a transaction document.
pub fn read_information(body: &[u8]) -> Result<PaymentInformation, ProviderError> {
    let doc: TransactionDoc =
        serde_json::from_slice(body).map_err(|e| ProviderError::Malformed(e.to_string()))?;
    let info = doc.payment_information;
    Ok(PaymentInformation {
        request_id: doc.request_id,
        transaction_id: TransactionId::parse(&info.transaction_id)
            .map_err(|e| ProviderError::Malformed(e.to_string()))?,
        transaction_url: info.transaction_url,
        reference: info
            .transaction_reference
            .as_deref()
            .map(Reference::parse)
            .transpose()
            .map_err(|e| ProviderError::Malformed(e.to_string()))?,
        method: info.payment_method.as_deref().map(method),
        status: status(&info.status)?,
        gross: Cents::new(doc.gross_amount).map_err(|e| ProviderError::Malformed(e.to_string()))?,
    })
}

/// The `X-Signature` value of a callback body: `sha256=` and the hex HMAC-SHA-256.
pub fn sign_callback(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, body);
    let mut s = String::from("sha256=");
    for b in tag.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Provider {
    pub fn new(config: ProviderConfig) -> Result<Self, ProviderError> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if let Auth::MutualTls { chain_pem, key_pem } = &config.auth {
            let chain = ureq::tls::parse_pem(chain_pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c.to_owned())),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<Certificate<'static>>, _>>()
                .map_err(|e| ProviderError::Config(format!("client certificate: {e}")))?;
            if chain.is_empty() {
                return Err(ProviderError::Config(
                    "the client certificate file holds no certificate".into(),
                ));
            }
            let key = PrivateKey::from_pem(key_pem)
                .map_err(|e| ProviderError::Config(format!("client key: {e}")))?
                .to_owned();
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        if let Some(ca) = &config.ca_pem {
            let certs = ureq::tls::parse_pem(ca)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c.to_owned())),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<Certificate<'static>>, _>>()
                .map_err(|e| ProviderError::Config(format!("CA certificate: {e}")))?;
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .tls_config(tls.build())
            .build()
            .into();
        let callback_key = hmac::Key::new(hmac::HMAC_SHA256, &config.callback_secret);
        Ok(Provider {
            config: Arc::new(config),
            agent,
            callback_key,
        })
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    fn base(&self) -> String {
        format!(
            "{}/paymenttransaction/{}/{}",
            self.config.base_url.trim_end_matches('/'),
            self.config.originator_id,
            self.config.endpoint_id
        )
    }

    async fn call(
        &self,
        method: &'static str,
        url: String,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ProviderError> {
        let agent = self.agent.clone();
        let bearer = match &self.config.auth {
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
            Auth::MutualTls { .. } => None,
        };
        tokio::task::spawn_blocking(move || {
            let result = match body {
                Some(body) => {
                    let mut request = agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("accept", "application/json");
                    if let Some(b) = &bearer {
                        request = request.header("authorization", b);
                    }
                    request.send(&body[..])
                }
                None => {
                    debug_assert_eq!(method, "GET");
                    let mut request = agent.get(&url).header("accept", "application/json");
                    if let Some(b) = &bearer {
                        request = request.header("authorization", b);
                    }
                    request.call()
                }
            };
            let mut response =
                result.map_err(|e| ProviderError::Unavailable(format!("{method}: {e}")))?;
            let code = response.status().as_u16();
            let body = response
                .body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_vec()
                .map_err(|e| ProviderError::Unavailable(format!("{method}: {e}")))?;
            match code {
                200..=299 => Ok(body),
                500..=599 => Err(ProviderError::Unavailable(format!(
                    "{method}: status {code}"
                ))),
                _ => {
                    let detail = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect();
                    Err(ProviderError::Refused {
                        status: code,
                        detail,
                    })
                }
            }
        })
        .await
        .map_err(|e| ProviderError::Unavailable(e.to_string()))?
    }

    /// Creates a payment request and answers the new transaction (status `INITIAL`).
    pub async fn create(
        &self,
        request: &PaymentRequest,
    ) -> Result<PaymentInformation, ProviderError> {
        let body = serde_json::to_vec(request).map_err(|e| ProviderError::Config(e.to_string()))?;
        let answer = self.call("POST", self.base(), Some(body)).await?;
        let info = read_information(&answer)?;
        if info.request_id != request.request_id.to_string() {
            return Err(ProviderError::Malformed(
                "the answer is for another request".into(),
            ));
        }
        Ok(info)
    }

    /// Reads a transaction's status: the only source of a status Amtsbuch believes.
    pub async fn status(
        &self,
        transaction: &TransactionId,
    ) -> Result<PaymentInformation, ProviderError> {
        let url = format!("{}/{}", self.base(), transaction.as_str());
        let answer = self.call("GET", url, None).await?;
        let info = read_information(&answer)?;
        if &info.transaction_id != transaction {
            return Err(ProviderError::Malformed(
                "the answer is for another transaction".into(),
            ));
        }
        Ok(info)
    }

    /// Whether `signature` (the `X-Signature` header) signs `body` under the callback
    /// secret, compared in constant time.
    pub fn verify_callback(&self, body: &[u8], signature: Option<&str>) -> bool {
        let Some(tag) = signature
            .and_then(|s| s.strip_prefix("sha256="))
            .and_then(unhex)
        else {
            return false;
        };
        hmac::verify(&self.callback_key, body, &tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_documents_are_read_strictly() {
        let doc = br#"{"requestId":"r","grossAmount":2500,"paymentInformation":{"transactionId":"T1","transactionUrl":"http://x/pay/T1","transactionReference":"SIM-T1","paymentMethod":"GIROPAY","status":"PAYED","statusDetail":"paid"}}"#;
        let info = read_information(doc).expect("read");
        assert_eq!(info.status, AttemptStatus::Payed);
        assert_eq!(info.method, Some(Method::Giropay));
        assert_eq!(info.gross, Cents::new(2500).expect("cents"));
        for bad in [
            &br#"{"requestId":"r","grossAmount":2500,"paymentInformation":{"transactionId":"T1","transactionUrl":"u","status":"PAID"}}"#[..],
            br#"{"requestId":"r","grossAmount":-1,"paymentInformation":{"transactionId":"T1","transactionUrl":"u","status":"PAYED"}}"#,
            br#"{"requestId":"r","grossAmount":25.5,"paymentInformation":{"transactionId":"T1","transactionUrl":"u","status":"PAYED"}}"#,
            br#"{"requestId":"r","grossAmount":1,"paymentInformation":{"transactionId":"T 1","transactionUrl":"u","status":"PAYED"}}"#,
            b"not json",
        ] {
            assert!(read_information(bad).is_err());
        }
    }

    #[test]
    fn an_unusable_client_certificate_is_a_configuration_error() {
        let config = |auth: Auth, ca: Option<&[u8]>| ProviderConfig {
            name: "epaybl".into(),
            base_url: "https://127.0.0.1:9".into(),
            originator_id: "o".into(),
            endpoint_id: "e".into(),
            auth,
            callback_secret: vec![],
            ca_pem: ca.map(<[u8]>::to_vec),
            timeout: Duration::from_secs(1),
        };
        let empty = Auth::MutualTls {
            chain_pem: b"no certificate here".to_vec(),
            key_pem: vec![],
        };
        assert!(matches!(
            Provider::new(config(empty, None)),
            Err(ProviderError::Config(_))
        ));
        let broken = Auth::MutualTls {
            chain_pem: b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".to_vec(),
            key_pem: vec![],
        };
        assert!(matches!(
            Provider::new(config(broken, None)),
            Err(ProviderError::Config(_))
        ));
        let bad_ca = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            Provider::new(config(Auth::Bearer("t".into()), Some(bad_ca))),
            Err(ProviderError::Config(_))
        ));
    }

    #[test]
    fn callbacks_are_signed_with_the_shared_secret() {
        let provider = Provider::new(ProviderConfig {
            name: "sim".into(),
            base_url: "http://127.0.0.1:9".into(),
            originator_id: "o".into(),
            endpoint_id: "e".into(),
            auth: Auth::Bearer("token-value".into()),
            callback_secret: b"secret-value".to_vec(),
            ca_pem: None,
            timeout: Duration::from_secs(1),
        })
        .expect("provider");
        let body = br#"{"transactionId":"T1"}"#;
        let good = sign_callback(b"secret-value", body);
        assert!(provider.verify_callback(body, Some(&good)));
        assert!(!provider.verify_callback(body, Some(&sign_callback(b"other", body))));
        assert!(!provider.verify_callback(b"{}", Some(&good)));
        assert!(!provider.verify_callback(body, None));
        assert!(!provider.verify_callback(body, Some("sha256=zz")));
        assert!(!provider.verify_callback(body, Some(&good[7..])));
        let printed = format!("{provider:?}");
        assert!(!printed.contains("secret-value") && !printed.contains("token-value"));
    }
}
