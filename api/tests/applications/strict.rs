//! What an application's routes read strictly, in the record's own spelling: a due date of
//! an information request in another spelling, or beyond the year a request may be due in,
//! is a `400` that stores nothing and leaves the application readable to everyone who could
//! read it before; a citizen's account id in another spelling of its UUID names the same
//! account, whose applications it reaches in every spelling.

use axum::http::StatusCode;
use serde_json::json;

use amtsbuch_domain::access::Role;

use super::{citizen, common, official, setup, uri, Env, ARS, LEIKA};

common::on_both_adapters!(using crate::on; a_due_date_is_read_strictly, an_account_in_another_spelling_is_the_same);

/// A received application, waiting for an information request.
async fn received(env: &Env) -> String {
    setup(env).await;
    let id = env.draft().await;
    let c = citizen();
    env.expect(
        StatusCode::OK,
        "PUT",
        "/applications/{id}/data",
        &uri(&id, "/data"),
        Some(&c),
        Some(json!({ "data": { "familienname": "Müller", "geburtsdatum": "1990-02-03" } })),
    )
    .await;
    env.expect(
        StatusCode::CREATED,
        "POST",
        "/applications/{id}/submission",
        &uri(&id, "/submission"),
        Some(&c),
        None,
    )
    .await;
    env.expect(
        StatusCode::OK,
        "POST",
        "/applications/{id}/reception",
        &uri(&id, "/reception"),
        Some(&official()),
        Some(json!({ "file_number": "AZ 42/2026" })),
    )
    .await;
    id
}

async fn a_due_date_is_read_strictly(env: &Env) {
    let id = received(env).await;
    let o = official();
    let head = env.head().await;
    for due in [
        // A year the record's timestamps cannot be read back with.
        "+10000-01-01T00:00:00Z",
        "+2027-01-01T00:00:00Z",
        // An offset, a space for the `T`, a lower-case `z`, no seconds.
        "2027-01-01T00:00:00+01:00",
        "2027-01-01 00:00:00Z",
        "2027-01-01T00:00:00z",
        "2027-01-01T00:00Z",
        // Well spelt, but beyond the year a request may be due in.
        "2099-01-01T00:00:00Z",
    ] {
        let refused = env
            .expect(
                StatusCode::BAD_REQUEST,
                "POST",
                "/applications/{id}/information-requests",
                &uri(&id, "/information-requests"),
                Some(&o),
                Some(
                    json!({ "message": "Bitte reichen Sie den Mietvertrag nach.", "due_at": due }),
                ),
            )
            .await;
        assert_eq!(
            refused["type"], "urn:amtsbuch:problem:invalid-body",
            "{due}: {refused}"
        );
        assert_eq!(refused["pointer"], "/due_at", "{due}: {refused}");
    }
    assert_eq!(env.head().await, head, "nothing stored");
    // The application is still read, by its applicant and by the authority.
    for token in [citizen(), o] {
        let app = env
            .expect(
                StatusCode::OK,
                "GET",
                "/applications/{id}",
                &uri(&id, ""),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(app["status"], "received");
        assert_eq!(app["information_requests"], json!([]));
    }
}

/// A citizen whose token spells its account in upper case.
fn citizen_spelt(account: &str) -> String {
    let mut request = common::request_for(Role::Citizen, "lra-meissen", &[LEIKA]);
    request.account = Some(account.into());
    common::signed(&request)
}

async fn an_account_in_another_spelling_is_the_same(env: &Env) {
    setup(env).await;
    let upper = citizen_spelt(&common::CITIZEN_ACCOUNT.to_uppercase());
    let created = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/applications",
            "/applications",
            Some(&upper),
            Some(json!({ "leika": LEIKA, "ars": ARS })),
        )
        .await;
    let id = created["application_id"].as_str().expect("id").to_owned();
    // The draft is reached with the token that made it, and with the account spelt as the
    // record spells it, or without hyphens.
    let simple = citizen_spelt(&common::CITIZEN_ACCOUNT.replace('-', ""));
    for token in [upper.clone(), citizen(), simple] {
        env.expect(
            StatusCode::OK,
            "PUT",
            "/applications/{id}/data",
            &uri(&id, "/data"),
            Some(&token),
            Some(json!({ "data": { "familienname": "Müller", "geburtsdatum": "1990-02-03" } })),
        )
        .await;
        env.expect(
            StatusCode::OK,
            "GET",
            "/applications/{id}",
            &uri(&id, ""),
            Some(&token),
            None,
        )
        .await;
    }
}
