//! Authentication end to end: tokens signed with Ed25519, P-256, P-384 and RSA keys, given
//! to the authenticator as a JWK set and as PEM, must be accepted; every way a token can be
//! wrong must be refused with its own error; development tokens work only with `--dev`;
//! and the `Caller` extractor answers 401 and 403 as RFC 9457 problems.
//!
//! The RSA and EC keys are committed test keys (`tests/keys/`, made with openssl, see the
//! README there), because `ring` cannot generate RSA keys; Ed25519 keys are also made fresh
//! per test.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::ServiceExt;

use amtsbuch_api::auth::{
    mint, require, AuthConfig, AuthConfigError, AuthError, Authenticator, Caller, DevKey,
    KeySource, MintError, TokenRequest, DEV_ISSUER, DEV_KID,
};
use amtsbuch_api::problem::Problem;
use amtsbuch_domain::access::{Binding, Principal, PrincipalError, RegionKey, Role};
use amtsbuch_domain::note::Signer;
use amtsbuch_domain::AuthorityId;

const ISSUER: &str = "https://id.sachsen.example/realms/amtsbuch";

fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).expect("test key file")
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(&key_file("rsa.key.pem")).expect("rsa key")
}

fn p256() -> EncodingKey {
    EncodingKey::from_ec_pem(&key_file("p256.key.pem")).expect("p256 key")
}

fn p384() -> EncodingKey {
    EncodingKey::from_ec_pem(&key_file("p384.key.pem")).expect("p384 key")
}

fn ed25519() -> EncodingKey {
    EncodingKey::from_ed_pem(&key_file("ed25519.key.pem")).expect("ed25519 key")
}

