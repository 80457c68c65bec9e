//! Delivery to the Fachverfahren: a Fachverfahren receives its applications — those of its
//! authority and its services (LeiKa) — and nothing else, over NATS (the relay's subjects
//! and the consumer filter `PUT /subscriptions/nats/{name}` derives from its token, as
//! docs/FACHVERFAHREN.md describes) and over SSE (`GET /events/stream` with its token),
//! from the submission on; a draft's events reach nobody.
//!
//! One log holds applications of two authorities and two services, and a draft; the
//! Fachverfahren of `lra-meissen` for Wohngeld and the one of `lra-bautzen` for Wohngeld
//! each get exactly the events of their own submitted application, over both paths, in
//! log order, and answer it with reception and decision.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use futures_util::StreamExt;
use serde_json::{json, Value};

use amtsbuch_api::hub::HubLimits;
use amtsbuch_domain::access::Role;
use amtsbuch_domain::applications::Sha256;
use amtsbuch_infra::EventStore;

use super::{common, operator, schema, uri, Env, ARS, LEIKA};

/// A second service of `lra-meissen`: parking permits for residents.
const PARKEN: &str = "99050012104000";
/// Bautzen (district 14625): another authority's region.
const ARS_BAUTZEN: &str = "146250000000";

/// The `Env` of the other tests with a NATS relay beside it: the relay publishes the log to
/// a stream of the test's own, and `/subscriptions/nats/{name}` sets consumers up on it.
struct Delivery {
    env: Env,
    nats: common::TestNats,
    relay: amtsbuch_infra::relay::RelayHandle,
}

impl Delivery {
    async fn start(adapter: common::Adapter) -> Self {
        let db = common::TestDb::fresh(adapter).await;
        let store = db.store.clone();
        let nats = common::TestNats::create().await;
        let relay =
            amtsbuch_infra::relay::spawn(store.clone(), nats.config.clone()).expect("relay");
        let ledger = amtsbuch_infra::ledger::spawn(
            store.clone(),
            amtsbuch_infra::ledger::LedgerConfig {
                origin: common::ORIGIN.into(),
                signers: vec![common::ledger_signer()],
                every_events: 1,
                interval: Duration::from_millis(20),
            },
        );
        let mut state = common::state_with(&store, None, HubLimits::default()).await;
        state.sealer = Some(common::sealer(&store, db.dir()));
        state.nats = Some(std::sync::Arc::new(
            amtsbuch_api::state::NatsLink::new(nats.config.clone()).watching(&relay),
        ));
        let runner =
            amtsbuch_projections::spawn(store.clone(), amtsbuch_api::domains::projections());
        let env = Env {
            app: amtsbuch_api::router(state.clone()),
            state,
            store,
            doc: serde_json::to_value(amtsbuch_api::router::openapi()).expect("document"),
            runner: Some(runner),
            ledger,
            db,
        };
        Self { env, nats, relay }
    }

    async fn close(self) {
        self.relay.stop().await;
        self.env.close().await;
        drop(self.nats);
    }

    /// Set up the durable consumer `name` as the Fachverfahren `token`: its filters come
    /// from the token.
    async fn consumer(&self, token: &str, name: &str) -> Value {
        self.env
            .expect(
                StatusCode::OK,
                "PUT",
                "/subscriptions/nats/{name}",
                &format!("/subscriptions/nats/{name}"),
                Some(token),
                Some(json!({ "start": "all" })),
            )
            .await
    }

    /// Everything the consumer `name` delivers, acknowledged: (subject, record) in order.
    async fn pull(&self, name: &str) -> Vec<(String, Value)> {
        let context = amtsbuch_infra::relay::connect(&self.nats.config)
            .await
            .expect("NATS");
        let consumer: async_nats::jetstream::consumer::PullConsumer = context
            .get_stream(&self.nats.config.stream)
            .await
            .expect("stream")
            .get_consumer(name)
            .await
            .expect("consumer");
        let mut out = Vec::new();
        loop {
            let mut batch = consumer
                .batch()
                .max_messages(500)
                .expires(Duration::from_millis(700))
                .messages()
                .await
                .expect("fetch");
            let before = out.len();
            while let Some(message) = batch.next().await {
                let message = message.expect("message");
                let leaf = amtsbuch_domain::merkle::leaf_hash(&message.payload);
                let header = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Amtsbuch-Leaf-Hash"))
                    .map(|v| v.as_str().to_owned());
                assert_eq!(
                    header.as_deref(),
                    Some(amtsbuch_domain::chain::to_hex(&leaf).as_str()),
                    "the payload is the stored record"
                );
                let record: Value = serde_json::from_slice(&message.payload).expect("record");
                out.push((message.subject.to_string(), record));
                message.ack().await.expect("ack");
            }
            if out.len() == before {
                return out;
            }
        }
    }

