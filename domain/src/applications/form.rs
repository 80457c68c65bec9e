//! Forms and their versions.
//!
//! A form (`form-<uuid>`) has numbered versions, 1, 2, …; each version is a JSON Schema
//! 2020-12 document ([`FormSchema`]) for the data an application under it holds. A version
//! is edited, then published, then retired: `editing → published → retired`. While it is
//! edited its schema may be replaced; once published it never changes, and the event that
//! publishes it carries its hash (SHA-256 of the schema's canonical JSON, RFC 8785), so the
//! log proves which schema an application was validated against. An application is pinned
//! to the published version it was drafted under; a retired version takes no submissions.
//!
//! Beside the standard keywords a schema may carry the annotations a form editor needs, so
//! that a form round-trips through the editor unchanged (the schema is stored as given):
//!
//! - `x-fim-id` on a property: its FIM field id (XDatenfelder 2.0), `F` (a field) or `G`
//!   (a field group) and 8 digits, optionally with a version `V1.0`: `F00000001`,
//!   `G60000098V1.2`; on the root, the id of the FIM data schema, `S` and 8 digits.
//! - `x-editor` on a property: `{"element": …}` with one of `input`, `textarea`, `select`,
//!   `checkbox`, `upload`, `signature`, `captcha`, and any further members the editor keeps
//!   (label, hint, placeholder …). An `upload` is an attachment: it must be a property of
//!   the root object, of type `string`, and its value in the data is the attachment's
//!   SHA-256 (so the data hash covers the attachments); it is required when the root's
//!   `required` lists it.
//! - `x-layout` on the root: `{"pages": [{"items": [item, …], …}, …]}`, where an item has a
//!   `kind`: `field` (with `property`, a property of the root, placed at most once),
//!   `container` and `fieldset` (with `items`), and the presentation elements `text` (with
//!   `text`), `image` (with `src`), `line` and `spacing`. Other members are the editor's.
//!
//! A schema is self-contained: a `$ref` to another document is refused (the validator
//! fetches nothing), and formats (`date`, `email` …) are asserted, not only annotated.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{instant, FormId, Sha256};
use crate::decider::decider;
use crate::event::{
    data_of, event_type_of, no_personal, parse_data, DomainEvent, EventParts, PartsError, SubjectId,
};
use crate::newtype::text;
use crate::record::timestamp;
use crate::stream::{EventType, StreamId};

/// The dialect every form schema is written in.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The largest schema accepted, in bytes of its canonical JSON. A version's schema is in
/// the events that draft, revise and publish it, and 256 KiB holds a form of well over a
/// thousand fields.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;

/// At most this many violations are reported for one document; the rest are counted.
pub const MAX_VIOLATIONS: usize = 100;

text!(
    /// The title of a form, as portals list it (`Antrag auf Wohngeld`). Not personal.
    FormTitle,
    "form title",
    200
);

/// The form editor elements a property may be edited with.
pub const EDITOR_ELEMENTS: [&str; 7] = [
    "input",
    "textarea",
    "select",
    "checkbox",
    "upload",
    "signature",
    "captcha",
];

/// The kinds of items of an `x-layout`.
pub const LAYOUT_KINDS: [&str; 7] = [
    "field",
    "container",
    "fieldset",
    "text",
    "image",
    "line",
    "spacing",
];

/// Why a schema is not a form schema. Each names where, by JSON pointer into the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("the schema's canonical JSON is {0} bytes; at most {MAX_SCHEMA_BYTES} are accepted")]
    TooLarge(usize),
    #[error("the schema is not canonical JSON (RFC 8785): {0}")]
    NotCanonical(String),
    #[error(
        "a form schema is an object with \"type\": \"object\" and an object of \"properties\""
    )]
    NotAnObjectSchema,
    #[error("\"$schema\" must be {DIALECT:?}, the dialect every form is written in")]
    Dialect,
    #[error("the schema is not valid JSON Schema 2020-12 or refers to another document: {0}")]
    Invalid(String),
    #[error("{pointer}: {message}")]
    Annotation { pointer: String, message: String },
}

fn annotation(pointer: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Annotation {
        pointer: pointer.to_owned(),
        message: message.into(),
    }
}

/// Escapes a member name for a JSON pointer (RFC 6901).
pub fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// A version's schema, checked and compiled. It exists only parsed ([`FormSchema::parse`]),
/// also when read back from the log; two schemas are equal when their hashes are.
#[derive(Clone)]
pub struct FormSchema {
    value: Arc<Value>,
    hash: Sha256,
    uploads: Arc<BTreeMap<String, bool>>,
    validator: Arc<jsonschema::Validator>,
}

