//! What the service's own tests need of the applications domain
//! (`crate::module::TestSupport`): who may call each operation, and sample data that makes
//! each succeed — a form with a version being edited, and a directory naming it.

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use amtsbuch_domain::access::Role::*;

use crate::module::{AccessRow, SampleValues, Samples, Target::Nobody};
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
];

/// Publishing ends the sample version's editing, retiring its publication.
pub const LAST: &[(&str, &str)] = &[
    ("POST", "/forms/{form}/versions/{v}/publication"),
    ("POST", "/forms/{form}/versions/{v}/retirement"),
];

/// The applications samples.
pub static SAMPLES: ApplicationsSamples = ApplicationsSamples;

/// The LeiKa key of the sample service (Wohngeld).
pub const LEIKA: &str = "99108001000000";
/// The ARS of the sample place (Meißen).
pub const ARS: &str = "146270000000";

/// The samples: `form` is created by `seed` with version 1 being edited.
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

/// A small form schema with a FIM id and an editor element.
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
            }
        }
    })
}

impl Samples for ApplicationsSamples {
    fn values(&self, _citizen: &str) -> SampleValues {
        [
            ("form", EDIT_FORM),
            ("app_form", APP_FORM),
            ("form_version", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Creates both forms through the service layer (with fixed ids, the same for every
    /// subject, so that the requests naming them are too) and imports the directory.
    fn seed<'a>(
        &'a self,
        app: &'a axum::Router,
        state: &'a AppState,
        operator: &'a str,
        values: &'a mut SampleValues,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            seed_form(state, EDIT_FORM, false).await;
            seed_form(state, APP_FORM, true).await;
            let directory = self
                .body(values, "PUT", "/responsibilities")
                .unwrap_or_default();
            call(app, "PUT", "/responsibilities", operator, directory).await;
        })
    }

    fn param(&self, values: &SampleValues, first: &str, param: &str) -> Option<String> {
        let name = match (first, param) {
            ("forms", "{form}") => "form",
            ("forms", "{v}") => "form_version",
            _ => return None,
        };
        values.get(name).cloned()
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