    /// Every event `token` receives over SSE from the start of the log, until it has been
    /// quiet for a second: (position, stream, type).
    async fn sse(&self, token: &str) -> Vec<(u64, String, String)> {
        let response = common::call(
            &self.env.app,
            common::request("GET", "/events/stream", Some(token), Body::empty()),
        )
        .await;
        let mut reader = common::SseReader::new(response);
        let mut out = Vec::new();
        while let common::Next::Frame(frame) = reader.next(Duration::from_secs(1)).await {
            assert_eq!(frame.event.as_deref(), Some("event"), "{frame:?}");
            let body = frame.json();
            out.push((
                frame.position(),
                body["stream"].as_str().expect("stream").to_owned(),
                body["type"].as_str().expect("type").to_owned(),
            ));
        }
        out
    }

    /// Every event of the log from its application's submission on: (position, stream,
    /// type) in log order, for the applications in `ids`.
    async fn submitted_events_of(&self, ids: &[&str]) -> Vec<(u64, String, String)> {
        let streams: BTreeSet<String> = ids.iter().map(|id| format!("application-{id}")).collect();
        let mut submitted = BTreeSet::new();
        let mut out = Vec::new();
        let events = self
            .env
            .store
            .read_all(0, 10_000)
            .await
            .expect("read the log");
        for e in events {
            let record = e.record().expect("record");
            let stream = record.stream_id.as_str().to_owned();
            if !streams.contains(&stream) {
                continue;
            }
            if record.event_type.as_str() == "ApplicationSubmitted" {
                submitted.insert(stream.clone());
            }
            if submitted.contains(&stream) {
                out.push((
                    record.position,
                    stream,
                    record.event_type.as_str().to_owned(),
                ));
            }
        }
        out
    }
}

/// Draft an application for `leika` in `ars` as the citizen, save valid data; its id.
async fn drafted(env: &Env, leika: &str, ars: &str) -> String {
    let c = common::token(Role::Citizen);
    let body = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/applications",
            "/applications",
            Some(&c),
            Some(json!({ "leika": leika, "ars": ars })),
        )
        .await;
    let id = body["application_id"].as_str().expect("id").to_owned();
    env.expect(
        StatusCode::OK,
        "PUT",
        "/applications/{id}/data",
        &uri(&id, "/data"),
        Some(&c),
        Some(json!({ "data": { "familienname": "Müller", "geburtsdatum": "1990-02-03" } })),
    )
    .await;
    id
}

async fn submitted(env: &Env, leika: &str, ars: &str) -> String {
    let id = drafted(env, leika, ars).await;
    env.expect(
        StatusCode::CREATED,
        "POST",
        "/applications/{id}/submission",
        &uri(&id, "/submission"),
        Some(&common::token(Role::Citizen)),
        None,
    )
    .await;
    id
}

/// The Fachverfahren's answer, as docs/FACHVERFAHREN.md shows it: read, reception with a
/// file number, decision with the document's hash.
async fn answer(env: &Env, fv: &str, id: &str) {
    env.expect(
        StatusCode::OK,
        "GET",
        "/applications/{id}",
        &uri(id, ""),
        Some(fv),
        None,
    )
    .await;
    env.expect(
        StatusCode::OK,
        "POST",
        "/applications/{id}/reception",
        &uri(id, "/reception"),
        Some(fv),
        Some(json!({ "file_number": "AZ 42/2026" })),
    )
    .await;
    let decided = env
        .expect(
            StatusCode::OK,
            "POST",
            "/applications/{id}/decision",
            &uri(id, "/decision"),
            Some(fv),
            Some(json!({ "outcome": "granted", "document_sha256": Sha256::of(b"Bescheid").to_string() })),
        )
        .await;
    assert_eq!(decided["zbp_status"], "COMPLETED");
}