impl FormSchema {
    /// Checks and compiles a schema.
    pub fn parse(value: Value) -> Result<Self, SchemaError> {
        let canonical = crate::jcs::canonicalize(&value)
            .map_err(|e| SchemaError::NotCanonical(e.to_string()))?;
        if canonical.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooLarge(canonical.len()));
        }
        let root = value.as_object().ok_or(SchemaError::NotAnObjectSchema)?;
        if root.get("type") != Some(&Value::from("object"))
            || !root.get("properties").is_some_and(Value::is_object)
        {
            return Err(SchemaError::NotAnObjectSchema);
        }
        if root.get("$schema").is_some_and(|d| d != DIALECT) {
            return Err(SchemaError::Dialect);
        }
        let uploads = check_annotations(root)?;
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&value)
            .map_err(|e| SchemaError::Invalid(schema_error_text(&e)))?;
        Ok(Self {
            hash: Sha256::of(&canonical),
            value: Arc::new(value),
            uploads: Arc::new(uploads),
            validator: Arc::new(validator),
        })
    }

    /// The schema as given.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// SHA-256 of the schema's canonical JSON.
    pub fn hash(&self) -> Sha256 {
        self.hash
    }

    /// The attachments the form declares (its `upload` properties), each with whether it
    /// is required.
    pub fn uploads(&self) -> &BTreeMap<String, bool> {
        &self.uploads
    }

    /// Checks an application's data against the schema: every violation, by the JSON
    /// pointer of the value in the data and the keyword it fails (at most
    /// [`MAX_VIOLATIONS`]). The messages never quote the data, which is personal.
    pub fn check(&self, data: &Value) -> Result<(), DataInvalid> {
        let mut violations = Vec::new();
        let mut count = 0;
        for error in self.validator.iter_errors(data) {
            count += 1;
            if violations.len() == MAX_VIOLATIONS {
                continue;
            }
            let mut pointer = error.instance_path().as_str().to_owned();
            if let jsonschema::error::ValidationErrorKind::Required {
                property: Value::String(name),
            } = error.kind()
            {
                pointer.push('/');
                pointer.push_str(&pointer_token(name));
            }
            violations.push(Violation {
                pointer,
                keyword: error.kind().keyword().to_owned(),
                schema_path: error.schema_path().as_str().to_owned(),
            });
        }
        if count == 0 {
            Ok(())
        } else {
            Err(DataInvalid { violations, count })
        }
    }
}

/// Text for a schema that does not compile. The schema is the operator's, not personal.
fn schema_error_text(e: &jsonschema::ValidationError<'_>) -> String {
    let text = e.to_string();
    let pointer = e.instance_path().as_str();
    let text: String = text.chars().take(300).collect();
    if pointer.is_empty() {
        text
    } else {
        format!("{pointer}: {text}")
    }
}

impl PartialEq for FormSchema {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
    }
}

impl Eq for FormSchema {}

impl fmt::Debug for FormSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FormSchema({})", self.hash)
    }
}

impl Serialize for FormSchema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de> Deserialize<'de> for FormSchema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One way the data fails its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON pointer to the value in the data (for a missing required member, to where it
    /// belongs).
    pub pointer: String,
    /// The keyword it fails: `type`, `required`, `maxLength` …
    pub keyword: String,
    /// JSON pointer to the keyword in the schema.
    pub schema_path: String,
}

/// The data does not satisfy its form version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the data does not satisfy its form version ({count} violations)")]
pub struct DataInvalid {
    pub violations: Vec<Violation>,
    /// How many violations there are, also those left out of `violations`.
    pub count: usize,
}

fn is_fim_id(s: &str, kinds: &[u8]) -> bool {
    let b = s.as_bytes();
    if b.len() < 9 || !kinds.contains(&b[0]) || !b[1..9].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let rest = &s[9..];
    if rest.is_empty() {
        return true;
    }
    let Some(version) = rest.strip_prefix('V') else {
        return false;
    };
    let mut parts = version.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|c| c.is_ascii_digit()))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Checks the editor annotations of a form schema and returns its upload properties.
fn check_annotations(root: &Map<String, Value>) -> Result<BTreeMap<String, bool>, SchemaError> {
    if let Some(id) = root.get("x-fim-id") {
        if !id.as_str().is_some_and(|s| is_fim_id(s, b"S")) {
            return Err(annotation(
                "/x-fim-id",
                "the FIM id of a form's data schema is S and 8 digits, optionally with a version (V1.0)",
            ));
        }
    }
    // Every subschema is walked, so a property anywhere may carry annotations; uploads
    // are only allowed at the root, which `walk` reports by their pointer.
    let mut uploads_anywhere = Vec::new();
    walk(&Value::Object(root.clone()), "", &mut uploads_anywhere)?;
    let properties = root
        .get("properties")
        .and_then(Value::as_object)
        .ok_or(SchemaError::NotAnObjectSchema)?;
    let required: BTreeSet<&str> = root
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut uploads = BTreeMap::new();
    for pointer in uploads_anywhere {
        let name = properties
            .iter()
            .find(|(name, _)| pointer == format!("/properties/{}", pointer_token(name)))
            .map(|(name, _)| name.clone())
            .ok_or_else(|| {
                annotation(
                    &pointer,
                    "an upload must be a property of the form's root object",
                )
            })?;
        if properties[&name].get("type") != Some(&Value::from("string")) {
            return Err(annotation(
                &pointer,
                "an upload's value is its attachment's SHA-256, so its type is \"string\"",
            ));
        }
        let is_required = required.contains(name.as_str());
        uploads.insert(name, is_required);
    }
    if let Some(layout) = root.get("x-layout") {
        check_layout(layout, properties)?;
    }
    Ok(uploads)
}

