//! What the service's own tests need of the applications domain
//! (`crate::module::TestSupport`): who may call each operation, and sample data that makes
//! each succeed — a form with a version being edited, a form in force, a directory naming
//! it, and for the subject an application being drafted and one submitted.

use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use uuid::Uuid;

use amtsbuch_domain::access::Role::*;
use amtsbuch_domain::applications::application::{
    ApplicationCommand, ApplicationState, Dues, Pinned, Responsible,
};
use amtsbuch_domain::applications::directory::PaymentPolicy;
use amtsbuch_domain::applications::form::FormState;
use amtsbuch_domain::applications::{ApplicationId, FormId, Leika, Place, Sha256, SubjectId};

use crate::command::{current, execute, refused, Meta};
use crate::module::{AccessRow, SampleValues, Samples, Target, Target::Nobody};
use crate::AppState;

/// A public operation: anybody, without a token.
const fn public(method: &'static str, path: &'static str) -> AccessRow {
    AccessRow {
        method,
        path,
        roles: None,
        target: Nobody,
    }
}

/// A citizen acts on its own applications; the operation's other roles on those of every
/// applicant that reach them.
const OWN_FOR_CITIZENS: Target = Target::HiddenSubject {
    own_only: &[Citizen],
};
/// Every role of the operation reaches every applicant's application (of its authority).
const ANY_APPLICANT: Target = Target::Subject { own_only: &[] };

const OFFICIALS: &[amtsbuch_domain::access::Role] = &[Authority, Fachverfahren];

/// Who may call each operation of the applications domain, and whose data it acts on.
pub const ACCESS: &[AccessRow] = &[
    // The directory is imported by the operator and public to read, like FIT-Connect's
    // routing API.
    AccessRow::roles("PUT", "/responsibilities", &[Operator], Nobody),
    public("GET", "/services"),
    // Forms are edited by the operator of the form editor and public to read: a portal
    // renders them for everybody.
    AccessRow::roles("POST", "/forms", &[Operator], Nobody),
    public("GET", "/forms/{form}"),
    AccessRow::roles("POST", "/forms/{form}/versions", &[Operator], Nobody),
    public("GET", "/forms/{form}/versions/{v}"),
    AccessRow::roles("PUT", "/forms/{form}/versions/{v}", &[Operator], Nobody),
    AccessRow::roles(
        "POST",
        "/forms/{form}/versions/{v}/publication",
        &[Operator],
        Nobody,
    ),
    AccessRow::roles(
        "POST",
        "/forms/{form}/versions/{v}/retirement",
        &[Operator],
        Nobody,
    ),
    // Applications: the citizen applies for its own account (the token's); the authority's
    // officials and Fachverfahren work on those addressed to them.
    AccessRow::roles("POST", "/applications", &[Citizen], Nobody),
    AccessRow::roles("GET", "/applications", OFFICIALS, Nobody),
    AccessRow::roles(
        "GET",
        "/applications/{id}",
        &[Citizen, Authority, Fachverfahren],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "GET",
        "/applications/{id}/status",
        &[Citizen, Authority, Fachverfahren],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "PUT",
        "/applications/{id}/data",
        &[Citizen],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "PUT",
        "/applications/{id}/attachments/{name}",
        &[Citizen],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "POST",
        "/applications/{id}/submission",
        &[Citizen],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "GET",
        "/applications/{id}/receipt",
        &[Citizen],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "POST",
        "/applications/{id}/withdrawal",
        &[Citizen],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "POST",
        "/applications/{id}/information",
        &[Citizen],
        OWN_FOR_CITIZENS,
    ),
    AccessRow::roles(
        "POST",
        "/applications/{id}/reception",
        OFFICIALS,
        ANY_APPLICANT,
    ),
    AccessRow::roles(
        "POST",
        "/applications/{id}/information-requests",
        OFFICIALS,
        ANY_APPLICANT,
    ),
    AccessRow::roles(
        "POST",
        "/applications/{id}/decision",
        OFFICIALS,
        ANY_APPLICANT,
    ),
    AccessRow::roles(
        "POST",
        "/applications/{id}/closure",
        OFFICIALS,
        ANY_APPLICANT,
    ),
    // Who read: for the applicant and the data protection officer.
    AccessRow::roles(
        "GET",
        "/applications/{id}/accesses",
        &[Citizen, Dpo],
        OWN_FOR_CITIZENS,
    ),
];

/// Publishing ends the sample version's editing, retiring its publication; the sample
/// application goes through its life in this order, and then its applicant is erased.
pub const LAST: &[(&str, &str)] = &[
    ("POST", "/forms/{form}/versions/{v}/publication"),
    ("POST", "/forms/{form}/versions/{v}/retirement"),
    ("PUT", "/applications/{id}/data"),
    ("POST", "/applications/{id}/submission"),
    ("GET", "/applications/{id}/receipt"),
    ("POST", "/applications/{id}/reception"),
    ("POST", "/applications/{id}/information-requests"),
    ("POST", "/applications/{id}/information"),
    ("POST", "/applications/{id}/decision"),
    ("POST", "/applications/{id}/closure"),
    // Erasing the applicant shreds their applications: it runs after the samples' life
    // (an operation named again moves to the end).
    ("POST", "/dpo/subjects/{subject}/erasure"),
];