async fn a_fachverfahren_receives_only_its_applications(adapter: common::Adapter) {
    let d = Delivery::start(adapter).await;
    let env = &d.env;
    let form = env.published_form(schema()).await;
    let entry = |leika: &str, region: &str, authority: &str| {
        json!({ "leika": leika, "region": region, "authority": authority, "form": form,
                "payment": "none", "service_name": "Antrag" })
    };
    env.directory(json!([
        entry(LEIKA, "14627", "lra-meissen"),
        entry(PARKEN, "14627", "lra-meissen"),
        entry(LEIKA, "14625", "lra-bautzen"),
    ]))
    .await;

    // The consumers exist before anything is submitted; each one's filter is its token's.
    let meissen = common::token_for(Role::Fachverfahren, "lra-meissen", &[LEIKA]);
    let bautzen = common::token_for(Role::Fachverfahren, "lra-bautzen", &[LEIKA]);
    let prefix = d.nats.config.prefix.to_string();
    let made = d.consumer(&meissen, "lra-meissen-wohngeld").await;
    assert_eq!(
        made["filter_subjects"],
        json!([format!("{prefix}.*.lra-meissen.*.{LEIKA}")])
    );
    d.consumer(&bautzen, "lra-bautzen-wohngeld").await;

    // Meißen's Wohngeld application, the same authority's parking permit, Bautzen's
    // Wohngeld application, and a draft in Meißen that is never submitted.
    let ours = submitted(env, LEIKA, ARS).await;
    let parking = submitted(env, PARKEN, ARS).await;
    let theirs = submitted(env, LEIKA, ARS_BAUTZEN).await;
    let draft = drafted(env, LEIKA, ARS).await;
    answer(env, &meissen, &ours).await;
    answer(env, &bautzen, &theirs).await;
    // The parking permit is lra-meissen's, but not for the Wohngeld Fachverfahren.
    let refused = env
        .call(
            "GET",
            "/applications/{id}",
            &uri(&parking, ""),
            Some(&meissen),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);

    let head = env.head().await;
    common::wait_relayed(
        &d.nats.config.url,
        &d.nats.config.stream,
        head,
        Duration::from_secs(30),
    )
    .await;

    for (token, consumer, id, authority) in [
        (&meissen, "lra-meissen-wohngeld", &ours, "lra-meissen"),
        (&bautzen, "lra-bautzen-wohngeld", &theirs, "lra-bautzen"),
    ] {
        let expected = d.submitted_events_of(&[id]).await;
        // From the submission on: the answers, and the reads the service records of each
        // view of the application's data it gives the Fachverfahren.
        let types: Vec<&str> = expected
            .iter()
            .map(|(_, _, t)| t.as_str())
            .filter(|t| *t != "ApplicationRead")
            .collect();
        assert_eq!(
            types,
            [
                "ApplicationSubmitted",
                "ApplicationReceived",
                "DecisionIssued"
            ],
            "{consumer}"
        );
        assert_eq!(expected[1].2, "ApplicationRead", "{consumer}");

        // NATS: exactly those events, on the documented subjects, in log order.
        let pulled = d.pull(consumer).await;
        let over_nats: Vec<(u64, String, String)> = pulled
            .iter()
            .map(|(_, r)| {
                (
                    r["position"].as_u64().expect("position"),
                    r["stream_id"].as_str().expect("stream").to_owned(),
                    r["event_type"].as_str().expect("type").to_owned(),
                )
            })
            .collect();
        assert_eq!(over_nats, expected, "{consumer} over NATS");
        for (subject, record) in &pulled {
            assert_eq!(
                subject,
                &format!(
                    "{prefix}.application.{authority}.{}.{LEIKA}",
                    record["event_type"].as_str().expect("type")
                )
            );
            assert_eq!(record["authority"], authority);
            assert_eq!(record["service"], LEIKA);
            assert!(
                !record.to_string().contains("Müller"),
                "no plaintext on NATS"
            );
        }

        // SSE with the same token: the same events, in the same order.
        assert_eq!(d.sse(token).await, expected, "{consumer} over SSE");
    }

    // Nobody received the draft or the parking permit: every consumer's events belong to
    // its own submitted application only.
    let everything = d
        .submitted_events_of(&[&ours, &parking, &theirs, &draft])
        .await;
    assert!(everything.iter().any(|(_, s, _)| s.ends_with(&parking)));
    assert!(
        !everything.iter().any(|(_, s, _)| s.ends_with(&draft)),
        "a draft has no submission"
    );
    // An operator's view of the log shows the draft's events exist, routed to nobody.
    let all = d.sse(&operator()).await;
    let draft_events: Vec<&(u64, String, String)> =
        all.iter().filter(|(_, s, _)| s.ends_with(&draft)).collect();
    assert!(!draft_events.is_empty(), "the draft is in the log");
    d.close().await;
}

common::on_both_adapters!(using run; a_fachverfahren_receives_only_its_applications);

async fn run(adapter: common::Adapter, test: impl AsyncFnOnce(common::Adapter)) {
    test(adapter).await;
}
