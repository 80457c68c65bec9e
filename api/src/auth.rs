//! Authentication of HTTP callers: Bearer JWTs from the OpenID Connect provider, turned into
//! a `Principal`, and the development tokens `serve --dev` accepts.
//!
//! Keys come from files the operator configures (a JWK set as the provider publishes it, or
//! PEM public keys) and are loaded once at start. Only asymmetric signatures are accepted,
//! and each key verifies only with the algorithms its own type admits: the token's `alg`
//! header merely selects among them. That closes the two classic holes of JWT libraries,
//! `alg: none` and the HMAC confusion where a public key is used as a shared secret.
//! Every token must carry `exp`, `sub` and an `aud` naming this service; `iss` is checked
//! when an issuer is configured. A token whose header or claims name a member twice, or
//! whose header lists critical extensions (`crit`), is refused before its signature is
//! checked (`check_structure`). The role claims then go through `Principal::new`, so a
//! token whose bindings do not fit its roles is refused here, once, with the name of the
//! missing claim, and handlers never see a half-scoped caller.
//!
//! Development tokens are signed by a local Ed25519 key (`DevKey`), issued as
//! `amtsbuch-dev`, and accepted only by an authenticator built with that key, which
//! `serve` does only when started with `--dev`.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{Map, Value};

use amtsbuch_domain::access::{
    BewirtschafterCode, Bindings, ModerationScope, Principal, PrincipalError, RegionKey, Role,
};
use amtsbuch_domain::note::Signer;
use amtsbuch_domain::{AuthorityId, ServiceKey};

use crate::problem::Problem;

/// The audience tokens must name unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "amtsbuch";
/// Clock skew tolerated between the identity provider and this server.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Issuer and key id of development tokens.
pub const DEV_ISSUER: &str = "amtsbuch-dev";
pub const DEV_KID: &str = "amtsbuch-dev";
/// File name of the development token key in the data directory.
pub const DEV_KEY_FILE: &str = "amtsbuch-dev-token.pk8";
/// Longest token looked at. Real tokens are a few kilobytes; this bounds the work a caller
/// can cause before any signature is checked.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest lifetime of a development token.
const MAX_DEV_TTL: Duration = Duration::from_secs(31 * 24 * 3600);

/// Where verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWK set file (`{"keys":[...]}`), as the provider publishes at its `jwks_uri`.
    JwksFile(PathBuf),
    /// A file of one or more PEM public keys (SPKI `PUBLIC KEY`, or `RSA PUBLIC KEY`).
    PemFile(PathBuf),
    /// A JWK set given as text.
    Jwks(String),
    /// PEM public keys given as text.
    Pem(String),
}

/// What the authenticator checks, as `serve` configures it.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub keys: Vec<KeySource>,
    /// The provider's issuer; when set, `iss` is required and must equal it.
    pub issuer: Option<String>,
    /// The value `aud` must contain. Always checked.
    pub audience: String,
    /// Clock skew tolerated for `exp` and `nbf` (whole seconds).
    pub leeway: Duration,
    /// The development key, given only when `serve` runs with `--dev`.
    pub dev_key: Option<DevKey>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            issuer: None,
            audience: DEFAULT_AUDIENCE.to_owned(),
            leeway: DEFAULT_LEEWAY,
            dev_key: None,
        }
    }
}

/// Why the authentication configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {reason}")]
    Key { origin: String, reason: String },
    #[error("no usable token verification key: configure a JWK set or PEM public key of the identity provider, or start with --dev")]
    NoKeys,
    #[error("the audience must not be empty")]
    EmptyAudience,
    #[error("the issuer, when given, must not be empty")]
    EmptyIssuer,
}

