//! The GDPR layer's observable behaviour, pinned: a fixed sequence of requests on SQLite,
//! and what it leaves behind — every answer (status, media type, `Location`, body), every
//! stored record's bytes and NATS subject, and the OpenAPI document — compared with golden
//! files.
//!
//! The golden files were written by the code as it was before the GDPR code moved onto the
//! shared domain-module shape, so this test is the proof that the move changed nothing a
//! client, an auditor or a Fachverfahren can see. What differs from run to run is replaced
//! before the comparison, and nothing else: ids and hashes by their order of first
//! appearance (`<id:3>`, `<hash:7>`), so that which answer names which event still has to
//! agree; instants near the time of the run by `<now>`; the random nonce and ciphertext of
//! sealed sections and the signed proof text of the receipt by a placeholder. The OpenAPI
//! document is compared with its object members and its tag list sorted, since the order
//! in which routes are registered is not behaviour.
//!
//! `AMTSBUCH_BLESS=1 cargo test -p amtsbuch --test gdpr golden` rewrites the golden files;
//! do that only for a change of behaviour that is meant, and say so in the commit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::header;
use chrono::{DateTime, Datelike, Utc};
use serde_json::{json, Value};

use amtsbuch_domain::subject::{subject, SubjectPrefix};
use amtsbuch_infra::EventStore;

use super::{citizen, common, dpo, erika, notice_sha256, operator, wohngeld, Env};

/// The transcript of one run, normalized.
struct Transcript {
    lines: Vec<String>,
}

impl Transcript {
    fn new() -> Self {
        Self { lines: Vec::new() }
    }

    /// Send a request and write down what came back; the body as JSON.
    async fn call(
        &mut self,
        env: &Env,
        method: &str,
        path: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let reply = env.call(method, path, uri, token, body.clone()).await;
        self.lines.push(format!("> {method} {uri}"));
        if let Some(b) = body {
            self.lines.push(format!("> {b}"));
        }
        self.lines.push(format!(
            "< {} {} {}",
            reply.status.as_u16(),
            reply.media_type(),
            reply.header(header::LOCATION).unwrap_or("-")
        ));
        self.lines
            .push(format!("< {}", String::from_utf8_lossy(&reply.bytes)));
        reply.json()
    }
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/gdpr/golden")
}

/// Compare `actual` with the golden file `name`, or rewrite it with `AMTSBUCH_BLESS=1`.
fn check(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("AMTSBUCH_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("golden dir");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; bless it with AMTSBUCH_BLESS=1", path.display()));
    if expected != actual {
        let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
        let first = e
            .iter()
            .zip(&a)
            .position(|(x, y)| x != y)
            .unwrap_or(e.len().min(a.len()));
        panic!(
            "{name} differs from the golden file at line {}:\n  golden: {}\n  now:    {}",
            first + 1,
            e.get(first).unwrap_or(&"<end>"),
            a.get(first).unwrap_or(&"<end>")
        );
    }
}

// ---------------------------------------------------------------------------------------
// Normalization

fn is_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Whether `s[i..]` starts with a lowercase hyphenated UUID.
fn uuid_at(s: &[u8], i: usize) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut at = i;
    for (n, len) in GROUPS.iter().enumerate() {
        if at + len > s.len() || !s[at..at + len].iter().all(|b| is_hex(*b)) {
            return false;
        }
        at += len;
        if n < 4 {
            if s.get(at) != Some(&b'-') {
                return false;
            }
            at += 1;
        }
    }
    !s.get(at).is_some_and(|b| is_hex(*b))
}