/// Walks every subschema below `value` (at `pointer`), checking the annotations of each
/// property schema and collecting the pointers of upload properties.
fn walk(value: &Value, pointer: &str, uploads: &mut Vec<String>) -> Result<(), SchemaError> {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{pointer}/{}", pointer_token(key));
                if matches!(key.as_str(), "properties" | "$defs" | "patternProperties") {
                    if let Some(props) = child.as_object() {
                        for (name, schema) in props {
                            let at = format!("{here}/{}", pointer_token(name));
                            if key == "properties" {
                                check_property(schema, &at, uploads)?;
                            }
                            walk(schema, &at, uploads)?;
                        }
                    }
                } else if !matches!(
                    key.as_str(),
                    "x-layout" | "x-editor" | "enum" | "const" | "default" | "examples"
                ) {
                    walk(child, &here, uploads)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{pointer}/{i}"), uploads)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_property(schema: &Value, at: &str, uploads: &mut Vec<String>) -> Result<(), SchemaError> {
    let Some(map) = schema.as_object() else {
        return Ok(());
    };
    if let Some(id) = map.get("x-fim-id") {
        if !id.as_str().is_some_and(|s| is_fim_id(s, b"FG")) {
            return Err(annotation(
                &format!("{at}/x-fim-id"),
                "a FIM id is F (field) or G (group) and 8 digits, optionally with a version (V1.0)",
            ));
        }
    }
    if let Some(editor) = map.get("x-editor") {
        let element = editor
            .as_object()
            .and_then(|e| e.get("element"))
            .and_then(Value::as_str)
            .filter(|e| EDITOR_ELEMENTS.contains(e))
            .ok_or_else(|| {
                annotation(
                    &format!("{at}/x-editor"),
                    format!(
                        "x-editor is an object whose element is one of {}",
                        EDITOR_ELEMENTS.join(", ")
                    ),
                )
            })?;
        if element == "upload" {
            uploads.push(at.to_owned());
        }
    }
    Ok(())
}

fn check_layout(layout: &Value, properties: &Map<String, Value>) -> Result<(), SchemaError> {
    let pages = layout
        .as_object()
        .and_then(|l| l.get("pages"))
        .and_then(Value::as_array)
        .ok_or_else(|| annotation("/x-layout", "x-layout is an object with an array of pages"))?;
    let mut placed = BTreeSet::new();
    for (i, page) in pages.iter().enumerate() {
        let at = format!("/x-layout/pages/{i}");
        let items = page
            .as_object()
            .and_then(|p| p.get("items"))
            .and_then(Value::as_array)
            .ok_or_else(|| annotation(&at, "a page is an object with an array of items"))?;
        check_items(items, &format!("{at}/items"), properties, &mut placed)?;
    }
    Ok(())
}

fn check_items<'a>(
    items: &'a [Value],
    at: &str,
    properties: &Map<String, Value>,
    placed: &mut BTreeSet<&'a str>,
) -> Result<(), SchemaError> {
    for (i, item) in items.iter().enumerate() {
        let here = format!("{at}/{i}");
        let map = item
            .as_object()
            .ok_or_else(|| annotation(&here, "a layout item is an object"))?;
        let kind = map
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| LAYOUT_KINDS.contains(k))
            .ok_or_else(|| {
                annotation(
                    &here,
                    format!("a layout item's kind is one of {}", LAYOUT_KINDS.join(", ")),
                )
            })?;
        let member = |name: &str| map.get(name).and_then(Value::as_str);
        match kind {
            "field" => {
                let property = member("property")
                    .filter(|p| properties.contains_key(*p))
                    .ok_or_else(|| {
                        annotation(&here, "a field names a property of the form's root object")
                    })?;
                if !placed.insert(property) {
                    return Err(annotation(&here, "a property is placed at most once"));
                }
            }
            "container" | "fieldset" => {
                let inner = map.get("items").and_then(Value::as_array).ok_or_else(|| {
                    annotation(&here, "a container or fieldset has an array of items")
                })?;
                check_items(inner, &format!("{here}/items"), properties, placed)?;
            }
            "text" if member("text").is_none() => {
                return Err(annotation(&here, "a text element has a text"));
            }
            "image" if member("src").is_none() => {
                return Err(annotation(&here, "an image element has a src"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A version number, counted from 1.
pub type VersionNo = u32;

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum FormCommand {
    Create {
        form_id: FormId,
        title: FormTitle,
        at: DateTime<Utc>,
    },
    /// Start the next version (the highest so far plus one) with `schema`.
    DraftVersion {
        schema: FormSchema,
        at: DateTime<Utc>,
    },
    /// Replace the schema of a version still being edited.
    ReviseVersion {
        version: VersionNo,
        schema: FormSchema,
        at: DateTime<Utc>,
    },
    Publish {
        version: VersionNo,
        at: DateTime<Utc>,
    },
    Retire {
        version: VersionNo,
        at: DateTime<Utc>,
    },
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// `FormCreated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormCreated {
    pub form_id: FormId,
    pub title: FormTitle,
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
}

/// `FormVersionDrafted` and `FormVersionRevised`: a version's schema while it is edited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormVersionSchema {
    pub form_id: FormId,
    pub version: VersionNo,
    pub schema: FormSchema,
    pub schema_hash: Sha256,
    #[serde(with = "timestamp")]
    pub at: DateTime<Utc>,
}

/// `FormVersionPublished` (with the hash of the schema it fixes) and `FormVersionRetired`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormVersionStep {
    pub form_id: FormId,
    pub version: VersionNo,
    pub schema_hash: Sha256,
    #[serde(with = "timestamp")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FormEvent {
    Created(FormCreated),
    Drafted(FormVersionSchema),
    Revised(FormVersionSchema),
    Published(FormVersionStep),
    Retired(FormVersionStep),
}

const CREATED: &str = "FormCreated";
const DRAFTED: &str = "FormVersionDrafted";
const REVISED: &str = "FormVersionRevised";
const PUBLISHED: &str = "FormVersionPublished";
const RETIRED: &str = "FormVersionRetired";

impl FormEvent {
    pub fn form_id(&self) -> FormId {
        match self {
            Self::Created(e) => e.form_id,
            Self::Drafted(e) | Self::Revised(e) => e.form_id,
            Self::Published(e) | Self::Retired(e) => e.form_id,
        }
    }
}

/// Forms carry no personal data and concern no data subject.
impl DomainEvent for FormEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => CREATED,
            Self::Drafted(_) => DRAFTED,
            Self::Revised(_) => REVISED,
            Self::Published(_) => PUBLISHED,
            Self::Retired(_) => RETIRED,
        }
    }

    fn stream_id(&self) -> StreamId {
        self.form_id().stream_id()
    }

    fn occurred_at(&self) -> DateTime<Utc> {
        match self {
            Self::Created(e) => e.created_at,
            Self::Drafted(e) | Self::Revised(e) => e.at,
            Self::Published(e) | Self::Retired(e) => e.at,
        }
    }

    fn data_subject(&self) -> Option<SubjectId> {
        None
    }

    fn carries_personal_data(_event_type: &str) -> bool {
        false
    }

    fn to_parts(&self) -> Result<EventParts, PartsError> {
        let name = self.event_type();
        let data = match self {
            Self::Created(e) => data_of(name, e)?,
            Self::Drafted(e) | Self::Revised(e) => data_of(name, e)?,
            Self::Published(e) | Self::Retired(e) => data_of(name, e)?,
        };
        Ok(EventParts {
            event_type: event_type_of(name)?,
            data,
            personal: None,
        })
    }

    fn from_parts(
        event_type: &EventType,
        data: &Value,
        personal: Option<&Value>,
    ) -> Result<Self, PartsError> {
        let name: &'static str = match event_type.as_str() {
            CREATED => CREATED,
            DRAFTED => DRAFTED,
            REVISED => REVISED,
            PUBLISHED => PUBLISHED,
            RETIRED => RETIRED,
            other => return Err(PartsError::UnknownEventType(other.to_owned())),
        };
        no_personal(name, personal)?;
        let schema_event = |data: &Value| -> Result<FormVersionSchema, PartsError> {
            let e: FormVersionSchema = parse_data(name, data)?;
            if e.schema.hash() != e.schema_hash {
                return Err(PartsError::Data {
                    event_type: name,
                    message: "schema_hash is not the hash of the schema".into(),
                });
            }
            Ok(e)
        };
        Ok(match name {
            CREATED => Self::Created(parse_data(name, data)?),
            DRAFTED => Self::Drafted(schema_event(data)?),
            REVISED => Self::Revised(schema_event(data)?),
            PUBLISHED => Self::Published(parse_data(name, data)?),
            _ => Self::Retired(parse_data(name, data)?),
        })
    }
}