/// Why a request was not authenticated. Each variant says what the caller must fix; none
/// carries any part of the token except, truncated, the key id it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header; send `Authorization: Bearer <token>` with a token from the identity provider")]
    MissingHeader,
    #[error("the Authorization header must be sent once, as `Bearer <token>`")]
    MalformedHeader,
    #[error("the bearer token is not a well-formed JWT (base64url header, claims and signature separated by '.')")]
    MalformedToken,
    #[error("tokens with alg {0:?} are not accepted; the identity provider must sign with EdDSA, ES256, ES384, RS256 or PS256")]
    DisallowedAlgorithm(String),
    #[error("no configured key verifies {alg} tokens{}; the identity provider's keys may have been rotated, so update the JWK set", kid_clause(.kid))]
    UnknownKey { kid: Option<String>, alg: String },
    #[error("key {kid:?} is not used with {alg}; the token's alg does not match its key")]
    AlgorithmMismatch { kid: String, alg: String },
    #[error("the token's signature does not verify; it was altered or signed by a key this service does not trust")]
    BadSignature,
    #[error("the token has expired; get a new one from the identity provider")]
    Expired,
    #[error("the token is not valid yet (nbf lies in the future); check the clocks of client and identity provider")]
    NotYetValid,
    #[error("the token is not issued for this service: aud must contain {expected:?}")]
    WrongAudience { expected: String },
    #[error("the token is not issued by the expected identity provider: iss must be {expected:?}")]
    WrongIssuer { expected: String },
    #[error("the token's header marks extensions as critical (`crit`), and this service understands none, so it cannot accept the token (RFC 7515 section 4.1.11)")]
    CriticalExtension,
    #[error("a member name appears twice in the token's {0}; names must be unique (RFC 7515 section 4, RFC 7519 section 4)")]
    DuplicateMember(&'static str),
    #[error("the token lacks the claim `{0}`")]
    MissingClaim(String),
    #[error("the claim `{claim}` is invalid: {reason}")]
    InvalidClaim { claim: &'static str, reason: String },
    #[error("the token's claims do not fit its roles: {0}")]
    Roles(#[from] PrincipalError),
}

fn kid_clause(kid: &Option<String>) -> String {
    kid.as_ref()
        .map(|kid| format!(" with key id {kid:?}"))
        .unwrap_or_default()
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Self {
        // RFC 6750 section 3.1: a request without credentials (or with another scheme) gets
        // the bare challenge; a request whose token was refused is told `invalid_token`.
        let challenge = match e {
            AuthError::MissingHeader | AuthError::MalformedHeader => "Bearer",
            _ => "Bearer error=\"invalid_token\"",
        };
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            e.to_string(),
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )
    }
}

/// One key tokens may be signed with, and the checks that apply to tokens it signed.
struct VerificationKey {
    /// Where the key came from, for logs and messages.
    origin: String,
    kid: Option<String>,
    key: DecodingKey,
    /// The validation for this key: its algorithms, audience, issuer, leeway.
    validation: Validation,
    /// The issuer `validation` requires, for the error message.
    issuer: Option<String>,
}

impl VerificationKey {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.validation.algorithms.contains(&alg)
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("origin", &self.origin)
            .field("kid", &self.kid)
            .field("algorithms", &self.validation.algorithms)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Verifies bearer tokens and turns them into principals. Build it once at start and share
/// it as `Arc<Authenticator>`; handlers get the caller through the `Caller` extractor.
#[derive(Debug)]
pub struct Authenticator {
    keys: Vec<VerificationKey>,
    audience: String,
    dev: bool,
}

/// A key as read from a source, before the validation settings are attached.
struct LoadedKey {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl Authenticator {
    /// Load the keys of `config`. Keys of a JWK set that are not for signatures or of a
    /// type this service does not verify (symmetric keys, encryption keys, other curves)
    /// are skipped with a warning; a malformed key of a supported type is an error, as is
    /// a configuration without any usable key.
    pub fn new(config: AuthConfig) -> Result<Self, AuthConfigError> {
        if config.audience.is_empty() {
            return Err(AuthConfigError::EmptyAudience);
        }
        if config.issuer.as_deref() == Some("") {
            return Err(AuthConfigError::EmptyIssuer);
        }
        let mut keys = Vec::new();
        for source in &config.keys {
            let (origin, loaded) = load_source(source)?;
            for key in loaded {
                keys.push(VerificationKey {
                    validation: validation(
                        key.algorithms,
                        &config.audience,
                        config.issuer.as_deref(),
                        config.leeway,
                    ),
                    origin: origin.clone(),
                    kid: key.kid,
                    key: key.key,
                    issuer: config.issuer.clone(),
                });
            }
        }
        let dev = config.dev_key.is_some();
        if let Some(dev_key) = &config.dev_key {
            keys.push(VerificationKey {
                origin: "development key".to_owned(),
                kid: Some(DEV_KID.to_owned()),
                key: DecodingKey::from_ed_der(&dev_key.public_key),
                validation: validation(
                    vec![Algorithm::EdDSA],
                    &config.audience,
                    Some(DEV_ISSUER),
                    config.leeway,
                ),
                issuer: Some(DEV_ISSUER.to_owned()),
            });
        }
        if keys.is_empty() {
            return Err(AuthConfigError::NoKeys);
        }
        Ok(Self {
            keys,
            audience: config.audience,
            dev,
        })
    }

    /// How many verification keys are loaded (including the development key).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Whether development tokens are accepted.
    pub fn dev_enabled(&self) -> bool {
        self.dev
    }

    /// Authenticate a request by its `Authorization: Bearer` header.
    pub fn authenticate_headers(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        self.authenticate_headers_until(headers)
            .map(|(principal, _)| principal)
    }

    /// `authenticate_headers`, with the instant the token expires (its `exp`): a request
    /// that lasts (a subscription) must end then.
    pub fn authenticate_headers_until(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Principal, TokenExpiry), AuthError> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let value = values.next().ok_or(AuthError::MissingHeader)?;
        if values.next().is_some() {
            return Err(AuthError::MalformedHeader);
        }
        let value = value.to_str().map_err(|_| AuthError::MalformedHeader)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::MalformedHeader)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthError::MalformedHeader);
        }
        self.authenticate_until(token)
    }

    /// Verify a bearer token and build the principal it names.
    pub fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        self.authenticate_until(token)
            .map(|(principal, _)| principal)
    }

    /// `authenticate`, with the instant the token expires.
    pub fn authenticate_until(&self, token: &str) -> Result<(Principal, TokenExpiry), AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::MalformedToken);
        }
        check_structure(token)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| header_error(token))?;
        let alg = header.alg;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(AuthError::DisallowedAlgorithm(format!("{alg:?}")));
        }
        let candidates = self.candidates(header.kid.as_deref(), alg)?;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation) {
                Ok(data) => {
                    // `exp` is required and was checked, so it is a number here.
                    let exp = data
                        .claims
                        .get("exp")
                        .and_then(|exp| exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64)))
                        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
                        .ok_or_else(|| AuthError::MissingClaim("exp".to_owned()))?;
                    return Ok((principal_from_claims(&data.claims)?, TokenExpiry(exp)));
                }
                Err(e) => match e.into_kind() {
                    // Another candidate may have signed it.
                    ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => continue,
                    ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey => {
                        tracing::warn!(key = ?key, "a configured token key cannot be used");
                        continue;
                    }
                    // The signature verified with this key, so the claims decide.
                    kind => return Err(self.claims_error(kind, key)),
                },
            }
        }
        Err(AuthError::BadSignature)
    }

    /// The keys to try for a token: those with the token's `kid` if any key has it (and
    /// then they must accept `alg`), otherwise the keys without an id that accept `alg`,
    /// and for a token without `kid` every key that accepts `alg`.
    fn candidates(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<&VerificationKey>, AuthError> {
        let candidates: Vec<&VerificationKey> = match kid {
            Some(kid) => {
                let named: Vec<&VerificationKey> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if named.is_empty() {
                    self.keys
                        .iter()
                        .filter(|k| k.kid.is_none() && k.accepts(alg))
                        .collect()
                } else {
                    let fitting: Vec<&VerificationKey> =
                        named.into_iter().filter(|k| k.accepts(alg)).collect();
                    if fitting.is_empty() {
                        return Err(AuthError::AlgorithmMismatch {
                            kid: truncate(kid),
                            alg: format!("{alg:?}"),
                        });
                    }
                    fitting
                }
            }
            None => self.keys.iter().filter(|k| k.accepts(alg)).collect(),
        };
        if candidates.is_empty() {
            return Err(AuthError::UnknownKey {
                kid: kid.map(truncate),
                alg: format!("{alg:?}"),
            });
        }
        Ok(candidates)
    }

    fn claims_error(&self, kind: ErrorKind, key: &VerificationKey) -> AuthError {
        match kind {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::WrongAudience {
                expected: self.audience.clone(),
            },
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer {
                expected: key.issuer.clone().unwrap_or_default(),
            },
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim),
            _ => AuthError::MalformedToken,
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The validation settings for tokens signed by one key.
fn validation(
    algorithms: Vec<Algorithm>,
    audience: &str,
    issuer: Option<&str>,
    leeway: Duration,
) -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.algorithms = algorithms;
    v.leeway = leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.set_audience(&[audience]);
    let mut required: HashSet<String> = ["exp", "sub", "aud"].map(str::to_owned).into();
    if let Some(issuer) = issuer {
        v.set_issuer(&[issuer]);
        required.insert("iss".to_owned());
    }
    v.required_spec_claims = required;
    v
}

/// What the JWT library does not check of a token's form: no member name twice, in the
/// header or anywhere in the claims (serde reads a repeated name as "the last one wins",
/// so one token could say two things to two readers), and no `crit` header (critical
/// extensions must be understood, and this service understands none). Checked before the
/// signature, on at most `MAX_TOKEN_LEN` bytes; a header or claims part that is not
/// base64url JSON makes the token malformed.
fn check_structure(token: &str) -> Result<(), AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::MalformedToken);
    };
    let json = |text| base64url_decode(text).ok_or(AuthError::MalformedToken);
    let (header, claims) = (json(header)?, json(claims)?);
    for (part, json) in [("header", &header), ("claims", &claims)] {
        match serde_json::from_slice::<UniqueNames>(json) {
            Ok(UniqueNames(true)) => {}
            Ok(UniqueNames(false)) => return Err(AuthError::DuplicateMember(part)),
            Err(_) => return Err(AuthError::MalformedToken),
        }
    }
    let header: Map<String, Value> =
        serde_json::from_slice(&header).map_err(|_| AuthError::MalformedToken)?;
    if header.contains_key("crit") {
        return Err(AuthError::CriticalExtension);
    }
    Ok(())
}

