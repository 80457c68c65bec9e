//! The shapes of the GDPR domain's request values as `/openapi.json` describes them.
//!
//! The handlers read requests into the domain's own types (`Channel`, `MasterData`,
//! `CategorySet`, …), which check them; the pure domain crate does not depend on the
//! documentation generator, so these types only describe what those parsers take —
//! the enumerations, the grammars of tokens and texts, and the variants of the tagged
//! objects — so that a client (or a generator of test requests) can build a request the
//! service accepts from the document alone. They are never constructed.

#![allow(dead_code)]

use serde::Serialize;
use serde_json::json;
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use amtsbuch_domain::gdpr::DataCategory;

/// Where the subject acted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    ServicekontoWeb,
    Amt24,
    App,
    Paper,
}

/// The kind of a Servicekonto account.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    Personal,
    Organisation,
    Authority,
}

/// The legal basis of a consent: Art. 6 (1) a or, for special categories, Art. 9 (2) a.
#[derive(Debug, Serialize, ToSchema)]
pub enum ConsentBasis {
    #[serde(rename = "art6_1_a")]
    Consent,
    #[serde(rename = "art9_2_a")]
    ExplicitConsent,
}

/// Why the controller revokes a consent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControllerReason {
    PurposeFulfilled,
    RecipientDiscontinued,
    NoticeDefective,
    AccountDeleted,
    LegalChange,
    SupervisoryOrder,
}

/// The statutory duty behind a retention hold.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    CashBook,
    Voucher,
    OpenProcedure,
}

/// An eIDAS level of assurance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrustLevel {
    Low,
    Substantial,
    High,
}

/// How an identity was proven.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IdentityMethod {
    Eid,
    Elster,
    EidasNotified { level: TrustLevel },
    Password,
}

/// Implements `PartialSchema` and `ToSchema` for a string type with a pattern and
/// optional length limits.
macro_rules! string_shape {
    ($(#[$doc:meta])* $name:ident, $pattern:expr, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Serialize)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string($pattern, $min, $max)
            }
        }

        impl ToSchema for $name {}
    };
}

/// Printable text of 1 to N characters: no control characters, no white space at either
/// end.
const TEXT: &str =
    "^[^\\s\\x00-\\x1f\\x7f-\\x9f](?:[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f])?$";

fn string(pattern: &str, min: Option<usize>, max: Option<usize>) -> RefOr<Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some(pattern))
        .min_length(min)
        .max_length(max)
        .into()
}

string_shape!(
    /// A non-personal reference (a legal provision, a file or decision number): 1 to 200
    /// characters, no control characters, no white space at either end.
    Reference,
    TEXT,
    Some(1),
    Some(200)
);
string_shape!(
    /// An identity provider's pseudonym for the person: 1 to 512 characters, no control
    /// characters, no white space at either end.
    IdentityPseudonym,
    TEXT,
    Some(1),
    Some(512)
);
string_shape!(
    /// A processing purpose or a recipient: lowercase ASCII letters, digits, `-`, `_`,
    /// `.`, `:`, starting with a letter or digit, at most 128 characters.
    Token,
    "^[a-z0-9][a-z0-9._:-]{0,127}$",
    None,
    None
);
string_shape!(
    /// The version of a notice text (`2026-01`): a token of at most 64 characters.
    NoticeVersion,
    "^[a-z0-9][a-z0-9._:-]{0,63}$",
    None,
    None
);
/// An e-mail address: `local-part@domain`, no white space.
const EMAIL: &str = "^[^\\s\\x00-\\x1f\\x7f-\\x9f@]+@[^\\s\\x00-\\x1f\\x7f-\\x9f@]+$";

/// The notice text the subject was shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    version: NoticeVersion,
    /// Hex SHA-256 of the notice text.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
}

/// A Servicekonto account's master data (personal data, stored sealed): a person's or
/// an organisation's, by `type`; no other members.
#[derive(Debug, Serialize)]
pub struct MasterData;

impl PartialSchema for MasterData {
    fn schema() -> RefOr<Schema> {
        let text = |max: usize| json!({ "type": "string", "minLength": 1, "maxLength": max, "pattern": TEXT });
        let address = json!({
            "type": ["object", "null"],
            "additionalProperties": false,
            "required": ["street", "postal_code", "locality", "country"],
            "properties": {
                "street": text(200),
                "postal_code": text(200),
                "locality": text(200),
                "country": { "type": "string", "pattern": "^[A-Z]{2}$", "description": "ISO 3166-1 alpha-2 (`DE`)" },
            },
        });
        let email = json!({ "type": ["string", "null"], "maxLength": 254, "pattern": EMAIL });
        let schema = json!({
            "oneOf": [
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["type", "given_names", "family_name"],
                    "properties": {
                        "type": { "type": "string", "enum": ["person"] },
                        "given_names": text(200),
                        "family_name": text(200),
                        "birth_date": { "type": ["string", "null"], "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$" },
                        "address": address,
                        "email": email,
                    },
                },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["type", "name"],
                    "properties": {
                        "type": { "type": "string", "enum": ["organisation"] },
                        "name": text(200),
                        "address": address,
                        "email": email,
                    },
                },
            ],
        });
        // A fixed document that always reads as a schema; the golden OpenAPI file shows it.
        serde_json::from_value(schema).unwrap_or_else(|_| RefOr::T(Schema::default()))
    }
}

impl ToSchema for MasterData {}

/// Data categories: one or more of `stammdaten`, `verfahrensdaten`,
/// `kommunikationsdaten`, `elektronische_dokumente`, each once and in that order — so the
/// document lists every such list.
#[derive(Debug, Serialize)]
pub struct Categories;

impl PartialSchema for Categories {
    fn schema() -> RefOr<Schema> {
        let all = DataCategory::ALL;
        let lists: Vec<serde_json::Value> = (1u32..(1 << all.len()))
            .map(|bits| {
                all.iter()
                    .enumerate()
                    .filter(|(i, _)| bits & (1 << i) != 0)
                    .map(|(_, c)| serde_json::to_value(c).unwrap_or_default())
                    .collect()
            })
            .collect();
        // An array schema without `items`: the list of every allowed list says it all.
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Array))
            .enum_values(Some(lists))
            .into()
    }
}

impl ToSchema for Categories {}