// ---------------------------------------------------------------------------------------
// State and decider
// ---------------------------------------------------------------------------------------

/// Where a version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    Editing,
    Published,
    Retired,
}

/// One version of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormVersion {
    pub version: VersionNo,
    pub schema: FormSchema,
    pub status: VersionStatus,
    pub published_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

/// The state of a form stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FormState {
    pub form: Option<FormCreated>,
    pub versions: BTreeMap<VersionNo, FormVersion>,
}

impl FormState {
    pub fn version(&self, version: VersionNo) -> Option<&FormVersion> {
        self.versions.get(&version)
    }

    /// The highest published (not retired) version: the one a new application is drafted
    /// under.
    pub fn current(&self) -> Option<&FormVersion> {
        self.versions
            .values()
            .rev()
            .find(|v| v.status == VersionStatus::Published)
    }
}

/// Why a form command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("this form already exists")]
    AlreadyCreated,
    #[error("no such form")]
    NoForm,
    #[error("the form has no version {0}")]
    NoVersion(VersionNo),
    #[error("version {0} is published or retired and never changes; draft a new version")]
    NotEditable(VersionNo),
    #[error("version {0} is retired and cannot be published again")]
    RetiredVersion(VersionNo),
    #[error("version {0} is not published, so it cannot be retired")]
    NotPublished(VersionNo),
}

fn version_of(state: &FormState, version: VersionNo) -> Result<&FormVersion, FormError> {
    if state.form.is_none() {
        return Err(FormError::NoForm);
    }
    state.version(version).ok_or(FormError::NoVersion(version))
}