/// Whether a JSON text names every member of every object in it once only. It walks the
/// text without keeping it; the names of one object at a time are held to compare.
struct UniqueNames(bool);

impl<'de> serde::Deserialize<'de> for UniqueNames {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueNamesVisitor)
    }
}

struct UniqueNamesVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueNamesVisitor {
    type Value = UniqueNames;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueNames, A::Error> {
        let mut names = HashSet::new();
        let mut unique = true;
        while let Some(name) = map.next_key::<String>()? {
            unique &= names.insert(name);
            unique &= map.next_value::<UniqueNames>()?.0;
        }
        Ok(UniqueNames(unique))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueNames, A::Error> {
        let mut unique = true;
        while let Some(item) = seq.next_element::<UniqueNames>()? {
            unique &= item.0;
        }
        Ok(UniqueNames(unique))
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueNames, E> {
        Ok(UniqueNames(true))
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueNames, E> {
        Ok(UniqueNames(true))
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueNames, E> {
        Ok(UniqueNames(true))
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueNames, E> {
        Ok(UniqueNames(true))
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueNames, E> {
        Ok(UniqueNames(true))
    }

    fn visit_unit<E>(self) -> Result<UniqueNames, E> {
        Ok(UniqueNames(true))
    }
}

/// Why a token's header did not parse: an algorithm this service refuses (`none`, or one
/// the library does not know) is named; anything else is a malformed token.
fn header_error(token: &str) -> AuthError {
    let alg = token
        .split('.')
        .next()
        .and_then(base64url_decode)
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|header| header.get("alg")?.as_str().map(truncate));
    match alg {
        Some(alg) if alg.parse::<Algorithm>().is_err() => AuthError::DisallowedAlgorithm(alg),
        _ => AuthError::MalformedToken,
    }
}

/// Build the principal from verified claims: `sub`, `roles` (unknown names ignored),
/// `account`, `authority`, `regions`, `services`, `bewirtschafter`, `moderates`.
fn principal_from_claims(claims: &Map<String, Value>) -> Result<Principal, AuthError> {
    let subject = match claims.get("sub") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(AuthError::MissingClaim("sub".to_owned())),
    };
    let roles = string_list(claims, "roles")?
        .into_iter()
        .filter_map(|name| name.parse::<Role>().ok());
    let account = optional_string(claims, "account")?;
    let authority = optional_string(claims, "authority")?
        .map(|s| AuthorityId::parse(&s))
        .transpose()
        .map_err(|e| invalid("authority", e))?;
    let regions = string_list(claims, "regions")?
        .iter()
        .map(|s| RegionKey::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("regions", e))?;
    let services = string_list(claims, "services")?
        .iter()
        .map(|s| ServiceKey::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("services", e))?;
    let bewirtschafter = string_list(claims, "bewirtschafter")?
        .iter()
        .map(|s| BewirtschafterCode::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("bewirtschafter", e))?;
    let moderates = string_list(claims, "moderates")?
        .iter()
        .map(|s| ModerationScope::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("moderates", e))?;
    let bindings = Bindings {
        account,
        authority,
        regions,
        services,
        bewirtschafter,
        moderates,
    };
    Ok(Principal::new(subject, roles, bindings)?)
}

fn invalid(claim: &'static str, e: impl fmt::Display) -> AuthError {
    AuthError::InvalidClaim {
        claim,
        reason: e.to_string(),
    }
}

fn optional_string(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<String>, AuthError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(claim, "must be a string")),
    }
}

fn string_list(claims: &Map<String, Value>, claim: &'static str) -> Result<Vec<String>, AuthError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(invalid(claim, "must be an array of strings")),
            })
            .collect(),
        Some(_) => Err(invalid(claim, "must be an array of strings")),
    }
}