/// The applications samples.
pub static SAMPLES: ApplicationsSamples = ApplicationsSamples;

/// The LeiKa key of the sample service (Wohngeld).
pub const LEIKA: &str = "99108001000000";
/// The ARS of the sample place (Meißen), in the test authority's region.
pub const ARS: &str = "146270000000";

/// The samples: `form` is created by `seed` with version 1 being edited; `app_form` is in
/// force and named by the directory; `application` (a draft with data) and `submitted`
/// (submitted, for the withdrawal) belong to the subject.
#[derive(Debug, Clone, Copy)]
pub struct ApplicationsSamples;

/// The form in force: the same for every subject.
pub const APP_FORM: &str = "0193a1b2-0000-7000-8000-0000000000f2";

/// The form whose version 1 is edited, published and retired by the tests.
pub const EDIT_FORM: &str = "0193a1b2-0000-7000-8000-0000000000f1";

/// Creates the form `form` with its version 1 (published if `publish`), unless it exists:
/// the same for every subject, so that the requests naming it are too.
async fn seed_form(state: &AppState, form: &str, publish: bool) {
    use amtsbuch_domain::applications::form::{FormCommand, FormSchema, FormState, FormTitle};
    use amtsbuch_domain::applications::FormId;
    let id = FormId(uuid::Uuid::parse_str(form).expect("form id"));
    let meta = crate::command::Meta::system("test");
    let (form, _) = crate::command::current::<FormState>(state, &id.stream_id())
        .await
        .expect("form");
    if form.form.is_some() {
        return;
    }
    let now = chrono::Utc::now();
    let mut commands = vec![
        FormCommand::Create {
            form_id: id,
            title: FormTitle::parse("Antrag auf Wohngeld").expect("title"),
            at: now,
        },
        FormCommand::DraftVersion {
            schema: FormSchema::parse(sample_schema()).expect("schema"),
            at: now,
        },
    ];
    if publish {
        commands.push(FormCommand::Publish {
            version: 1,
            at: now,
        });
    }
    for command in &commands {
        crate::command::execute::<FormState>(
            state,
            &id.stream_id(),
            command,
            |e| crate::command::refused("form-refused", e),
            &meta,
        )
        .await
        .expect("seed a sample form");
    }
}

/// A small form schema with a FIM id, an editor element and an (optional) upload.
pub fn sample_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["familienname"],
        "properties": {
            "familienname": {
                "type": "string", "minLength": 1, "maxLength": 120,
                "x-fim-id": "F60000227",
                "x-editor": {"element": "input", "label": "Familienname"}
            },
            "nachweis": {
                "type": "string",
                "x-editor": {"element": "upload", "label": "Nachweis"}
            }
        }
    })
}

/// The subject's applications are derived from its account, so that the citizen's and
/// the other subject's differ and stay the same across calls.
fn derived(account: &str, n: u8) -> String {
    let base = Uuid::parse_str(account).unwrap_or_default();
    let mut bytes = *base.as_bytes();
    bytes[0] ^= 0xa0 | n;
    Uuid::from_bytes(bytes).to_string()
}