/// Decides a form command. Publishing or retiring a version again records nothing.
pub fn decide(command: &FormCommand, state: &FormState) -> Result<Vec<FormEvent>, FormError> {
    let form_id = |state: &FormState| {
        state
            .form
            .as_ref()
            .map(|f| f.form_id)
            .ok_or(FormError::NoForm)
    };
    match command {
        FormCommand::Create { form_id, title, at } => {
            if state.form.is_some() {
                return Err(FormError::AlreadyCreated);
            }
            Ok(vec![FormEvent::Created(FormCreated {
                form_id: *form_id,
                title: title.clone(),
                created_at: instant(*at),
            })])
        }
        FormCommand::DraftVersion { schema, at } => {
            let form_id = form_id(state)?;
            let version = state.versions.keys().next_back().map_or(1, |v| v + 1);
            Ok(vec![FormEvent::Drafted(FormVersionSchema {
                form_id,
                version,
                schema_hash: schema.hash(),
                schema: schema.clone(),
                at: instant(*at),
            })])
        }
        FormCommand::ReviseVersion {
            version,
            schema,
            at,
        } => {
            let v = version_of(state, *version)?;
            if v.status != VersionStatus::Editing {
                return Err(FormError::NotEditable(*version));
            }
            Ok(vec![FormEvent::Revised(FormVersionSchema {
                form_id: form_id(state)?,
                version: *version,
                schema_hash: schema.hash(),
                schema: schema.clone(),
                at: instant(*at),
            })])
        }
        FormCommand::Publish { version, at } => {
            let v = version_of(state, *version)?;
            match v.status {
                VersionStatus::Editing => Ok(vec![FormEvent::Published(FormVersionStep {
                    form_id: form_id(state)?,
                    version: *version,
                    schema_hash: v.schema.hash(),
                    at: instant(*at),
                })]),
                VersionStatus::Published => Ok(vec![]),
                VersionStatus::Retired => Err(FormError::RetiredVersion(*version)),
            }
        }
        FormCommand::Retire { version, at } => {
            let v = version_of(state, *version)?;
            match v.status {
                VersionStatus::Editing => Err(FormError::NotPublished(*version)),
                VersionStatus::Published => Ok(vec![FormEvent::Retired(FormVersionStep {
                    form_id: form_id(state)?,
                    version: *version,
                    schema_hash: v.schema.hash(),
                    at: instant(*at),
                })]),
                VersionStatus::Retired => Ok(vec![]),
            }
        }
    }
}

/// Applies an event; events `decide` never produces leave the state as it is.
pub fn evolve(mut state: FormState, event: &FormEvent) -> FormState {
    match event {
        FormEvent::Created(e) => {
            state.form.get_or_insert_with(|| e.clone());
        }
        FormEvent::Drafted(e) | FormEvent::Revised(e) => {
            let editable = state
                .versions
                .get(&e.version)
                .is_none_or(|v| v.status == VersionStatus::Editing);
            if editable {
                state.versions.insert(
                    e.version,
                    FormVersion {
                        version: e.version,
                        schema: e.schema.clone(),
                        status: VersionStatus::Editing,
                        published_at: None,
                        retired_at: None,
                    },
                );
            }
        }
        FormEvent::Published(e) => {
            if let Some(v) = state.versions.get_mut(&e.version) {
                if v.status == VersionStatus::Editing {
                    v.status = VersionStatus::Published;
                    v.published_at = Some(e.at);
                }
            }
        }
        FormEvent::Retired(e) => {
            if let Some(v) = state.versions.get_mut(&e.version) {
                if v.status == VersionStatus::Published {
                    v.status = VersionStatus::Retired;
                    v.retired_at = Some(e.at);
                }
            }
        }
    }
    state
}