/// When the caller's token expires (its `exp`), which the router's guard leaves in the
/// request beside the `Caller`: a response that outlives the request, such as an event
/// subscription, ends then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenExpiry(pub DateTime<Utc>);

/// The authenticated caller of a handler. The router's guard authenticates every request
/// to a protected route before the handler runs and leaves the caller in the request, so
/// the token is verified once; outside that router, extracting it verifies the token and
/// answers `401` with a problem and a `WWW-Authenticate` challenge when it is not
/// acceptable.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S> FromRequestParts<S> for Caller
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let authenticator = Arc::<Authenticator>::from_ref(state);
        match authenticator.authenticate_headers(&parts.headers) {
            Ok(principal) => Ok(Caller(principal)),
            Err(e) => {
                tracing::debug!(reason = %e, "request not authenticated");
                Err(Problem::from(e))
            }
        }
    }
}

/// Let the request through only if the caller holds one of `allowed`, and return the
/// caller as the route sees it: narrowed to those of its roles that are in `allowed`
/// (`Principal::restricted_to`), so that a role the route does not grant cannot widen
/// anything the handler decides. Otherwise `403` naming the roles that may.
pub fn require(caller: &Principal, allowed: &[Role]) -> Result<Principal, Problem> {
    if let Some(narrowed) = caller.restricted_to(allowed) {
        return Ok(narrowed);
    }
    Err(Problem::forbidden(format!(
        "this resource may be used by the roles {}; the token grants {}",
        role_list(allowed),
        role_list(caller.roles()),
    )))
}

