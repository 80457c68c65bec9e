//! The provider client against the simulator: create, pull, callbacks, failures.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use uuid::Uuid;

use amtsbuch_api::payments::provider::{
    Auth, Item, PaymentRequest, Provider, ProviderConfig, ProviderError,
};
use amtsbuch_domain::payments::camt;
use amtsbuch_domain::payments::receivable::ReversalKind;
use amtsbuch_domain::payments::reconcile::LineKind;
use amtsbuch_domain::payments::{AttemptStatus, Kassenzeichen, Method};

use crate::simulator::{Simulator, SECRET, TOKEN};

fn config(url: &str, token: &str, timeout: Duration) -> ProviderConfig {
    ProviderConfig {
        name: "sim".into(),
        base_url: url.into(),
        originator_id: "amtsbuch".into(),
        endpoint_id: "14612000".into(),
        auth: Auth::Bearer(token.into()),
        callback_secret: SECRET.as_bytes().to_vec(),
        ca_pem: None,
        timeout,
    }
}

fn request(request_id: Uuid, kassenzeichen: &str, notify_url: Option<String>) -> PaymentRequest {
    PaymentRequest {
        request_id,
        currency: "EUR",
        gross_amount: 2500,
        purpose: kassenzeichen.into(),
        description: Some("Gebühr".into()),
        redirect_url: "http://127.0.0.1:1/payments/return".into(),
        notify_url,
        items: vec![
            Item {
                id: "1".into(),
                description: None,
                gross_amount: 2000,
            },
            Item {
                id: "2".into(),
                description: None,
                gross_amount: 500,
            },
        ],
    }
}

type Received = Arc<Mutex<Vec<(Bytes, Option<String>)>>>;

/// A receiver of push callbacks that records what arrives.
async fn callback_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/callback",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let signature = headers
                    .get("x-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                sink.lock().expect("lock").push((body, signature));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/callback"), received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_created_pulled_and_announced_by_signed_callbacks() {
    let sim = Simulator::start();
    let provider =
        Provider::new(config(&sim.url, TOKEN, Duration::from_secs(5))).expect("provider");
    let (notify, received) = callback_receiver().await;
    let id = Uuid::now_v7();
    let created = provider
        .create(&request(id, "202600000013", Some(notify.clone())))
        .await
        .expect("created");
    assert_eq!(created.status, AttemptStatus::Initial);
    assert!(created.transaction_url.starts_with(&sim.url));
    // The same request again is the same transaction.
    let again = provider
        .create(&request(id, "202600000013", Some(notify)))
        .await
        .expect("again");
    assert_eq!(again.transaction_id, created.transaction_id);
    let tx = created.transaction_id.clone();
    assert_eq!(
        provider.status(&tx).await.expect("status").status,
        AttemptStatus::Initial
    );

    let delivered = sim.decide(tx.as_str(), "paid", 3).await;
    assert_eq!(delivered, vec![200, 200, 200]);
    let callbacks = received.lock().expect("lock").clone();
    assert_eq!(callbacks.len(), 3);
    for (body, signature) in &callbacks {
        assert!(provider.verify_callback(body, signature.as_deref()));
        let text = std::str::from_utf8(body).expect("utf8");
        assert!(text.contains(tx.as_str()), "{text}");
        assert!(
            !text.contains("PAYED"),
            "a callback carries no status: {text}"
        );
    }
    let paid = provider.status(&tx).await.expect("status");
    assert_eq!(paid.status, AttemptStatus::Payed);
    assert_eq!(paid.method, Some(Method::Creditcard));
    assert_eq!(paid.gross.get(), 2500);
    // A terminal status never changes.
    sim.decide(tx.as_str(), "failed", 0).await;
    assert_eq!(
        provider.status(&tx).await.expect("status").status,
        AttemptStatus::Payed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_outages_and_slowness_are_told_apart() {
    let sim = Simulator::start();
    let provider =
        Provider::new(config(&sim.url, TOKEN, Duration::from_millis(500))).expect("provider");
    let stranger =
        Provider::new(config(&sim.url, "wrong", Duration::from_secs(5))).expect("provider");
    assert!(matches!(
        stranger.create(&request(Uuid::now_v7(), "K1", None)).await,
        Err(ProviderError::Refused { status: 401, .. })
    ));
    let mut uneven = request(Uuid::now_v7(), "K1", None);
    uneven.gross_amount = 2600;
    assert!(matches!(
        provider.create(&uneven).await,
        Err(ProviderError::Refused { status: 400, .. })
    ));
    let unknown = amtsbuch_domain::payments::TransactionId::parse("T99999999").expect("tx");
    assert!(matches!(
        provider.status(&unknown).await,
        Err(ProviderError::Refused { status: 404, .. })
    ));

    let created = provider
        .create(&request(Uuid::now_v7(), "K1", None))
        .await
        .expect("created");
    sim.health(true, 0).await;
    assert!(matches!(
        provider.status(&created.transaction_id).await,
        Err(ProviderError::Unavailable(_))
    ));
    sim.health(false, 1500).await;
    assert!(matches!(
        provider.status(&created.transaction_id).await,
        Err(ProviderError::Unavailable(_))
    ));
    sim.health(false, 0).await;
    assert!(provider.status(&created.transaction_id).await.is_ok());

    let nobody = Provider::new(config("http://127.0.0.1:9", TOKEN, Duration::from_secs(1)))
        .expect("provider");
    assert!(matches!(
        nobody.status(&created.transaction_id).await,
        Err(ProviderError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_bank_notification_reads_as_camt_054() {
    let sim = Simulator::start();
    let provider =
        Provider::new(config(&sim.url, TOKEN, Duration::from_secs(5))).expect("provider");
    let paid = provider
        .create(&request(Uuid::now_v7(), "202600000013", None))
        .await
        .expect("created");
    let charged = provider
        .create(&request(Uuid::now_v7(), "202600000021", None))
        .await
        .expect("created");
    sim.decide(paid.transaction_id.as_str(), "paid", 0).await;
    sim.decide(charged.transaction_id.as_str(), "paid_then_chargeback", 0)
        .await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let xml = sim
        .get_text(&format!("/control/camt054?date={today}"))
        .await;
    let file = camt::parse(xml.as_bytes(), |_, _| {}).expect("camt.054");
    assert_eq!(file.message, camt::Message::Notification);
    let kinds: Vec<(LineKind, Vec<Kassenzeichen>)> = file
        .lines
        .iter()
        .map(|l| (l.kind, l.candidates.clone()))
        .collect();
    let kz = |s: &str| vec![Kassenzeichen::parse(s).expect("kz")];
    assert_eq!(
        kinds,
        vec![
            (LineKind::Credit, kz("202600000013")),
            (LineKind::Credit, kz("202600000021")),
            (
                LineKind::Reversal(ReversalKind::Chargeback),
                kz("202600000021")
            ),
        ]
    );
}