/// The length of an RFC 3339 UTC instant at `s[i..]` (`YYYY-MM-DDTHH:MM:SS[.f+]Z`).
fn instant_at(s: &[u8], i: usize) -> Option<usize> {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    if i + SHAPE.len() > s.len() {
        return None;
    }
    for (k, c) in SHAPE.iter().enumerate() {
        let b = s[i + k];
        let ok = if *c == b'd' {
            b.is_ascii_digit()
        } else {
            b == *c
        };
        if !ok {
            return None;
        }
    }
    let mut at = i + SHAPE.len();
    if s.get(at) == Some(&b'.') {
        at += 1;
        while s.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
    }
    (s.get(at) == Some(&b'Z')).then_some(at + 1 - i)
}

/// Replaces what differs from run to run; see the module docs.
struct Normalizer {
    ids: HashMap<String, usize>,
    hashes: HashMap<String, usize>,
    now: DateTime<Utc>,
}

impl Normalizer {
    fn new() -> Self {
        Self {
            ids: HashMap::new(),
            hashes: HashMap::new(),
            now: Utc::now(),
        }
    }

    fn label(map: &mut HashMap<String, usize>, key: &str) -> usize {
        let next = map.len() + 1;
        *map.entry(key.to_owned()).or_insert(next)
    }

    fn text(&mut self, text: &str) -> String {
        let text = blank_member(text, "ciphertext", "<ciphertext>");
        let text = blank_member(&text, "nonce", "<nonce>");
        let text = blank_member(&text, "tlog_proof", "<tlog-proof>");
        let text = blank_number(&text, "consentTimestamp", "<unix-time>");
        let s = text.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            let boundary = i == 0 || !is_hex(s[i - 1]);
            if boundary && uuid_at(s, i) {
                let n = Self::label(&mut self.ids, &text[i..i + 36]);
                out.push_str(&format!("<id:{n}>"));
                i += 36;
                continue;
            }
            if boundary
                && i + 64 <= s.len()
                && s[i..i + 64].iter().all(|b| is_hex(*b))
                && !s.get(i + 64).is_some_and(|b| is_hex(*b))
            {
                let n = Self::label(&mut self.hashes, &text[i..i + 64]);
                out.push_str(&format!("<hash:{n}>"));
                i += 64;
                continue;
            }
            if let Some(len) = instant_at(s, i) {
                let raw = &text[i..i + len];
                out.push_str(&self.instant(raw));
                i += len;
                continue;
            }
            let c = text[i..].chars().next().unwrap_or('?');
            out.push(c);
            i += c.len_utf8();
        }
        out
    }

    /// An instant near the run is `<now>`; the default end of a voucher's retention (the
    /// end of the year, plus six years) is named as such; others stay as they are.
    fn instant(&self, raw: &str) -> String {
        let Ok(t) = DateTime::parse_from_rfc3339(raw) else {
            return raw.to_owned();
        };
        let t = t.with_timezone(&Utc);
        if (t - self.now).num_days().abs() <= 2 {
            return "<now>".into();
        }
        let voucher_end = format!("{}-01-01T00:00:00", self.now.year() + 7);
        if raw.starts_with(&voucher_end) {
            return format!("<end of year + 6>{}", &raw[voucher_end.len()..]);
        }
        raw.to_owned()
    }
}