fn role_list<'a>(roles: impl IntoIterator<Item = &'a Role>) -> String {
    roles
        .into_iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// Loading keys

fn load_source(source: &KeySource) -> Result<(String, Vec<LoadedKey>), AuthConfigError> {
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let (origin, result) = match source {
        KeySource::JwksFile(path) => (path.display().to_string(), jwks_keys(&read(path)?)),
        KeySource::PemFile(path) => (path.display().to_string(), pem_keys(&read(path)?)),
        KeySource::Jwks(text) => ("JWK set".to_owned(), jwks_keys(text)),
        KeySource::Pem(text) => ("PEM key".to_owned(), pem_keys(text)),
    };
    match result {
        Ok(keys) => Ok((origin, keys)),
        Err(reason) => Err(AuthConfigError::Key { origin, reason }),
    }
}

/// The signature keys of a JWK set (RFC 7517).
fn jwks_keys(text: &str) -> Result<Vec<LoadedKey>, String> {
    let set: Value = serde_json::from_str(text).map_err(|e| format!("not a JSON JWK set: {e}"))?;
    let Some(Value::Array(entries)) = set.get("keys") else {
        return Err("a JWK set must be an object with an array \"keys\"".to_owned());
    };
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(jwk) = entry else {
            return Err(format!("keys[{i}] is not an object"));
        };
        match jwk_key(jwk) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(reason) => return Err(format!("keys[{i}]: {reason}")),
        }
    }
    Ok(keys)
}

/// One JWK: `Ok(None)` for a key this service does not use (logged), `Err` for a key of a
/// supported type that is malformed.
fn jwk_key(jwk: &Map<String, Value>) -> Result<Option<LoadedKey>, String> {
    let text = |name: &str| -> Result<Option<&str>, String> {
        match jwk.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("\"{name}\" must be a string")),
        }
    };
    let kid = text("kid")?.map(str::to_owned);
    let kty = text("kty")?.ok_or("\"kty\" is missing")?;
    let skip = |why: &str| {
        tracing::warn!(kid = ?kid, kty, "skipping a JWK: {why}");
        Ok(None)
    };
    if let Some(usage) = text("use")? {
        if usage != "sig" {
            return skip("its \"use\" is not \"sig\"");
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return skip("its \"key_ops\" do not include \"verify\"");
        }
    }
    let declared = text("alg")?;
    let component = |name: &str| -> Result<Vec<u8>, String> {
        let value = text(name)?.ok_or_else(|| format!("\"{name}\" is missing"))?;
        base64url_decode(value).ok_or_else(|| format!("\"{name}\" is not base64url"))
    };
    let (key, allowed): (DecodingKey, &[Algorithm]) = match kty {
        "OKP" => {
            if text("crv")? != Some("Ed25519") {
                return skip("only the OKP curve Ed25519 is supported");
            }
            let x = component("x")?;
            if x.len() != 32 {
                return Err("an Ed25519 \"x\" must be 32 bytes".to_owned());
            }
            (DecodingKey::from_ed_der(&x), &[Algorithm::EdDSA])
        }
        "EC" => {
            let (len, allowed): (usize, &'static [Algorithm]) = match text("crv")? {
                Some("P-256") => (32, &[Algorithm::ES256]),
                Some("P-384") => (48, &[Algorithm::ES384]),
                _ => return skip("only the EC curves P-256 and P-384 are supported"),
            };
            let (x, y) = (component("x")?, component("y")?);
            if x.len() != len || y.len() != len {
                return Err(format!(
                    "the coordinates of this curve are {len} bytes each"
                ));
            }
            let point = [&[0x04], x.as_slice(), y.as_slice()].concat();
            (DecodingKey::from_ec_der(&point), allowed)
        }
        "RSA" => {
            let (n, e) = (component("n")?, component("e")?);
            check_rsa_modulus(&n)?;
            if e.is_empty() {
                return Err("\"e\" is empty".to_owned());
            }
            (
                DecodingKey::from_rsa_raw_components(&n, &e),
                &[
                    Algorithm::RS256,
                    Algorithm::PS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
            )
        }
        "oct" => return skip("symmetric keys are never accepted"),
        _ => return skip("unsupported key type"),
    };
    let algorithms = match declared {
        // A key that names its algorithm is used with that one only.
        Some(name) => match name.parse::<Algorithm>() {
            Ok(alg) if allowed.contains(&alg) => vec![alg],
            _ => return skip("its \"alg\" does not fit its key type"),
        },
        // Otherwise the usual algorithms of its type: RSA keys from providers sign RS256,
        // some PS256; the longer hashes are used only when the key names them.
        None => allowed.iter().copied().take(2).collect(),
    };
    Ok(Some(LoadedKey {
        kid,
        key,
        algorithms,
    }))
}

/// Refuse RSA moduli below 2048 bits at load time; `ring` would refuse them at every
/// verification instead, which would look like bad signatures.
fn check_rsa_modulus(n: &[u8]) -> Result<(), String> {
    let significant = n.iter().skip_while(|b| **b == 0).count();
    if significant < 256 {
        return Err(format!(
            "the RSA modulus has {} bits; at least 2048 are required",
            significant * 8
        ));
    }
    Ok(())
}

