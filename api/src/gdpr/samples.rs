//! What the service's own tests need of the GDPR domain (`crate::module::TestSupport`):
//! who may call each of its operations, and sample data that makes each of them succeed —
//! the citizen's account, a consent of it, and an account to erase with a retention hold.

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use amtsbuch_domain::access::Role::*;
use amtsbuch_domain::gdpr::account::{AccountCommand, AccountKind, AccountState, OpenAccount};
use amtsbuch_domain::gdpr::consent::Sha256Digest;
use amtsbuch_domain::gdpr::AccountId;

use crate::command::{execute, refused, Meta};
use crate::module::{AccessRow, SampleValues, Samples, Target, Target::Nobody};
use crate::AppState;

/// A citizen acts for its own account; the operation's other roles for anybody's.
const OWN_FOR_CITIZENS: Target = Target::Subject {
    own_only: &[Citizen],
};
/// Every role of the operation acts for anybody's account.
const ANYBODY: Target = Target::Subject { own_only: &[] };

/// Who may call each GDPR operation, and whose data it acts on.
pub const ACCESS: &[AccessRow] = &[
    // Servicekonto accounts: the Servicekonto back end opens them and links identities as
    // an operator; a citizen reads and changes its own (the handlers check the account).
    AccessRow::roles("POST", "/accounts", &[Operator], Nobody),
    AccessRow::roles(
        "GET",
        "/accounts/{id}",
        &[Citizen, Dpo, Operator],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "PUT",
        "/accounts/{id}/master-data",
        &[Citizen, Operator],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "POST",
        "/accounts/{id}/identity-links",
        &[Operator],
        ANYBODY,
    ),
    AccessRow::roles(
        "POST",
        "/accounts/{id}/deletion-request",
        &[Citizen, Operator],
        OWN_FOR_CITIZENS,
    ),
    // Consents: given, changed and withdrawn by the citizen (or entered by staff of the
    // Servicekonto from paper), revoked by the data protection officer.
    AccessRow::roles("POST", "/consents", &[Citizen, Operator], OWN_FOR_CITIZENS),
    // The token's own consents: the request names nobody.
    AccessRow::roles("GET", "/consents", &[Citizen], Nobody),
    AccessRow::roles("GET", "/consents/{id}", &[Citizen, Dpo], OWN_FOR_CITIZENS),
    AccessRow::roles(
        "POST",
        "/consents/{id}/withdrawal",
        &[Citizen, Operator],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "POST",
        "/consents/{id}/renewal",
        &[Citizen, Operator],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "POST",
        "/consents/{id}/scope",
        &[Citizen, Operator],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles("POST", "/consents/{id}/revocation", &[Dpo], ANYBODY),
    AccessRow::roles(
        "GET",
        "/consents/{id}/receipt",
        &[Citizen, Dpo],
        OWN_FOR_CITIZENS,
    ),
    // A disclosure is asked for by whoever wants to use the data: the recipient is the
    // authority its token is bound to.
    AccessRow::roles("POST", "/disclosures", &[Authority, Fachverfahren], ANYBODY),
    AccessRow::roles("GET", "/dpo/subjects/{subject}/consents", &[Dpo], ANYBODY),
    AccessRow::roles(
        "GET",
        "/dpo/subjects/{subject}/disclosures",
        &[Dpo],
        ANYBODY,
    ),
    AccessRow::roles("GET", "/dpo/subjects/{subject}/export", &[Dpo], ANYBODY),
    AccessRow::roles("POST", "/dpo/subjects/{subject}/erasure", &[Dpo], ANYBODY),
    AccessRow::roles("GET", "/dpo/processing", &[Dpo], Nobody),
    AccessRow::roles("GET", "/dpo/consents/expiring", &[Dpo], Nobody),
    // The sample hold is placed on a third subject, the same for every caller.
    AccessRow::roles("POST", "/retention-holds", &[Dpo, Operator], Nobody),
    AccessRow::roles(
        "POST",
        "/retention-holds/{id}/release",
        &[Dpo, Operator],
        ANYBODY,
    ),
];

/// Operations that change the samples for good, in the order they run after every other
/// operation: revoking before withdrawing (a withdrawal of an ended consent is a no-op, a
/// revocation of one is refused), the deletion request after the changes of the account,
/// the hold released before the erasure it would forbid.
pub const LAST: &[(&str, &str)] = &[
    ("POST", "/consents/{id}/revocation"),
    ("POST", "/consents/{id}/withdrawal"),
    ("POST", "/accounts/{id}/deletion-request"),
    ("POST", "/retention-holds/{id}/release"),
    ("POST", "/dpo/subjects/{subject}/erasure"),
];

/// The account the sample erasure erases, opened by `seed` beside the citizen's `citizen`
/// (with the sample hold that is released before the erasure): the citizen's id with its
/// last byte changed, so that each citizen's samples have one of their own.
fn erasable_beside(citizen: &str) -> String {
    let mut bytes = *uuid::Uuid::parse_str(citizen)
        .unwrap_or_default()
        .as_bytes();
    bytes[15] ^= 0xe5;
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// The GDPR samples.
pub static SAMPLES: GdprSamples = GdprSamples;

/// The notice text of the sample consents.
pub const NOTICE_TEXT: &str = "Einwilligung nach § 10 Abs. 1 Satz 2 SächsEGovG (Testfassung)";

/// The samples: the account is the citizen's (`{id}` of `/accounts/…` and `{subject}` of
/// `/dpo/subjects/…` but the erasure), so that a citizen's token owns it; `erasable` is the
/// erasure's, with the sample hold on it; `consent` and `hold` are fixed
/// ids that need not exist until `seed` gives and places them.
#[derive(Debug, Clone, Copy)]
pub struct GdprSamples;

impl Samples for GdprSamples {
    fn values(&self, citizen: &str) -> SampleValues {
        [
            ("account", citizen),
            ("consent", "0193a1b2-0000-7000-8000-0000000000c1"),
            ("hold", "0193a1b2-0000-7000-8000-000000000401"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain([("erasable".to_owned(), erasable_beside(citizen))])
        .collect()
    }

    /// Opens the two accounts, through the service layer because `POST /accounts` chooses
    /// account ids itself, then gives the citizen's a consent and places a retention hold
    /// on the erasable one through the API. The state must have a sealer.
    fn seed<'a>(
        &'a self,
        app: &'a axum::Router,
        state: &'a AppState,
        operator: &'a str,
        values: &'a mut SampleValues,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let account = values
                .get("account")
                .and_then(|a| uuid::Uuid::parse_str(a).ok())
                .map(AccountId)
                .expect("the sample account is a UUID");
            let erasable = values
                .get("erasable")
                .and_then(|a| uuid::Uuid::parse_str(a).ok())
                .map(AccountId)
                .expect("the erasable sample account is a UUID");
            for id in [account, erasable] {
                let master_data = serde_json::from_value(json!({
                    "type": "person", "given_names": "Erika", "family_name": "Mustermann"
                }))
                .expect("master data");
                let command = AccountCommand::Open(OpenAccount {
                    account_id: id,
                    kind: AccountKind::Personal,
                    master_data,
                    opened_at: chrono::Utc::now(),
                    expires_at: None,
                });
                execute::<AccountState>(
                    state,
                    &id.stream_id(),
                    &command,
                    |e| refused("account-refused", e),
                    &Meta::system("test"),
                )
                .await
                .expect("open the sample account");
            }
            let given = call(
                app,
                "POST",
                "/consents",
                operator,
                self.body(values, "POST", "/consents"),
            )
            .await;
            values.insert("consent".into(), id_in(&given, "consent_id"));
            let until = chrono::Utc::now() + chrono::Duration::days(365);
            let hold = call(
                app,
                "POST",
                "/retention-holds",
                operator,
                Some(json!({
                    "subject": erasable.to_string(),
                    "reason": "open_procedure",
                    "source": "procedure-1",
                    "until": amtsbuch_domain::record::format_timestamp(&until),
                })),
            )
            .await;
            values.insert("hold".into(), id_in(&hold, "hold_id"));
        })
    }

    /// A second hold on the erasable account that nothing releases, so that no erasure
    /// removes it.
    fn keep<'a>(
        &'a self,
        app: &'a axum::Router,
        _state: &'a AppState,
        operator: &'a str,
        values: &'a SampleValues,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let erasable = values.get("erasable").cloned().unwrap_or_default();
            call(
                app,
                "POST",
                "/retention-holds",
                operator,
                Some(json!({ "subject": erasable, "reason": "voucher", "source": "payment-kept" })),
            )
            .await;
        })
    }

    fn param(&self, values: &SampleValues, first: &str, param: &str) -> Option<String> {
        let name = match (first, param) {
            ("accounts", "{id}") | ("dpo", "{subject}") => "account",
            ("consents", "{id}") => "consent",
            ("retention-holds", "{id}") => "hold",
            _ => return None,
        };
        values.get(name).cloned()
    }

    /// The erasure acts on an account of its own: other modules' samples give the citizen's
    /// account duties of their own (cash records, say) that rightly forbid erasing it.
    fn path_param(&self, values: &SampleValues, path: &str, param: &str) -> Option<String> {
        if path == "/dpo/subjects/{subject}/erasure" && param == "{subject}" {
            return values.get("erasable").cloned();
        }
        let first = path.split('/').nth(1).unwrap_or_default();
        self.param(values, first, param)
    }

    fn body(&self, values: &SampleValues, method: &str, path: &str) -> Option<Value> {
        let account = values.get("account").cloned().unwrap_or_default();
        let master_data =
            json!({ "type": "person", "given_names": "Erika", "family_name": "Mustermann" });
        let notice = json!({
            "version": "2026-01",
            "sha256": Sha256Digest::of(NOTICE_TEXT.as_bytes()).to_hex(),
        });
        Some(match (method, path) {
            ("POST", "/accounts") => json!({ "kind": "personal", "master_data": master_data }),
            ("PUT", "/accounts/{id}/master-data") => json!({ "master_data": {
                "type": "person", "given_names": "Erika", "family_name": "Musterfrau" } }),
            ("POST", "/accounts/{id}/identity-links") => {
                json!({ "method": { "kind": "eid" }, "pseudonym": "eid-sample-pseudonym" })
            }
            ("POST", "/consents") => json!({
                "subject": account,
                "scope": {
                    "categories": ["stammdaten", "kommunikationsdaten"],
                    "purposes": ["antrag-vorbefuellung"],
                    "recipients": ["lra-meissen"],
                },
                "notice": notice,
                "channel": "servicekonto_web",
            }),
            ("POST", "/consents/{id}/renewal") => {
                json!({ "notice": notice, "channel": "amt24" })
            }
            ("POST", "/consents/{id}/scope") => json!({ "scope": {
                "categories": ["stammdaten"],
                "purposes": ["antrag-vorbefuellung"],
                "recipients": ["lra-meissen"],
            } }),
            ("POST", "/consents/{id}/revocation") => json!({ "reason": "purpose_fulfilled" }),
            ("POST", "/disclosures") => json!({
                "subject": account,
                "categories": ["stammdaten"],
                "purpose": "antrag-vorbefuellung",
            }),
            // On another subject, so that it does not hold the sample account.
            ("POST", "/retention-holds") => json!({
                "subject": "0193a1b2-0000-7000-8000-00000000ac02",
                "reason": "voucher",
                "source": "payment-1",
            }),
            _ => return None,
        })
    }
}

/// `method uri` through the router as the holder of `token`, which must answer `201`; the
/// body as JSON.
async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        ))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(
        status,
        axum::http::StatusCode::CREATED,
        "{method} {uri}: {json}"
    );
    json
}

fn id_in(body: &Value, member: &str) -> String {
    body[member]
        .as_str()
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .map(|u| u.to_string())
        .unwrap_or_else(|| panic!("no {member} in {body}"))
}