/// Replace the string value of every JSON member `"name":"…"` (also in text that is
/// itself JSON inside a string, where quotes are escaped) by `with`.
fn blank_member(text: &str, name: &str, with: &str) -> String {
    let mut out = text.to_owned();
    for (open, close) in [
        (format!("\"{name}\":\""), "\""),
        (format!("\\\"{name}\\\":\\\""), "\\\""),
    ] {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(&open) {
            result.push_str(&rest[..at + open.len()]);
            rest = &rest[at + open.len()..];
            let mut end = rest.len();
            let mut chars = rest.char_indices();
            while let Some((at, c)) = chars.next() {
                if rest[at..].starts_with(close) {
                    end = at;
                    break;
                }
                // An escaped character inside the value does not end it.
                if c == '\\' && close == "\"" {
                    chars.next();
                }
            }
            result.push_str(with);
            rest = &rest[end..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// Replace the number value of every JSON member `"name":123` by `with`.
fn blank_number(text: &str, name: &str, with: &str) -> String {
    let open = format!("\"{name}\":");
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&open) {
        result.push_str(&rest[..at + open.len()]);
        rest = &rest[at + open.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        result.push_str(if end > 0 { with } else { "" });
        rest = &rest[end..];
    }
    result.push_str(rest);
    result
}

/// A JSON value with the members of every object sorted and the document's tag list
/// sorted by name: the OpenAPI document modulo the order of registration.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                let mut v = sorted(&o[k]);
                if k == "tags" {
                    if let Value::Array(items) = &mut v {
                        items.sort_by_key(|t| t["name"].as_str().map(str::to_owned));
                    }
                }
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// The sequence

fn id_of(v: &Value, member: &str) -> String {
    v[member]
        .as_str()
        .unwrap_or_else(|| panic!("no {member} in {v}"))
        .to_owned()
}

/// The requests, in order. Each answer is written down; ids the later requests need are
/// taken from the answers.
async fn run(env: &Env, t: &mut Transcript) {
    let notice = json!({ "version": "2026-01", "sha256": notice_sha256() });
    let scope = json!({
        "categories": ["stammdaten", "kommunikationsdaten"],
        "purposes": ["antrag-vorbefuellung", "bescheid-zustellung"],
        "recipients": ["lra-meissen", "amt24"],
    });

    // Accounts.
    let opened = t
        .call(
            env,
            "POST",
            "/accounts",
            "/accounts",
            &operator(),
            Some(json!({ "kind": "personal", "master_data": erika() })),
        )
        .await;
    let a = id_of(&opened, "account_id");
    let acc = format!("/accounts/{a}");
    t.call(env, "GET", "/accounts/{id}", &acc, &citizen(&a), None)
        .await;
    t.call(
        env,
        "PUT",
        "/accounts/{id}/master-data",
        &format!("{acc}/master-data"),
        &citizen(&a),
        Some(json!({ "master_data": { "type": "person", "given_names": "Erika", "family_name": "Musterfrau",
            "address": { "street": "Hauptstraße 1", "postal_code": "01662", "locality": "Meißen", "country": "DE" } } })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/accounts/{id}/identity-links",
        &format!("{acc}/identity-links"),
        &operator(),
        Some(json!({ "method": { "kind": "eid" }, "pseudonym": "eid-pseudonym-1" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/accounts/{id}/identity-links",
        &format!("{acc}/identity-links"),
        &operator(),
        Some(json!({ "method": { "kind": "eidas_notified", "level": "substantial" }, "pseudonym": "eidas-2" })),
    )
    .await;
    let org = t
        .call(
            env,
            "POST",
            "/accounts",
            "/accounts",
            &operator(),
            Some(json!({ "kind": "organisation", "master_data": { "type": "organisation", "name": "Bäckerei Beispiel GmbH" } })),
        )
        .await;
    let org = id_of(&org, "account_id");
    // Refusals of the account rules and of bad input.
    t.call(
        env,
        "POST",
        "/accounts/{id}/identity-links",
        &format!("/accounts/{org}/identity-links"),
        &operator(),
        Some(json!({ "method": { "kind": "eid" }, "pseudonym": "eid-of-a-firm" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/accounts",
        "/accounts",
        &operator(),
        Some(json!({ "kind": "personal", "master_data": erika(), "colour": "blue" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/accounts",
        "/accounts",
        &operator(),
        Some(json!({ "kind": "organisation", "master_data": erika() })),
    )
    .await;
    t.call(
        env,
        "GET",
        "/accounts/{id}",
        "/accounts/not-an-id",
        &operator(),
        None,
    )
    .await;
    t.call(
        env,
        "GET",
        "/accounts/{id}",
        &format!("/accounts/{org}"),
        &citizen(&a),
        None,
    )
    .await;
    t.call(
        env,
        "GET",
        "/accounts/{id}",
        "/accounts/0193a1b2-0000-7000-8000-00000000dead",
        &operator(),
        None,
    )
    .await;

    // Consents.
    let c1 = t
        .call(
            env,
            "POST",
            "/consents",
            "/consents",
            &citizen(&a),
            Some(
                json!({ "scope": scope, "notice": notice, "channel": "servicekonto_web",
                "expires_at": "2031-06-30T00:00:00Z" }),
            ),
        )
        .await;
    let c1 = id_of(&c1, "consent_id");
    let c2 = t
        .call(
            env,
            "POST",
            "/consents",
            "/consents",
            &operator(),
            Some(json!({ "subject": a, "scope": {
                "categories": ["verfahrensdaten"], "purposes": ["antrag-vorbefuellung"], "recipients": ["lra-bautzen"] },
                "notice": { "version": "2025-07", "sha256": notice_sha256() },
                "channel": "paper", "given_at": "2026-02-01T09:30:00Z",
                "legal_basis": "art9_2_a", "legal_reference": "§ 10 Abs. 1 Satz 2 SächsEGovG" })),
        )
        .await;
    let c2 = id_of(&c2, "consent_id");
    t.call(
        env,
        "POST",
        "/consents",
        "/consents",
        &citizen(&a),
        Some(json!({ "scope": scope, "notice": notice, "channel": "app", "given_at": "2026-02-01T09:30:00Z" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/consents",
        "/consents",
        &citizen(&a),
        Some(json!({ "subject": org, "scope": scope, "notice": notice, "channel": "app" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/consents",
        "/consents",
        &operator(),
        Some(json!({ "subject": "0193a1b2-0000-7000-8000-00000000beef", "scope": scope, "notice": notice, "channel": "app" })),
    )
    .await;
    t.call(env, "GET", "/consents", "/consents", &citizen(&a), None)
        .await;
    t.call(
        env,
        "GET",
        "/consents/{id}",
        &format!("/consents/{c1}"),
        &dpo(),
        None,
    )
    .await;

    // Disclosures: under a consent, refused, under another legal basis.
    let official = common::official("lra-meissen", &["14627"]);
    t.call(
        env,
        "POST",
        "/disclosures",
        "/disclosures",
        &wohngeld(),
        Some(json!({ "subject": a, "categories": ["stammdaten"], "purpose": "antrag-vorbefuellung" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/disclosures",
        "/disclosures",
        &official,
        Some(json!({ "subject": a, "categories": ["stammdaten", "elektronische_dokumente"], "purpose": "antrag-vorbefuellung" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/disclosures",
        "/disclosures",
        &official,
        Some(json!({ "subject": a, "categories": ["stammdaten"], "purpose": "statistik" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/disclosures",
        "/disclosures",
        &common::official("lra-bautzen", &["14625"]),
        Some(json!({ "subject": a, "categories": ["verfahrensdaten"], "purpose": "antrag-vorbefuellung" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/disclosures",
        "/disclosures",
        &common::official("lra-goerlitz", &["14626"]),
        Some(
            json!({ "subject": a, "categories": ["stammdaten"], "purpose": "wohngeld",
            "other_basis": { "legal_basis": "art6_1_c", "reference": "§ 33 SGB X" } }),
        ),
    )
    .await;
    t.call(
        env,
        "POST",
        "/disclosures",
        "/disclosures",
        &wohngeld(),
        Some(json!({ "subject": a, "categories": [], "purpose": "antrag-vorbefuellung" })),
    )
    .await;

    // Changes of consents.
    t.call(
        env,
        "POST",
        "/consents/{id}/renewal",
        &format!("/consents/{c1}/renewal"),
        &citizen(&a),
        Some(
            json!({ "notice": { "version": "2026-02", "sha256": notice_sha256() },
            "channel": "amt24", "expires_at": "2032-06-30T00:00:00Z" }),
        ),
    )
    .await;
    t.call(
        env,
        "POST",
        "/consents/{id}/scope",
        &format!("/consents/{c1}/scope"),
        &citizen(&a),
        Some(json!({ "scope": { "categories": ["stammdaten"], "purposes": ["antrag-vorbefuellung"], "recipients": ["lra-meissen"] } })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/consents/{id}/scope",
        &format!("/consents/{c1}/scope"),
        &citizen(&a),
        Some(json!({ "scope": scope, "channel": "app" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/consents/{id}/withdrawal",
        &format!("/consents/{c2}/withdrawal"),
        &citizen(&a),
        None,
    )
    .await;
    t.call(
        env,
        "POST",
        "/consents/{id}/withdrawal",
        &format!("/consents/{c2}/withdrawal"),
        &citizen(&a),
        Some(json!({ "channel": "paper" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/consents/{id}/revocation",
        &format!("/consents/{c2}/revocation"),
        &dpo(),
        Some(json!({ "reason": "notice_defective" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/disclosures",
        "/disclosures",
        &common::official("lra-bautzen", &["14625"]),
        Some(json!({ "subject": a, "categories": ["verfahrensdaten"], "purpose": "antrag-vorbefuellung" })),
    )
    .await;
    let c3 = t
        .call(
            env,
            "POST",
            "/consents",
            "/consents",
            &citizen(&a),
            Some(json!({ "scope": { "categories": ["elektronische_dokumente"], "purposes": ["bescheid-zustellung"], "recipients": ["amt24"] },
                "notice": notice, "channel": "servicekonto_web" })),
        )
        .await;
    let c3 = id_of(&c3, "consent_id");
    t.call(
        env,
        "POST",
        "/consents/{id}/revocation",
        &format!("/consents/{c3}/revocation"),
        &dpo(),
        Some(json!({ "reason": "supervisory_order", "reference": "Az. 3-0541/12" })),
    )
    .await;

    // The receipt, once a checkpoint covers the consent.
    let head = env.head().await;
    common::wait_for_checkpoint(&env.store, head).await;
    t.call(
        env,
        "GET",
        "/consents/{id}/receipt",
        &format!("/consents/{c1}/receipt"),
        &citizen(&a),
        None,
    )
    .await;

    // The data protection officer's questions.
    let dpo_path = format!("/dpo/subjects/{a}");
    t.call(
        env,
        "GET",
        "/dpo/subjects/{subject}/consents",
        &format!("{dpo_path}/consents"),
        &dpo(),
        None,
    )
    .await;
    t.call(
        env,
        "GET",
        "/dpo/subjects/{subject}/consents",
        &format!("{dpo_path}/consents?as_of=2026-03-01T00:00:00Z"),
        &dpo(),
        None,
    )
    .await;
    t.call(
        env,
        "GET",
        "/dpo/subjects/{subject}/consents",
        &format!("{dpo_path}/consents?as_of=yesterday"),
        &dpo(),
        None,
    )
    .await;
    t.call(
        env,
        "GET",
        "/dpo/subjects/{subject}/disclosures",
        &format!("{dpo_path}/disclosures"),
        &dpo(),
        None,
    )
    .await;
    t.call(
        env,
        "GET",
        "/dpo/processing",
        "/dpo/processing",
        &dpo(),
        None,
    )
    .await;
    t.call(
        env,
        "GET",
        "/dpo/consents/expiring",
        "/dpo/consents/expiring?within_days=3660",
        &dpo(),
        None,
    )
    .await;
    t.call(
        env,
        "GET",
        "/dpo/consents/expiring",
        "/dpo/consents/expiring?within_days=0",
        &dpo(),
        None,
    )
    .await;

    // Retention holds against an erasure.
    let voucher = t
        .call(
            env,
            "POST",
            "/retention-holds",
            "/retention-holds",
            &operator(),
            Some(json!({ "subject": a, "reason": "voucher", "source": "payment-0193a1b2" })),
        )
        .await;
    let voucher = id_of(&voucher, "hold_id");
    let open = t
        .call(
            env,
            "POST",
            "/retention-holds",
            "/retention-holds",
            &dpo(),
            Some(json!({ "subject": a, "reason": "open_procedure", "source": "procedure-7", "until": "2030-12-31T00:00:00Z" })),
        )
        .await;
    let open = id_of(&open, "hold_id");
    t.call(
        env,
        "POST",
        "/retention-holds",
        "/retention-holds",
        &dpo(),
        Some(json!({ "subject": a, "reason": "open_procedure", "source": "procedure-8" })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/dpo/subjects/{subject}/erasure",
        &format!("{dpo_path}/erasure"),
        &dpo(),
        None,
    )
    .await;
    for hold in [&voucher, &open, &voucher] {
        t.call(
            env,
            "POST",
            "/retention-holds/{id}/release",
            &format!("/retention-holds/{hold}/release"),
            &dpo(),
            None,
        )
        .await;
    }
    t.call(
        env,
        "POST",
        "/retention-holds/{id}/release",
        "/retention-holds/0193a1b2-0000-7000-8000-00000000f00d/release",
        &dpo(),
        None,
    )
    .await;

    // Raw appends: personal data is sealed; the GDPR streams are reserved.
    t.call(
        env,
        "POST",
        "/streams/{stream}/events",
        "/streams/procedure-0193a1b2-0000-7000-8000-0000000000a1/events",
        &operator(),
        Some(json!([{ "id": "0193a1b2-0000-7000-8000-0000000000e1", "type": "ApplicationSubmitted",
            "data": { "form": "wohngeld" },
            "metadata": { "authority": "lra-meissen", "service": "99108001000000", "tenant": "14627010" },
            "personal": { "subject": a, "data": { "name": "Erika Musterfrau", "iban": "DE02120300000000202051" } } }])),
    )
    .await;
    for stream in [
        format!("consent-{c1}"),
        format!("account-{a}"),
        format!("erasure-{a}"),
        format!("disclosure-{c1}"),
        format!("retention-{voucher}"),
    ] {
        t.call(
            env,
            "POST",
            "/streams/{stream}/events",
            &format!("/streams/{stream}/events"),
            &operator(),
            Some(json!([{ "type": "SubjectErased", "data": { "subject": a } }])),
        )
        .await;
    }

    // Export, deletion request, erasure, and what remains.
    t.call(
        env,
        "GET",
        "/dpo/subjects/{subject}/export",
        &format!("{dpo_path}/export"),
        &dpo(),
        None,
    )
    .await;
    t.call(
        env,
        "POST",
        "/accounts/{id}/deletion-request",
        &format!("{acc}/deletion-request"),
        &citizen(&a),
        None,
    )
    .await;
    t.call(
        env,
        "PUT",
        "/accounts/{id}/master-data",
        &format!("{acc}/master-data"),
        &citizen(&a),
        Some(json!({ "master_data": erika() })),
    )
    .await;
    t.call(
        env,
        "POST",
        "/dpo/subjects/{subject}/erasure",
        &format!("{dpo_path}/erasure"),
        &dpo(),
        None,
    )
    .await;
    t.call(
        env,
        "POST",
        "/dpo/subjects/{subject}/erasure",
        &format!("{dpo_path}/erasure"),
        &dpo(),
        None,
    )
    .await;
    t.call(
        env,
        "POST",
        "/dpo/subjects/{subject}/erasure",
        "/dpo/subjects/0193a1b2-0000-7000-8000-00000000beef/erasure",
        &dpo(),
        None,
    )
    .await;
    t.call(env, "GET", "/accounts/{id}", &acc, &dpo(), None)
        .await;
    t.call(
        env,
        "POST",
        "/consents",
        "/consents",
        &citizen(&a),
        Some(json!({ "scope": scope, "notice": notice, "channel": "app" })),
    )
    .await;
    t.call(
        env,
        "GET",
        "/dpo/subjects/{subject}/export",
        &format!("{dpo_path}/export"),
        &dpo(),
        None,
    )
    .await;
    t.call(
        env,
        "GET",
        "/dpo/processing",
        "/dpo/processing",
        &dpo(),
        None,
    )
    .await;

    // The sweeper: an expired temporary identification, an expired consent.
    let soon = Utc::now() + chrono::Duration::milliseconds(1500);
    let soon_text = amtsbuch_domain::record::format_timestamp(&soon);
    let temporary = t
        .call(
            env,
            "POST",
            "/accounts",
            "/accounts",
            &operator(),
            Some(json!({ "kind": "personal", "master_data": erika(), "expires_at": soon_text })),
        )
        .await;
    let temporary = id_of(&temporary, "account_id");
    t.call(
        env,
        "POST",
        "/consents",
        "/consents",
        &citizen(&org),
        Some(
            json!({ "scope": scope, "notice": notice, "channel": "app", "expires_at": soon_text }),
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    while Utc::now() <= soon {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.caught_up().await;
    let swept = amtsbuch_api::gdpr::sweeper::sweep(&env.state)
        .await
        .expect("sweep");
    t.lines.push(format!("sweep: {swept:?}"));
    t.call(
        env,
        "GET",
        "/accounts/{id}",
        &format!("/accounts/{temporary}"),
        &operator(),
        None,
    )
    .await;
    t.call(env, "GET", "/consents", "/consents", &citizen(&org), None)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gdpr_layer_behaves_exactly_as_before() {
    let env = Env::sqlite().await;
    let mut t = Transcript::new();
    run(&env, &mut t).await;

    // What the log holds, and where the relay publishes it.
    let prefix = SubjectPrefix::parse("amtsbuch").expect("prefix");
    let log = env.store.read_all(0, 10_000).await.expect("log");
    assert!(log.len() > 25, "only {} events", log.len());
    for e in &log {
        let record = e.record().expect("record");
        t.lines
            .push(format!("@{} {}", e.position, subject(&prefix, &record)));
        t.lines.push(String::from_utf8_lossy(&e.bytes).into_owned());
    }
    let mut n = Normalizer::new();
    let transcript: String = t.lines.iter().map(|l| n.text(l) + "\n").collect();
    let doc = serde_json::to_value(amtsbuch_api::router::openapi_for(&[
        &amtsbuch_api::gdpr::MODULE,
    ]))
    .expect("document");
    let doc = serde_json::to_string_pretty(&sorted(&doc)).expect("JSON") + "\n";
    env.close().await;

    check("transcript.txt", &transcript);
    check("openapi.json", &doc);
}

#[test]
fn the_normalizer_replaces_only_what_varies() {
    let mut n = Normalizer::new();
    let now = amtsbuch_domain::record::format_timestamp(&Utc::now());
    let a = "0193a1b2-0000-7000-8000-00000000000a";
    let text = format!(
        r#"{{"id":"{a}","again":"{a}","other":"0193a1b2-0000-7000-8000-00000000000b","at":"{now}","then":"2031-06-30T00:00:00Z","nonce":"q\"x","ciphertext":"abc","consentTimestamp":1799999999,"h":"{}"}}"#,
        "ab".repeat(32)
    );
    assert_eq!(
        n.text(&text),
        r#"{"id":"<id:1>","again":"<id:1>","other":"<id:2>","at":"<now>","then":"2031-06-30T00:00:00Z","nonce":"<nonce>","ciphertext":"<ciphertext>","consentTimestamp":<unix-time>,"h":"<hash:1>"}"#
    );
    // A UUID inside a longer hex run is not one.
    assert_eq!(n.text(&format!("x{a}f")), format!("x{a}f"));
}