/// The public keys in a PEM text: `PUBLIC KEY` (SPKI; RSA, EC P-256/P-384 or Ed25519,
/// told apart by the algorithm identifier inside) or `RSA PUBLIC KEY` (PKCS#1).
fn pem_keys(text: &str) -> Result<Vec<LoadedKey>, String> {
    let mut keys = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            if line == end {
                closed = true;
                break;
            }
            body.push_str(line);
        }
        if !closed {
            return Err(format!("the PEM block {label:?} has no end line"));
        }
        let der = amtsbuch_domain::base64::decode(&body)
            .map_err(|e| format!("the PEM block {label:?} is not valid base64: {e}"))?;
        let (key, algorithms) = match label {
            "PUBLIC KEY" => spki_key(&der)?,
            "RSA PUBLIC KEY" => {
                check_rsa_modulus(&rsa_modulus(&der)?)?;
                (
                    DecodingKey::from_rsa_der(&der),
                    vec![Algorithm::RS256, Algorithm::PS256],
                )
            }
            l if l.contains("PRIVATE KEY") => {
                return Err("this is a private key; configure the public key (openssl pkey -in KEY -pubout)".to_owned());
            }
            "CERTIFICATE" => {
                return Err("certificates are not read; configure the public key (openssl x509 -in CERT -pubkey -noout)".to_owned());
            }
            other => return Err(format!("PEM blocks of type {other:?} are not supported")),
        };
        keys.push(LoadedKey {
            kid: None,
            key,
            algorithms,
        });
    }
    if keys.is_empty() {
        return Err("no PEM public key found".to_owned());
    }
    Ok(keys)
}

const DER_SEQUENCE: u8 = 0x30;
const DER_BIT_STRING: u8 = 0x03;
const DER_OID: u8 = 0x06;
const DER_INTEGER: u8 = 0x02;
/// 1.2.840.113549.1.1.1
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.2.840.10045.2.1
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.3.132.0.34
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// 1.3.101.112
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// One DER element: tag, contents, and what follows. Lengths up to 2^24 suffice for keys.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

fn der_expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    match der_next(input) {
        Some((t, contents, rest)) if t == tag => Ok((contents, rest)),
        _ => Err(format!("malformed public key: expected {what}")),
    }
}

/// Parse a SubjectPublicKeyInfo (RFC 5280) and infer the algorithms from the key type.
fn spki_key(der: &[u8]) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    let (spki, rest) = der_expect(der, DER_SEQUENCE, "a SubjectPublicKeyInfo")?;
    if !rest.is_empty() {
        return Err("malformed public key: trailing bytes".to_owned());
    }
    let (algorithm, rest) = der_expect(spki, DER_SEQUENCE, "an algorithm identifier")?;
    let (bits, rest) = der_expect(rest, DER_BIT_STRING, "the key bits")?;
    if !rest.is_empty() {
        return Err("malformed public key: trailing bytes".to_owned());
    }
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err("malformed public key: bad bit string".to_owned()),
    };
    let (oid, parameters) = der_expect(algorithm, DER_OID, "an algorithm OID")?;
    match oid {
        OID_RSA => {
            check_rsa_modulus(&rsa_modulus(key)?)?;
            Ok((
                DecodingKey::from_rsa_der(key),
                vec![Algorithm::RS256, Algorithm::PS256],
            ))
        }
        OID_EC => {
            let (curve, _) = der_expect(parameters, DER_OID, "a named curve")?;
            let (len, alg) = match curve {
                OID_P256 => (65, Algorithm::ES256),
                OID_P384 => (97, Algorithm::ES384),
                _ => return Err("only the EC curves P-256 and P-384 are supported".to_owned()),
            };
            if key.len() != len || key.first() != Some(&0x04) {
                return Err("the EC public key must be an uncompressed point".to_owned());
            }
            Ok((DecodingKey::from_ec_der(key), vec![alg]))
        }
        OID_ED25519 => {
            if key.len() != 32 {
                return Err("an Ed25519 public key must be 32 bytes".to_owned());
            }
            Ok((DecodingKey::from_ed_der(key), vec![Algorithm::EdDSA]))
        }
        _ => Err("unsupported key type; use Ed25519, EC P-256/P-384 or RSA".to_owned()),
    }
}

/// The modulus of a PKCS#1 RSAPublicKey.
fn rsa_modulus(der: &[u8]) -> Result<Vec<u8>, String> {
    let (key, _) = der_expect(der, DER_SEQUENCE, "an RSA public key")?;
    let (modulus, _) = der_expect(key, DER_INTEGER, "the RSA modulus")?;
    Ok(modulus.to_vec())
}

/// Decode unpadded base64url (RFC 4648 section 5), as JOSE uses it, through the strict
/// standard decoder.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    if text.contains(['+', '/', '=']) {
        return None;
    }
    let mut standard: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !standard.len().is_multiple_of(4) {
        standard.push('=');
    }
    amtsbuch_domain::base64::decode(&standard).ok()
}