decider!(FormState: FormCommand => FormEvent, FormError);

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::applications::testing::*;

    /// A form with a FIM id on each property, an upload, editor elements and a layout.
    pub fn sample_schema() -> Value {
        json!({
            "$schema": DIALECT,
            "$id": "https://schema.fitko.de/fim/s00000114_1.1.schema.json",
            "x-fim-id": "S00000114V1.1",
            "type": "object",
            "required": ["familienname", "geburtsdatum", "nachweis"],
            "additionalProperties": false,
            "properties": {
                "familienname": {
                    "type": "string", "minLength": 1, "maxLength": 120,
                    "x-fim-id": "F60000227",
                    "x-editor": {"element": "input", "label": "Familienname"}
                },
                "geburtsdatum": {
                    "type": "string", "format": "date", "x-fim-id": "F60000236V1.0",
                    "x-editor": {"element": "input", "label": "Geburtsdatum"}
                },
                "kinder": {
                    "type": "integer", "minimum": 0,
                    "x-editor": {"element": "select", "options": [0, 1, 2, 3]}
                },
                "anschrift": {
                    "type": "object", "x-fim-id": "G60000086",
                    "properties": {
                        "ort": {"type": "string", "x-fim-id": "F60000247",
                                "x-editor": {"element": "input"}}
                    }
                },
                "zustimmung": {"type": "boolean", "x-editor": {"element": "checkbox"}},
                "nachweis": {"type": "string", "x-editor": {"element": "upload", "accept": "application/pdf"}},
                "foto": {"type": "string", "x-editor": {"element": "upload"}}
            },
            "x-layout": {"pages": [
                {"title": "Person", "items": [
                    {"kind": "text", "text": "Bitte füllen Sie alle Pflichtfelder aus."},
                    {"kind": "fieldset", "legend": "Angaben", "items": [
                        {"kind": "field", "property": "familienname"},
                        {"kind": "field", "property": "geburtsdatum"}
                    ]},
                    {"kind": "line"},
                    {"kind": "image", "src": "https://amt24.sachsen.de/logo.svg"}
                ]},
                {"items": [
                    {"kind": "container", "items": [{"kind": "field", "property": "kinder"}]},
                    {"kind": "spacing", "height": 12},
                    {"kind": "field", "property": "nachweis"}
                ]}
            ]}
        })
    }

    pub fn schema() -> FormSchema {
        FormSchema::parse(sample_schema()).expect("sample schema")
    }

    fn form_id() -> FormId {
        FormId(uuid(0xf))
    }

    fn title() -> FormTitle {
        FormTitle::parse("Antrag auf Wohngeld").expect("title")
    }

    fn with(events: &[FormEvent]) -> FormState {
        FormState::fold(events)
    }

    use crate::decider::Decider;

    fn created() -> FormEvent {
        FormEvent::Created(FormCreated {
            form_id: form_id(),
            title: title(),
            created_at: at("2026-03-01T09:00:00Z"),
        })
    }

    fn drafted(version: VersionNo, schema: FormSchema) -> FormEvent {
        FormEvent::Drafted(FormVersionSchema {
            form_id: form_id(),
            version,
            schema_hash: schema.hash(),
            schema,
            at: at("2026-03-01T09:10:00Z"),
        })
    }

    fn step(version: VersionNo, when: &str) -> FormVersionStep {
        FormVersionStep {
            form_id: form_id(),
            version,
            schema_hash: schema().hash(),
            at: at(when),
        }
    }

    #[test]
    fn the_sample_schema_is_a_form_and_finds_its_uploads() {
        let s = schema();
        assert_eq!(
            s.uploads(),
            &BTreeMap::from([("foto".to_owned(), false), ("nachweis".to_owned(), true)])
        );
        let canonical = crate::jcs::canonicalize(&sample_schema()).expect("jcs");
        assert_eq!(s.hash(), Sha256::of(&canonical));
        assert_eq!(s.value(), &sample_schema());
    }

    #[test]
    fn editor_elements_and_fim_ids_round_trip_through_the_log() {
        let event = drafted(1, schema());
        let (data, personal) = round_trip(&event);
        assert_eq!(personal, None);
        let stored: Value = serde_json::from_str(&data).expect("json");
        assert_eq!(
            stored["schema"],
            sample_schema(),
            "the schema is stored as given"
        );
        assert_eq!(
            stored["schema"]["properties"]["familienname"]["x-fim-id"],
            "F60000227"
        );
        assert_eq!(
            stored["schema"]["properties"]["nachweis"]["x-editor"]["accept"],
            "application/pdf"
        );
        for e in [
            created(),
            FormEvent::Published(step(1, "2026-03-02T00:00:00Z")),
            FormEvent::Retired(step(1, "2026-03-03T00:00:00Z")),
        ] {
            round_trip(&e);
        }
    }

    #[test]
    fn a_stored_schema_whose_hash_does_not_match_is_refused() {
        let FormEvent::Drafted(mut e) = drafted(1, schema()) else {
            unreachable!()
        };
        e.schema_hash = Sha256::of(b"other");
        let parts = FormEvent::Drafted(e).to_parts().expect("parts");
        assert!(matches!(
            FormEvent::from_parts(&parts.event_type, &parts.data, None),
            Err(PartsError::Data { .. })
        ));
    }

    #[test]
    fn data_is_checked_against_the_schema_with_json_pointers() {
        let s = schema();
        let good = json!({
            "familienname": "Müller", "geburtsdatum": "1990-02-03", "kinder": 2,
            "anschrift": {"ort": "Meißen"}, "zustimmung": true,
            "nachweis": Sha256::of(b"pdf").to_string()
        });
        assert_eq!(s.check(&good), Ok(()));
        let bad = json!({
            "familienname": "", "geburtsdatum": "3. Februar", "kinder": -1,
            "anschrift": {"ort": 7}, "unbekannt": 1
        });
        let err = s.check(&bad).expect_err("invalid");
        let found: BTreeSet<(&str, &str)> = err
            .violations
            .iter()
            .map(|v| (v.pointer.as_str(), v.keyword.as_str()))
            .collect();
        for expected in [
            ("/familienname", "minLength"),
            ("/geburtsdatum", "format"),
            ("/kinder", "minimum"),
            ("/anschrift/ort", "type"),
            ("/nachweis", "required"),
            ("", "additionalProperties"),
        ] {
            assert!(found.contains(&expected), "{expected:?} in {found:?}");
        }
        assert_eq!(err.count, err.violations.len());
        let text = format!("{err:?} {err}");
        assert!(!text.contains("3. Februar"), "no data in errors: {text}");
    }

    #[test]
    fn violations_are_capped_but_counted() {
        let mut properties = Map::new();
        let mut data = Map::new();
        for i in 0..150 {
            properties.insert(format!("f{i}"), json!({"type": "integer"}));
            data.insert(format!("f{i}"), json!("x"));
        }
        let s =
            FormSchema::parse(json!({"type": "object", "properties": properties})).expect("schema");
        let err = s.check(&Value::Object(data)).expect_err("invalid");
        assert_eq!(err.violations.len(), MAX_VIOLATIONS);
        assert_eq!(err.count, 150);
    }

    #[test]
    fn schemas_that_are_no_forms_are_refused() {
        let refused = |v: Value| FormSchema::parse(v).expect_err("refused");
        assert_eq!(refused(json!([1])), SchemaError::NotAnObjectSchema);
        assert_eq!(
            refused(json!({"type": "string", "properties": {}})),
            SchemaError::NotAnObjectSchema
        );
        assert_eq!(
            refused(json!({"type": "object"})),
            SchemaError::NotAnObjectSchema
        );
        assert_eq!(
            refused(json!({"$schema": "http://json-schema.org/draft-07/schema#",
                           "type": "object", "properties": {}})),
            SchemaError::Dialect
        );
        assert!(matches!(
            refused(json!({"type": "object", "properties": {"a": {"type": "text"}}})),
            SchemaError::Invalid(_)
        ));
        assert!(matches!(
            refused(json!({"type": "object", "properties": {"a": {"minLength": -1}}})),
            SchemaError::Invalid(_)
        ));
        // The validator fetches nothing: another document is refused.
        assert!(matches!(
            refused(json!({"type": "object", "properties": {
                "a": {"$ref": "https://schema.fitko.de/fim/other.schema.json"}}})),
            SchemaError::Invalid(_)
        ));
        assert!(matches!(
            refused(
                json!({"type": "object", "properties": {"a": {"maximum": 9007199254740993u64}}})
            ),
            SchemaError::NotCanonical(_)
        ));
        let big = "x".repeat(MAX_SCHEMA_BYTES);
        assert!(matches!(
            refused(json!({"type": "object", "properties": {}, "description": big})),
            SchemaError::TooLarge(_)
        ));
    }

    #[test]
    fn local_references_are_allowed() {
        let s = FormSchema::parse(json!({
            "type": "object",
            "$defs": {"plz": {"type": "string", "pattern": "^[0-9]{5}$", "x-fim-id": "F60000246"}},
            "properties": {"plz": {"$ref": "#/$defs/plz"}}
        }))
        .expect("schema");
        assert_eq!(s.check(&json!({"plz": "01662"})), Ok(()));
        assert_eq!(
            s.check(&json!({"plz": "1662"}))
                .expect_err("invalid")
                .violations[0]
                .pointer,
            "/plz"
        );
    }

    #[test]
    fn bad_annotations_are_refused_naming_where() {
        let at = |v: Value| match FormSchema::parse(v) {
            Err(SchemaError::Annotation { pointer, .. }) => pointer,
            other => panic!("{other:?}"),
        };
        let with_property = |p: Value| json!({"type": "object", "properties": {"a": p}});
        assert_eq!(
            at(with_property(json!({"type": "string", "x-fim-id": "F123"}))),
            "/properties/a/x-fim-id"
        );
        assert_eq!(
            at(with_property(
                json!({"type": "string", "x-fim-id": "S00000001"})
            )),
            "/properties/a/x-fim-id"
        );
        assert_eq!(
            at(with_property(
                json!({"type": "string", "x-fim-id": "F00000001V1"})
            )),
            "/properties/a/x-fim-id"
        );
        assert_eq!(
            at(with_property(
                json!({"type": "string", "x-editor": {"element": "slider"}})
            )),
            "/properties/a/x-editor"
        );
        assert_eq!(
            at(with_property(
                json!({"type": "string", "x-editor": "input"})
            )),
            "/properties/a/x-editor"
        );
        assert_eq!(
            at(with_property(
                json!({"type": "integer", "x-editor": {"element": "upload"}})
            )),
            "/properties/a"
        );
        assert_eq!(
            at(
                json!({"type": "object", "properties": {"g": {"type": "object", "properties": {
                "u": {"type": "string", "x-editor": {"element": "upload"}}}}}})
            ),
            "/properties/g/properties/u"
        );
        assert_eq!(
            at(json!({"type": "object", "x-fim-id": "F00000001", "properties": {}})),
            "/x-fim-id"
        );
        let layout = |l: Value| json!({"type": "object", "properties": {"a": {"type": "string"}}, "x-layout": l});
        assert_eq!(at(layout(json!([]))), "/x-layout");
        assert_eq!(at(layout(json!({"pages": [{}]}))), "/x-layout/pages/0");
        assert_eq!(
            at(layout(
                json!({"pages": [{"items": [{"kind": "field", "property": "b"}]}]})
            )),
            "/x-layout/pages/0/items/0"
        );
        assert_eq!(
            at(layout(
                json!({"pages": [{"items": [{"kind": "field", "property": "a"}]},
                                       {"items": [{"kind": "container", "items": [
                                           {"kind": "field", "property": "a"}]}]}]})
            )),
            "/x-layout/pages/1/items/0/items/0"
        );
        assert_eq!(
            at(layout(json!({"pages": [{"items": [{"kind": "video"}]}]}))),
            "/x-layout/pages/0/items/0"
        );
        assert_eq!(
            at(layout(json!({"pages": [{"items": [{"kind": "text"}]}]}))),
            "/x-layout/pages/0/items/0"
        );
        assert_eq!(
            at(layout(json!({"pages": [{"items": [{"kind": "image"}]}]}))),
            "/x-layout/pages/0/items/0"
        );
        assert_eq!(
            at(layout(
                json!({"pages": [{"items": [{"kind": "fieldset"}]}]})
            )),
            "/x-layout/pages/0/items/0"
        );
    }

    #[test]
    fn versions_are_numbered_and_edited_until_published() {
        let state = with(&[created()]);
        let events = decide(
            &FormCommand::DraftVersion {
                schema: schema(),
                at: at("2026-03-01T09:10:00Z"),
            },
            &state,
        )
        .expect("draft");
        assert_eq!(events, vec![drafted(1, schema())]);
        let state = with(&[created(), drafted(1, schema())]);
        let other = FormSchema::parse(json!({"type": "object", "properties": {}})).expect("schema");
        let revised = decide(
            &FormCommand::ReviseVersion {
                version: 1,
                schema: other.clone(),
                at: at("2026-03-01T09:20:00Z"),
            },
            &state,
        )
        .expect("revise");
        let state = FormState::evolve(state, &revised[0]);
        assert_eq!(state.version(1).map(|v| &v.schema), Some(&other));
        let next = decide(
            &FormCommand::DraftVersion {
                schema: schema(),
                at: at("2026-03-01T09:30:00Z"),
            },
            &state,
        )
        .expect("second");
        assert!(matches!(&next[0], FormEvent::Drafted(e) if e.version == 2));
        assert_eq!(state.current(), None, "nothing published yet");
    }

    #[test]
    fn a_published_version_never_changes_and_carries_its_hash() {
        let state = with(&[created(), drafted(1, schema())]);
        let events = decide(
            &FormCommand::Publish {
                version: 1,
                at: at("2026-03-02T00:00:00Z"),
            },
            &state,
        )
        .expect("publish");
        assert_eq!(
            events,
            vec![FormEvent::Published(step(1, "2026-03-02T00:00:00Z"))]
        );
        let state = FormState::evolve(state, &events[0]);
        assert_eq!(state.current().map(|v| v.version), Some(1));
        assert_eq!(
            decide(
                &FormCommand::ReviseVersion {
                    version: 1,
                    schema: schema(),
                    at: at("2026-03-03T00:00:00Z")
                },
                &state
            ),
            Err(FormError::NotEditable(1))
        );
        // A revision that reached the log anyway changes nothing.
        let other = FormSchema::parse(json!({"type": "object", "properties": {}})).expect("schema");
        let after = FormState::evolve(
            state.clone(),
            &FormEvent::Revised(FormVersionSchema {
                form_id: form_id(),
                version: 1,
                schema_hash: other.hash(),
                schema: other,
                at: at("2026-03-03T00:00:00Z"),
            }),
        );
        assert_eq!(after, state);
        assert_eq!(
            decide(
                &FormCommand::Publish {
                    version: 1,
                    at: at("2026-03-04T00:00:00Z")
                },
                &state
            ),
            Ok(vec![]),
            "publishing again is a harmless repeat"
        );
    }

    #[test]
    fn retired_versions_are_final() {
        let state = with(&[
            created(),
            drafted(1, schema()),
            FormEvent::Published(step(1, "2026-03-02T00:00:00Z")),
        ]);
        let retire = FormCommand::Retire {
            version: 1,
            at: at("2026-04-01T00:00:00Z"),
        };
        let events = decide(&retire, &state).expect("retire");
        let state = FormState::evolve(state, &events[0]);
        assert_eq!(
            state.version(1).map(|v| v.status),
            Some(VersionStatus::Retired)
        );
        assert_eq!(state.current(), None);
        assert_eq!(decide(&retire, &state), Ok(vec![]));
        assert_eq!(
            decide(
                &FormCommand::Publish {
                    version: 1,
                    at: at("2026-04-02T00:00:00Z")
                },
                &state
            ),
            Err(FormError::RetiredVersion(1))
        );
    }

    #[test]
    fn commands_on_missing_forms_and_versions_are_refused() {
        let none = FormState::default();
        let publish = |version| FormCommand::Publish {
            version,
            at: at("2026-03-02T00:00:00Z"),
        };
        assert_eq!(decide(&publish(1), &none), Err(FormError::NoForm));
        assert_eq!(
            decide(
                &FormCommand::DraftVersion {
                    schema: schema(),
                    at: at("2026-03-02T00:00:00Z")
                },
                &none
            ),
            Err(FormError::NoForm)
        );
        let state = with(&[created(), drafted(1, schema())]);
        assert_eq!(decide(&publish(2), &state), Err(FormError::NoVersion(2)));
        assert_eq!(
            decide(
                &FormCommand::Retire {
                    version: 1,
                    at: at("2026-03-02T00:00:00Z")
                },
                &state
            ),
            Err(FormError::NotPublished(1))
        );
        assert_eq!(
            decide(
                &FormCommand::Create {
                    form_id: form_id(),
                    title: title(),
                    at: at("2026-03-02T00:00:00Z")
                },
                &state
            ),
            Err(FormError::AlreadyCreated)
        );
    }
}