impl Samples for ApplicationsSamples {
    fn values(&self, citizen: &str) -> SampleValues {
        [
            ("form", EDIT_FORM.to_owned()),
            ("app_form", APP_FORM.to_owned()),
            ("form_version", "1".to_owned()),
            ("applicant", citizen.to_owned()),
            ("application", derived(citizen, 1)),
            ("submitted", derived(citizen, 2)),
            ("attachment", "nachweis".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Creates both forms and the directory through the API, then the subject's two
    /// applications through the service layer (a citizen's token is not at hand here).
    fn seed<'a>(
        &'a self,
        app: &'a axum::Router,
        state: &'a AppState,
        operator: &'a str,
        values: &'a mut SampleValues,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // The sample application is closed before the sample erasure of its applicant
            // runs (and the other is withdrawn): with no retention after the end, neither
            // holds the applicant. Only the tests' processes seed samples.
            super::retention::set_retention_period(chrono::Duration::zero());
            seed_form(state, EDIT_FORM, false).await;
            seed_form(state, APP_FORM, true).await;
            let directory = self
                .body(values, "PUT", "/responsibilities")
                .unwrap_or_default();
            call(app, "PUT", "/responsibilities", operator, directory).await;

            let form_id = FormId(Uuid::parse_str(APP_FORM).expect("form id"));
            let (form, _) = current::<FormState>(state, &form_id.stream_id())
                .await
                .expect("form");
            let version = form.current().expect("a published version").clone();
            let applicant = SubjectId(
                values
                    .get("applicant")
                    .and_then(|a| Uuid::parse_str(a).ok())
                    .expect("the applicant is a UUID"),
            );
            for (name, submit) in [("application", false), ("submitted", true)] {
                let id = ApplicationId(
                    values
                        .get(name)
                        .and_then(|a| Uuid::parse_str(a).ok())
                        .expect("application id"),
                );
                let now = chrono::Utc::now();
                let commands = [
                    ApplicationCommand::Create {
                        application_id: id,
                        applicant,
                        pinned: Pinned {
                            form: form_id,
                            version: version.version,
                            schema_hash: version.schema.hash(),
                        },
                        responsible: Responsible {
                            authority: amtsbuch_domain::AuthorityId::parse("lra-meissen")
                                .expect("authority"),
                            leika: Leika::parse(LEIKA).expect("leika"),
                            place: Place::parse(ARS).expect("place"),
                            payment: PaymentPolicy::AfterDecision,
                            service_name: None,
                        },
                        at: now,
                    },
                    ApplicationCommand::SaveData {
                        applicant,
                        data: json!({ "familienname": "Mustermann" }),
                        salt: Sha256([9; 32]),
                        schema: &version.schema,
                        at: now,
                    },
                ];
                let meta = Meta::system("test");
                for command in commands.iter() {
                    execute::<ApplicationState>(
                        state,
                        &id.stream_id(),
                        command,
                        |e| refused("application-refused", e),
                        &meta,
                    )
                    .await
                    .expect("seed the sample application");
                }
                if submit {
                    let command = ApplicationCommand::Submit {
                        applicant,
                        schema: &version.schema,
                        status: version.status,
                        dues: Dues::Settled,
                        at: now,
                    };
                    execute::<ApplicationState>(
                        state,
                        &id.stream_id(),
                        &command,
                        |e| refused("application-refused", e),
                        &meta,
                    )
                    .await
                    .expect("submit the sample application");
                }
            }
        })
    }

    fn param(&self, values: &SampleValues, first: &str, param: &str) -> Option<String> {
        let name = match (first, param) {
            ("forms", "{form}") => "form",
            ("forms", "{v}") => "form_version",
            ("applications", "{id}") => "application",
            ("applications", "{name}") => "attachment",
            _ => return None,
        };
        values.get(name).cloned()
    }

    /// The withdrawal acts on the submitted application, so that the other's life is not
    /// cut short.
    fn path_param(&self, values: &SampleValues, path: &str, param: &str) -> Option<String> {
        if path == "/applications/{id}/withdrawal" && param == "{id}" {
            return values.get("submitted").cloned();
        }
        let first = path.split('/').nth(1).unwrap_or_default();
        self.param(values, first, param)
    }

    fn query(&self, _values: &SampleValues, path: &str) -> Option<String> {
        (path == "/services").then(|| format!("leika={LEIKA}&ars={ARS}"))
    }

    fn body(&self, values: &SampleValues, method: &str, path: &str) -> Option<Value> {
        let form = values.get("app_form").cloned().unwrap_or_default();
        Some(match (method, path) {
            ("PUT", "/responsibilities") => json!({ "entries": [
                { "leika": LEIKA, "region": "14627", "authority": "lra-meissen",
                  "form": form, "payment": "after_decision",
                  "service_name": "Wohngeld beantragen" }
            ] }),
            ("POST", "/forms") => json!({ "title": "Antrag auf Wohngeld" }),
            ("POST", "/forms/{form}/versions") | ("PUT", "/forms/{form}/versions/{v}") => {
                json!({ "schema": sample_schema() })
            }
            ("POST", "/applications") => json!({ "leika": LEIKA, "ars": ARS }),
            ("PUT", "/applications/{id}/data") => {
                json!({ "data": { "familienname": "Musterfrau" } })
            }
            // An attachment is any file; a JSON document will do.
            ("PUT", "/applications/{id}/attachments/{name}") => json!({ "nachweis": 1 }),
            ("POST", "/applications/{id}/reception") => json!({ "file_number": "AZ 42/2026" }),
            ("POST", "/applications/{id}/information-requests") => json!({
                "message": "Bitte reichen Sie den Mietvertrag nach.",
                // Within the year an information request may be due in.
                "due_at": (chrono::Utc::now() + chrono::Duration::days(30))
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            }),
            ("POST", "/applications/{id}/information") => {
                json!({ "request": 1, "message": "Anbei der Mietvertrag." })
            }
            ("POST", "/applications/{id}/decision") => json!({
                "outcome": "granted",
                "document_sha256": Sha256::of(b"Bescheid").to_string(),
            }),
            _ => return None,
        })
    }
}

/// `method uri` through the router as the holder of `token`, which must answer `2xx`; the
/// body as JSON.
pub async fn call(app: &axum::Router, method: &str, uri: &str, token: &str, body: Value) -> Value {
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {uri}: {status} {json}");
    json
}