fn base64url_encode(bytes: &[u8]) -> String {
    amtsbuch_domain::base64::encode(bytes)
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Development tokens

/// The development token key: Ed25519, kept as PKCS#8 in a file readable by its owner only.
#[derive(Clone)]
pub struct DevKey {
    pkcs8: Vec<u8>,
    public_key: [u8; 32],
}

impl fmt::Debug for DevKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevKey")
            .field("kid", &DEV_KID)
            .field("public_key", &base64url_encode(&self.public_key))
            .finish_non_exhaustive()
    }
}

impl DevKey {
    /// The default place of the key: `data/amtsbuch-dev-token.pk8`.
    pub fn default_path() -> PathBuf {
        Path::new("data").join(DEV_KEY_FILE)
    }

    /// A fresh key that lives in memory only.
    pub fn generate() -> anyhow::Result<Self> {
        let pkcs8 =
            Signer::generate_pkcs8().map_err(|e| anyhow::anyhow!("cannot generate a key: {e}"))?;
        Self::from_pkcs8(&pkcs8)
    }

    /// A key from its PKCS#8 bytes.
    pub fn from_pkcs8(pkcs8: &[u8]) -> anyhow::Result<Self> {
        let signer = Signer::from_pkcs8(DEV_KID, pkcs8)
            .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
        Ok(Self {
            pkcs8: pkcs8.to_vec(),
            public_key: signer.public_key(),
        })
    }

    /// Load the key at `path`, creating it (mode 0600) if it does not exist yet. Returns
    /// whether it was created.
    pub fn load_or_create(path: &Path) -> anyhow::Result<(Self, bool)> {
        use anyhow::Context;
        if !path.exists() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let pkcs8 = Signer::generate_pkcs8()
                .map_err(|e| anyhow::anyhow!("cannot generate a key: {e}"))?;
            match crate::keys::write_private(path, &pkcs8) {
                Ok(()) => return Ok((Self::from_pkcs8(&pkcs8)?, true)),
                // Another process created it in the meantime; use that one.
                Err(_) if path.exists() => {}
                Err(e) => return Err(e),
            }
        }
        let bytes = fs::read(path)
            .with_context(|| format!("cannot read development key {}", path.display()))?;
        let key = Self::from_pkcs8(&bytes)
            .with_context(|| format!("{} is not a development key", path.display()))?;
        Ok((key, false))
    }
}

/// What a development token should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub subject: String,
    pub roles: Vec<Role>,
    pub account: Option<String>,
    pub authority: Option<AuthorityId>,
    pub regions: Vec<RegionKey>,
    pub services: Vec<ServiceKey>,
    /// The Bewirtschafter a cashier works for.
    pub bewirtschafter: Vec<BewirtschafterCode>,
    /// What a moderator moderates.
    pub moderates: Vec<ModerationScope>,
    /// How long the token is valid, from `now`.
    pub ttl: Duration,
    /// Must match the server's configured audience.
    pub audience: String,
}

impl TokenRequest {
    /// A request for `subject` with `roles`, valid for one hour, for the default audience.
    pub fn new(subject: impl Into<String>, roles: impl IntoIterator<Item = Role>) -> Self {
        Self {
            subject: subject.into(),
            roles: roles.into_iter().collect(),
            account: None,
            authority: None,
            regions: Vec::new(),
            services: Vec::new(),
            bewirtschafter: Vec::new(),
            moderates: Vec::new(),
            ttl: Duration::from_secs(3600),
            audience: DEFAULT_AUDIENCE.to_owned(),
        }
    }
}

/// Why a development token could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error("the token would be refused: {0}")]
    Roles(#[from] PrincipalError),
    #[error("the lifetime must be between 1 second and 31 days")]
    Ttl,
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

#[derive(Serialize)]
struct DevClaims<'a> {
    iss: &'static str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    roles: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authority: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    regions: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    services: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bewirtschafter: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    moderates: Vec<&'a str>,
}