fn b64url(bytes: &[u8]) -> String {
    amtsbuch_domain::base64::encode(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// A fresh Ed25519 key: signing key, and its public key as JWK set and as PEM.
struct FreshKey {
    pkcs8: Vec<u8>,
    jwks: String,
    pem: String,
}

fn fresh_ed25519(kid: &str) -> FreshKey {
    let pkcs8 = Signer::generate_pkcs8().expect("generate");
    let public = Signer::from_pkcs8("test", &pkcs8)
        .expect("signer")
        .public_key();
    let jwks = json!({ "keys": [
        { "kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url(&public) }
    ]})
    .to_string();
    // SubjectPublicKeyInfo of an Ed25519 key: fixed prefix, then the 32 key bytes.
    let spki = [
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ][..],
        &public,
    ]
    .concat();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        amtsbuch_domain::base64::encode(&spki)
    );
    FreshKey { pkcs8, jwks, pem }
}

impl FreshKey {
    fn encoding(&self) -> EncodingKey {
        EncodingKey::from_ed_der(&self.pkcs8)
    }
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// Claims of a valid token for an official of the Meißen district office.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "official-7",
        "aud": "amtsbuch",
        "iat": now(),
        "exp": now() + 600,
        "roles": ["authority"],
        "authority": "lra-meissen",
        "regions": ["14612"],
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("object").remove(key);
    claims
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn authenticator(keys: Vec<KeySource>, dev_key: Option<DevKey>) -> Authenticator {
    Authenticator::new(AuthConfig {
        keys,
        issuer: Some(ISSUER.to_owned()),
        dev_key,
        ..AuthConfig::default()
    })
    .expect("authenticator")
}

/// The provider's keys as a JWK set file: rsa-1, ec-1 (P-256), ec-384, ed-1.
fn by_jwks() -> Authenticator {
    authenticator(vec![KeySource::JwksFile(key_path("jwks.json"))], None)
}

/// The same keys as PEM files, which carry no key ids.
fn by_pem() -> Authenticator {
    let files = [
        "rsa.pub.pem",
        "p256.pub.pem",
        "p384.pub.pem",
        "ed25519.pub.pem",
    ];
    authenticator(
        files
            .iter()
            .map(|f| KeySource::PemFile(key_path(f)))
            .collect(),
        None,
    )
}

fn signers() -> Vec<(Algorithm, &'static str, EncodingKey)> {
    vec![
        (Algorithm::RS256, "rsa-1", rsa()),
        (Algorithm::PS256, "rsa-1", rsa()),
        (Algorithm::ES256, "ec-1", p256()),
        (Algorithm::ES384, "ec-384", p384()),
        (Algorithm::EdDSA, "ed-1", ed25519()),
    ]
}

#[test]
fn tokens_of_every_key_type_are_accepted_from_a_jwk_set() {
    let auth = by_jwks();
    assert_eq!(auth.key_count(), 4);
    for (alg, kid, key) in signers() {
        for kid in [Some(kid), None] {
            let principal = auth
                .authenticate(&sign(alg, kid, &key, &claims()))
                .unwrap_or_else(|e| panic!("{alg:?} kid {kid:?}: {e}"));
            assert_eq!(principal.subject(), "official-7");
            assert!(principal.has(Role::Authority));
            assert_eq!(
                principal.authority().map(AuthorityId::as_str),
                Some("lra-meissen")
            );
            assert_eq!(
                principal.regions(),
                [RegionKey::parse("14612").expect("region")]
            );
        }
    }
}

#[test]
fn tokens_of_every_key_type_are_accepted_from_pem_files() {
    let auth = by_pem();
    assert_eq!(auth.key_count(), 4);
    for (alg, kid, key) in signers() {
        // PEM keys have no ids: a token naming one is matched by its algorithm.
        for kid in [None, Some(kid)] {
            assert!(
                auth.authenticate(&sign(alg, kid, &key, &claims())).is_ok(),
                "{alg:?} kid {kid:?}"
            );
        }
    }
}

#[test]
fn freshly_generated_ed25519_keys_work_as_jwk_set_and_as_pem() {
    let fresh = fresh_ed25519("fresh-1");
    let token = sign(
        Algorithm::EdDSA,
        Some("fresh-1"),
        &fresh.encoding(),
        &claims(),
    );
    for source in [
        KeySource::Jwks(fresh.jwks.clone()),
        KeySource::Pem(fresh.pem.clone()),
    ] {
        let auth = authenticator(vec![source], None);
        assert_eq!(
            auth.authenticate(&token).map(|p| p.subject().to_owned()),
            Ok("official-7".to_owned())
        );
    }
}

#[test]
fn a_rsa_key_that_names_its_algorithm_is_used_with_that_one_only() {
    let jwks = std::fs::read_to_string(key_path("jwks.json")).expect("jwks");
    let mut set: Value = serde_json::from_str(&jwks).expect("json");
    set["keys"][0]["alg"] = json!("RS256");
    let auth = authenticator(vec![KeySource::Jwks(set.to_string())], None);
    assert!(auth
        .authenticate(&sign(Algorithm::RS256, Some("rsa-1"), &rsa(), &claims()))
        .is_ok());
    assert_eq!(
        auth.authenticate(&sign(Algorithm::PS256, Some("rsa-1"), &rsa(), &claims())),
        Err(AuthError::AlgorithmMismatch {
            kid: "rsa-1".into(),
            alg: "PS256".into()
        })
    );
}

/// Each way a token can be wrong, and the error it must get, for both key configurations.
#[test]
fn each_defect_is_refused_with_its_own_error() {
    let ed = |claims: &Value| sign(Algorithm::EdDSA, Some("ed-1"), &ed25519(), claims);
    let stranger = fresh_ed25519("ed-1");
    let valid = ed(&claims());
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        let forged = with(claims(), "roles", json!(["operator"]));
        let payload = b64url(forged.to_string().as_bytes());
        format!("{}.{}.{}", parts[0], payload, parts[2])
    };
    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims().to_string().as_bytes())
    );
    // The classic confusion: the verifier's public key used as an HMAC secret.
    let hs256 = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(&key_file("rsa.pub.pem")),
        &claims(),
    );
    let cases: Vec<(&str, String, AuthError)> = vec![
        (
            "expired beyond the leeway",
            ed(&with(claims(), "exp", json!(now() - 300))),
            AuthError::Expired,
        ),
        (
            "not yet valid",
            ed(&with(claims(), "nbf", json!(now() + 300))),
            AuthError::NotYetValid,
        ),
        (
            "wrong audience",
            ed(&with(claims(), "aud", json!("another-service"))),
            AuthError::WrongAudience {
                expected: "amtsbuch".into(),
            },
        ),
        (
            "wrong issuer",
            ed(&with(claims(), "iss", json!("https://evil.example"))),
            AuthError::WrongIssuer {
                expected: ISSUER.into(),
            },
        ),
        (
            "the development issuer from a provider key",
            ed(&with(claims(), "iss", json!(DEV_ISSUER))),
            AuthError::WrongIssuer {
                expected: ISSUER.into(),
            },
        ),
        (
            "no exp",
            ed(&without(claims(), "exp")),
            AuthError::MissingClaim("exp".into()),
        ),
        (
            "no sub",
            ed(&without(claims(), "sub")),
            AuthError::MissingClaim("sub".into()),
        ),
        (
            "no aud",
            ed(&without(claims(), "aud")),
            AuthError::MissingClaim("aud".into()),
        ),
        (
            "no iss while an issuer is configured",
            ed(&without(claims(), "iss")),
            AuthError::MissingClaim("iss".into()),
        ),
        ("tampered payload", tampered, AuthError::BadSignature),
        (
            "signed by an unknown key under a known kid",
            sign(
                Algorithm::EdDSA,
                Some("ed-1"),
                &stranger.encoding(),
                &claims(),
            ),
            AuthError::BadSignature,
        ),
        (
            "signed by an unknown key without kid",
            sign(Algorithm::EdDSA, None, &stranger.encoding(), &claims()),
            AuthError::BadSignature,
        ),
        (
            "alg none",
            alg_none,
            AuthError::DisallowedAlgorithm("none".into()),
        ),
        (
            "HS256 with the public key as secret",
            hs256,
            AuthError::DisallowedAlgorithm("HS256".into()),
        ),
        ("not a JWT", "not-a-jwt".into(), AuthError::MalformedToken),
        ("three empty parts", "..".into(), AuthError::MalformedToken),
        (
            "authority without regions",
            ed(&without(claims(), "regions")),
            AuthError::Roles(PrincipalError::MissingBinding {
                role: Role::Authority,
                binding: Binding::Regions,
            }),
        ),
        (
            "only unknown roles",
            ed(&with(claims(), "roles", json!(["admin", "superuser"]))),
            AuthError::Roles(PrincipalError::NoRole),
        ),
        (
            "no roles claim",
            ed(&without(claims(), "roles")),
            AuthError::Roles(PrincipalError::NoRole),
        ),
    ];
    for auth in [by_jwks(), by_pem()] {
        for (case, token, expected) in &cases {
            assert_eq!(auth.authenticate(token).as_ref(), Err(expected), "{case}");
        }
    }
}