/// Make a development token, valid from `now` for `request.ttl`. The request must describe
/// a principal the server would accept, so a mistake shows here and not at the first call.
pub fn mint(key: &DevKey, request: &TokenRequest, now: DateTime<Utc>) -> Result<String, MintError> {
    let principal = Principal::new(
        request.subject.clone(),
        request.roles.iter().copied(),
        Bindings {
            account: request.account.clone(),
            authority: request.authority.clone(),
            regions: request.regions.clone(),
            services: request.services.clone(),
            bewirtschafter: request.bewirtschafter.clone(),
            moderates: request.moderates.clone(),
        },
    )?;
    if request.ttl.is_zero() || request.ttl > MAX_DEV_TTL {
        return Err(MintError::Ttl);
    }
    let ttl = i64::try_from(request.ttl.as_secs()).map_err(|_| MintError::Ttl)?;
    let claims = DevClaims {
        iss: DEV_ISSUER,
        sub: principal.subject(),
        aud: &request.audience,
        iat: now.timestamp(),
        nbf: now.timestamp(),
        exp: now.timestamp() + ttl,
        roles: principal.roles().iter().map(|r| r.as_str()).collect(),
        account: principal.account(),
        authority: principal.authority().map(AuthorityId::as_str),
        regions: principal.regions().iter().map(RegionKey::as_str).collect(),
        services: principal
            .services()
            .iter()
            .map(ServiceKey::as_str)
            .collect(),
        bewirtschafter: principal
            .bewirtschafter()
            .iter()
            .map(BewirtschafterCode::as_str)
            .collect(),
        moderates: principal
            .moderates()
            .iter()
            .map(ModerationScope::as_str)
            .collect(),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(DEV_KID.to_owned());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&key.pkcs8))
        .map_err(|e| MintError::Sign(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(label: &str, der: &[u8]) -> String {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            amtsbuch_domain::base64::encode(der)
        )
    }

    #[test]
    fn base64url_round_trips_and_refuses_the_standard_alphabet() {
        for bytes in [&b""[..], b"a", b"ab", b"abc", &[0xfb, 0xff, 0xfe]] {
            let text = base64url_encode(bytes);
            assert!(!text.contains(['=', '+', '/']), "{text}");
            assert_eq!(base64url_decode(&text).as_deref(), Some(bytes));
        }
        assert_eq!(base64url_decode("-_-_"), Some(vec![0xfb, 0xff, 0xbf]));
        assert_eq!(base64url_decode("+/+/"), None);
        assert_eq!(base64url_decode("YQ=="), None);
        assert_eq!(base64url_decode("Y"), None);
    }

    #[test]
    fn pem_blocks_other_than_public_keys_are_refused_with_the_fix() {
        let private = pem("PRIVATE KEY", &[0x30, 0x00]);
        let e = pem_keys(&private).err().unwrap_or_default();
        assert!(e.contains("private key") && e.contains("-pubout"), "{e}");
        let cert = pem("CERTIFICATE", &[0x30, 0x00]);
        let e = pem_keys(&cert).err().unwrap_or_default();
        assert!(e.contains("x509"), "{e}");
        assert_eq!(
            pem_keys("no pem here").err().as_deref(),
            Some("no PEM public key found")
        );
        let open = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n";
        assert!(pem_keys(open).is_err());
    }

    #[test]
    fn spki_names_the_unsupported_or_malformed_key() {
        // X25519 (1.3.101.110) is an OKP key, but for key agreement.
        let x25519 = [
            &[
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
            ][..],
            &[7u8; 32],
        ]
        .concat();
        let e = spki_key(&x25519).err().unwrap_or_default();
        assert!(e.contains("unsupported key type"), "{e}");
        // An Ed25519 key that is one byte short.
        let short = [
            &[
                0x30, 0x29, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x20, 0x00,
            ][..],
            &[7u8; 31],
        ]
        .concat();
        let e = spki_key(&short).err().unwrap_or_default();
        assert!(e.contains("32 bytes"), "{e}");
        let good = [
            &[
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
            ][..],
            &[7u8; 32],
        ]
        .concat();
        assert_eq!(
            spki_key(&good).map(|(_, algs)| algs),
            Ok(vec![Algorithm::EdDSA])
        );
        // Truncated input never panics.
        for n in 0..good.len() {
            assert!(spki_key(&good[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn small_rsa_moduli_are_refused_at_load() {
        let n = [&[0u8][..], &[0xc5; 128]].concat();
        let e = check_rsa_modulus(&n).err().unwrap_or_default();
        assert!(e.contains("1024 bits"), "{e}");
        assert!(check_rsa_modulus(&[0xc5; 256]).is_ok());
    }

    #[test]
    fn jwks_skips_foreign_keys_and_refuses_malformed_ones() {
        let x = base64url_encode(&[9u8; 32]);
        let set = serde_json::json!({ "keys": [
            { "kty": "oct", "k": "c2VjcmV0" },
            { "kty": "OKP", "crv": "X25519", "x": x },
            { "kty": "OKP", "crv": "Ed25519", "use": "enc", "x": x },
            { "kty": "OKP", "crv": "Ed25519", "key_ops": ["sign"], "x": x },
            { "kty": "OKP", "crv": "Ed25519", "alg": "RS256", "x": x },
            { "kty": "OKP", "crv": "Ed25519", "kid": "good", "x": x },
        ]});
        let keys = jwks_keys(&set.to_string()).expect("set");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("good"));
        assert_eq!(keys[0].algorithms, vec![Algorithm::EdDSA]);

        let bad = serde_json::json!({ "keys": [
            { "kty": "OKP", "crv": "Ed25519", "x": base64url_encode(&[9u8; 31]) },
        ]});
        let e = jwks_keys(&bad.to_string()).err().unwrap_or_default();
        assert!(e.contains("keys[0]") && e.contains("32 bytes"), "{e}");
        assert!(jwks_keys("[]").is_err());
    }

    #[test]
    fn an_authenticator_needs_a_key() {
        assert!(matches!(
            Authenticator::new(AuthConfig::default()),
            Err(AuthConfigError::NoKeys)
        ));
    }
}