/// A token with exactly this header and payload text, signed with the Ed25519 key `ed-1`:
/// for headers and claims that no JSON serializer would write.
fn hand_made(header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &ed25519(), Algorithm::EdDSA).expect("sign");
    format!("{input}.{signature}")
}

/// The claims of `claims()` as JSON text without its closing brace, so a test can append
/// members of its own.
fn open_claims() -> String {
    let text = claims().to_string();
    text.strip_suffix('}').expect("an object").to_owned()
}

/// RFC 7515 section 4.1.11: a header that marks extensions as critical must be refused
/// unless they are understood, and this service understands none. RFC 7515 section 4 and
/// RFC 7519 section 4: a member name twice in the header or the claims is refused rather
/// than read as "the last one wins" — otherwise a token could carry `"roles":
/// ["authority"]` for one reader and `["operator"]` for another.
#[test]
fn critical_extensions_and_duplicate_members_are_refused() {
    let header = r#"{"alg":"EdDSA","kid":"ed-1"}"#;
    let claims = format!("{}}}", open_claims());
    for auth in [by_jwks(), by_pem()] {
        // The hand-made control is accepted, so each refusal below is for its defect.
        let control = auth.authenticate(&hand_made(header, &claims));
        assert!(control.is_ok(), "{control:?}");
        let cases: Vec<(&str, String, AuthError)> = vec![
            (
                "crit naming an extension",
                hand_made(
                    r#"{"alg":"EdDSA","kid":"ed-1","crit":["urn:example:x"],"urn:example:x":1}"#,
                    &claims,
                ),
                AuthError::CriticalExtension,
            ),
            (
                "crit naming a registered member",
                hand_made(r#"{"alg":"EdDSA","kid":"ed-1","crit":["exp"]}"#, &claims),
                AuthError::CriticalExtension,
            ),
            (
                "crit empty",
                hand_made(r#"{"alg":"EdDSA","kid":"ed-1","crit":[]}"#, &claims),
                AuthError::CriticalExtension,
            ),
            (
                "a claim twice, the second widening the first",
                hand_made(
                    header,
                    &format!(r#"{},"roles":["operator"]}}"#, open_claims()),
                ),
                AuthError::DuplicateMember("claims"),
            ),
            (
                "a claim twice, once escaped",
                hand_made(header, &format!(r#"{},"sub":"x"}}"#, open_claims())),
                AuthError::DuplicateMember("claims"),
            ),
            (
                "a member twice inside a claim",
                hand_made(
                    header,
                    &format!(r#"{},"x":{{"a":1,"a":2}}}}"#, open_claims()),
                ),
                AuthError::DuplicateMember("claims"),
            ),
            (
                "the key id twice",
                hand_made(r#"{"alg":"EdDSA","kid":"ed-1","kid":"ed-1"}"#, &claims),
                AuthError::DuplicateMember("header"),
            ),
            (
                "an unregistered header member twice",
                hand_made(r#"{"alg":"EdDSA","kid":"ed-1","x":1,"x":2}"#, &claims),
                AuthError::DuplicateMember("header"),
            ),
        ];
        for (case, token, expected) in &cases {
            assert_eq!(auth.authenticate(token).as_ref(), Err(expected), "{case}");
        }
    }
}

#[test]
fn the_leeway_tolerates_small_clock_skew() {
    let auth = by_jwks();
    let just_expired = with(claims(), "exp", json!(now() - 10));
    let almost_valid = with(claims(), "nbf", json!(now() + 10));
    for claims in [just_expired, almost_valid] {
        assert!(auth
            .authenticate(&sign(Algorithm::ES256, Some("ec-1"), &p256(), &claims))
            .is_ok());
    }
}

#[test]
fn key_ids_select_keys_and_must_fit_the_algorithm() {
    let auth = by_jwks();
    // A kid the set does not hold, while every key of the set has an id.
    assert_eq!(
        auth.authenticate(&sign(
            Algorithm::ES256,
            Some("rotated-away"),
            &p256(),
            &claims()
        )),
        Err(AuthError::UnknownKey {
            kid: Some("rotated-away".into()),
            alg: "ES256".into()
        })
    );
    // The RSA key's id on a token that claims ES256.
    assert_eq!(
        auth.authenticate(&sign(Algorithm::ES256, Some("rsa-1"), &p256(), &claims())),
        Err(AuthError::AlgorithmMismatch {
            kid: "rsa-1".into(),
            alg: "ES256".into()
        })
    );
    // The P-256 key signs ES256 only, not ES384.
    assert_eq!(
        auth.authenticate(&sign(Algorithm::ES384, Some("ec-1"), &p384(), &claims())),
        Err(AuthError::AlgorithmMismatch {
            kid: "ec-1".into(),
            alg: "ES384".into()
        })
    );
    // An algorithm no configured key uses.
    let only_ed = authenticator(vec![KeySource::PemFile(key_path("ed25519.pub.pem"))], None);
    assert_eq!(
        only_ed.authenticate(&sign(Algorithm::RS256, None, &rsa(), &claims())),
        Err(AuthError::UnknownKey {
            kid: None,
            alg: "RS256".into()
        })
    );
}

#[test]
fn claims_of_the_wrong_shape_are_named() {
    let auth = by_jwks();
    let ed = |claims: &Value| sign(Algorithm::EdDSA, Some("ed-1"), &ed25519(), claims);
    let claim_of = |r: Result<Principal, AuthError>| match r {
        Err(AuthError::InvalidClaim { claim, .. }) => claim,
        other => panic!("expected an invalid claim, got {other:?}"),
    };
    assert_eq!(
        claim_of(auth.authenticate(&ed(&with(claims(), "authority", json!("LRA Meißen"))))),
        "authority"
    );
    assert_eq!(
        claim_of(auth.authenticate(&ed(&with(claims(), "roles", json!("authority"))))),
        "roles"
    );
    assert_eq!(
        claim_of(auth.authenticate(&ed(&with(claims(), "regions", json!(["Meißen"]))))),
        "regions"
    );
    // Unknown role names are ignored as long as one is known.
    let mixed = with(claims(), "roles", json!(["uma_authorization", "authority"]));
    let principal = auth.authenticate(&ed(&mixed)).expect("accepted");
    assert_eq!(
        principal.roles().iter().copied().collect::<Vec<_>>(),
        [Role::Authority]
    );
}

#[test]
fn the_audience_may_be_one_of_several() {
    let auth = by_jwks();
    let claims = with(claims(), "aud", json!(["account", "amtsbuch"]));
    assert!(auth
        .authenticate(&sign(Algorithm::EdDSA, Some("ed-1"), &ed25519(), &claims))
        .is_ok());
}

#[test]
fn a_configuration_without_keys_or_with_bad_keys_is_refused() {
    assert!(matches!(
        Authenticator::new(AuthConfig::default()),
        Err(AuthConfigError::NoKeys)
    ));
    let private_key = Authenticator::new(AuthConfig {
        keys: vec![KeySource::PemFile(key_path("rsa.key.pem"))],
        ..AuthConfig::default()
    });
    match private_key {
        Err(AuthConfigError::Key { origin, reason }) => {
            assert!(origin.ends_with("rsa.key.pem"), "{origin}");
            assert!(reason.contains("private key"), "{reason}");
        }
        other => panic!("expected a key error, got {other:?}"),
    }
    assert!(matches!(
        Authenticator::new(AuthConfig {
            keys: vec![KeySource::JwksFile(key_path("missing.json"))],
            ..AuthConfig::default()
        }),
        Err(AuthConfigError::Read { .. })
    ));
}

#[test]
fn debug_output_names_keys_but_shows_no_private_key() {
    let dev_pkcs8 = Signer::generate_pkcs8().expect("generate");
    let dev = DevKey::from_pkcs8(&dev_pkcs8).expect("dev key");
    let auth = authenticator(
        vec![
            KeySource::JwksFile(key_path("jwks.json")),
            KeySource::PemFile(key_path("rsa.pub.pem")),
        ],
        Some(dev.clone()),
    );
    let debug = format!("{auth:?} {dev:?}");
    assert!(
        debug.contains("rsa-1") && debug.contains(DEV_KID),
        "{debug}"
    );
    assert!(
        debug.contains("PS256") && debug.contains("EdDSA"),
        "{debug}"
    );
    // The seed sits at bytes 16..48 of ring's PKCS#8 document; neither its bytes nor its
    // base64 may appear.
    let seed = &dev_pkcs8[16..48];
    let as_list = format!("{:?}", &seed[..6]);
    assert!(!debug.contains(as_list.trim_matches(['[', ']'])), "{debug}");
    assert!(!debug.contains(&b64url(seed)[..12]), "{debug}");
}

// ---------------------------------------------------------------------------------------
// Development tokens

fn official_request() -> TokenRequest {
    TokenRequest {
        authority: Some(AuthorityId::parse("lra-meissen").expect("authority")),
        regions: vec![RegionKey::parse("14612").expect("region")],
        ..TokenRequest::new("dev-official", [Role::Authority])
    }
}

#[test]
fn development_tokens_are_accepted_only_with_dev_on() {
    let dev = DevKey::generate().expect("dev key");
    let token = mint(&dev, &official_request(), Utc::now()).expect("mint");

    // With --dev: accepted, with the bindings it was minted with.
    let with_dev = authenticator(
        vec![KeySource::JwksFile(key_path("jwks.json"))],
        Some(dev.clone()),
    );
    assert!(with_dev.dev_enabled());
    let principal = with_dev.authenticate(&token).expect("dev token accepted");
    assert_eq!(principal.subject(), "dev-official");
    assert_eq!(
        principal.regions(),
        [RegionKey::parse("14612").expect("region")]
    );

    // Without --dev: the development key is unknown.
    let without_dev = by_jwks();
    assert!(!without_dev.dev_enabled());
    assert_eq!(
        without_dev.authenticate(&token),
        Err(AuthError::UnknownKey {
            kid: Some(DEV_KID.into()),
            alg: "EdDSA".into()
        })
    );
    // Nor does another Ed25519 key without id take it.
    assert_eq!(by_pem().authenticate(&token), Err(AuthError::BadSignature));

    // With only the development key configured, --dev alone is a working setup.
    let dev_only = authenticator(Vec::new(), Some(dev));
    assert!(dev_only.authenticate(&token).is_ok());
}

#[test]
fn the_development_key_cannot_issue_for_the_identity_provider() {
    let pkcs8 = Signer::generate_pkcs8().expect("generate");
    let dev = DevKey::from_pkcs8(&pkcs8).expect("dev key");
    let auth = authenticator(Vec::new(), Some(dev));
    let forged = sign(
        Algorithm::EdDSA,
        Some(DEV_KID),
        &EncodingKey::from_ed_der(&pkcs8),
        &claims(),
    );
    assert_eq!(
        auth.authenticate(&forged),
        Err(AuthError::WrongIssuer {
            expected: DEV_ISSUER.into()
        })
    );
}

#[test]
fn development_tokens_carry_their_lifetime() {
    let dev = DevKey::generate().expect("dev key");
    let auth = authenticator(Vec::new(), Some(dev.clone()));
    let two_hours_ago = Utc::now() - chrono::Duration::hours(2);
    let in_two_hours = Utc::now() + chrono::Duration::hours(2);
    let minted_then = mint(&dev, &official_request(), two_hours_ago).expect("mint");
    assert_eq!(auth.authenticate(&minted_then), Err(AuthError::Expired));
    let minted_later = mint(&dev, &official_request(), in_two_hours).expect("mint");
    assert_eq!(
        auth.authenticate(&minted_later),
        Err(AuthError::NotYetValid)
    );
    let long = TokenRequest {
        ttl: Duration::from_secs(3 * 3600),
        ..official_request()
    };
    assert!(auth
        .authenticate(&mint(&dev, &long, two_hours_ago).expect("mint"))
        .is_ok());
}

#[test]
fn mint_refuses_tokens_the_server_would_refuse() {
    let dev = DevKey::generate().expect("dev key");
    assert_eq!(
        mint(&dev, &TokenRequest::new("c", [Role::Citizen]), Utc::now()),
        Err(MintError::Roles(PrincipalError::MissingBinding {
            role: Role::Citizen,
            binding: Binding::Account
        }))
    );
    assert_eq!(
        mint(&dev, &TokenRequest::new("c", []), Utc::now()),
        Err(MintError::Roles(PrincipalError::NoRole))
    );
    let zero = TokenRequest {
        ttl: Duration::ZERO,
        ..TokenRequest::new("op", [Role::Operator])
    };
    assert_eq!(mint(&dev, &zero, Utc::now()), Err(MintError::Ttl));
}

#[test]
fn the_development_key_file_is_created_once_and_private() {
    let dir = amtsbuch_testkit_api::TempDir::new();
    let path = dir.join("data").join(amtsbuch_api::auth::DEV_KEY_FILE);
    let (first, created) = DevKey::load_or_create(&path).expect("create");
    assert!(created);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (second, created) = DevKey::load_or_create(&path).expect("load");
    assert!(!created);
    let token = mint(&first, &official_request(), Utc::now()).expect("mint");
    let auth = authenticator(Vec::new(), Some(second));
    assert!(auth.authenticate(&token).is_ok());

    std::fs::write(&path, b"not a key").expect("overwrite");
    assert!(DevKey::load_or_create(&path).is_err());
}

// ---------------------------------------------------------------------------------------
// The extractor through a router

async fn audit_only(Caller(caller): Caller) -> Result<String, Problem> {
    require(&caller, &[Role::Auditor, Role::Operator])?;
    Ok(caller.subject().to_owned())
}

struct Reply {
    status: StatusCode,
    content_type: String,
    challenge: Option<String>,
    body: Value,
    text: String,
}

async fn call(auth: &Arc<Authenticator>, authorization: &[&str]) -> Reply {
    let app = Router::new()
        .route("/audit", get(audit_only))
        .with_state(auth.clone());
    let mut request = Request::get("/audit");
    for value in authorization {
        request = request.header(header::AUTHORIZATION, *value);
    }
    let response = app
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let header_text = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header_text(header::CONTENT_TYPE).unwrap_or_default();
    let challenge = header_text(header::WWW_AUTHENTICATE);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply {
        status,
        content_type,
        challenge,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

fn dev_setup() -> (Arc<Authenticator>, DevKey) {
    let dev = DevKey::generate().expect("dev key");
    let auth = authenticator(Vec::new(), Some(dev.clone()));
    (Arc::new(auth), dev)
}

fn assert_unauthorized(reply: &Reply, challenge: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    assert_eq!(reply.content_type, "application/problem+json");
    assert_eq!(reply.body["type"], "urn:amtsbuch:problem:unauthorized");
    assert_eq!(reply.body["status"], 401);
    assert_eq!(reply.challenge.as_deref(), Some(challenge));
}

#[tokio::test]
async fn requests_without_credentials_get_the_bare_challenge() {
    let (auth, _) = dev_setup();
    let reply = call(&auth, &[]).await;
    assert_unauthorized(&reply, "Bearer");
    assert!(
        reply.text.contains("Authorization: Bearer"),
        "{}",
        reply.text
    );
    let basic = call(&auth, &["Basic dXNlcjpwYXNz"]).await;
    assert_unauthorized(&basic, "Bearer");
}

#[tokio::test]
async fn refused_tokens_get_invalid_token_and_are_not_echoed() {
    let (auth, dev) = dev_setup();
    let garbage = "eyJhbGciOiJFZERTQSJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl";
    let reply = call(&auth, &[&format!("Bearer {garbage}")]).await;
    assert_unauthorized(&reply, "Bearer error=\"invalid_token\"");
    assert!(
        !reply.text.contains("c2VjcmV0LXBheWxvYWQ"),
        "{}",
        reply.text
    );

    let expired = mint(
        &dev,
        &official_request(),
        Utc::now() - chrono::Duration::hours(2),
    )
    .expect("mint");
    let reply = call(&auth, &[&format!("Bearer {expired}")]).await;
    assert_unauthorized(&reply, "Bearer error=\"invalid_token\"");
    assert!(reply.body["detail"]
        .as_str()
        .is_some_and(|d| d.contains("expired")));
    let payload = expired.split('.').nth(1).expect("payload");
    assert!(!reply.text.contains(payload), "{}", reply.text);
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let (auth, dev) = dev_setup();
    let token = mint(
        &dev,
        &TokenRequest::new("auditor-1", [Role::Auditor]),
        Utc::now(),
    )
    .expect("mint");
    let bearer = format!("Bearer {token}");
    let reply = call(&auth, &[&bearer, &bearer]).await;
    assert_unauthorized(&reply, "Bearer");
}

#[tokio::test]
async fn a_caller_without_an_allowed_role_is_forbidden() {
    let (auth, dev) = dev_setup();
    let citizen = TokenRequest {
        account: Some("acc-42".into()),
        ..TokenRequest::new("citizen-42", [Role::Citizen])
    };
    let token = mint(&dev, &citizen, Utc::now()).expect("mint");
    let reply = call(&auth, &[&format!("Bearer {token}")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.content_type, "application/problem+json");
    assert_eq!(reply.body["type"], "urn:amtsbuch:problem:forbidden");
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("auditor, operator") && detail.contains("citizen"),
        "{detail}"
    );
    assert_eq!(reply.challenge, None);
}

#[tokio::test]
async fn a_caller_with_an_allowed_role_gets_through() {
    let (auth, dev) = dev_setup();
    let token = mint(
        &dev,
        &TokenRequest::new("auditor-1", [Role::Auditor]),
        Utc::now(),
    )
    .expect("mint");
    // The scheme name is case-insensitive (RFC 9110 section 11.1).
    let reply = call(&auth, &[&format!("bearer {token}")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.text, "auditor-1");
}
