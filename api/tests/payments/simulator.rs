//! Starting the provider simulator as its own process, and the test's hand on it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

/// A running simulator; killed when dropped.
#[derive(Debug)]
pub struct Simulator {
    child: Child,
    pub url: String,
}

pub const TOKEN: &str = "simulator-token";
pub const SECRET: &str = "callback-secret";

impl Simulator {
    pub fn start() -> Simulator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xbezahldienste-simulator"))
            .args(["--token", TOKEN, "--callback-secret", SECRET])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the simulator");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("the simulator's first line");
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Simulator { child, url }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.url);
        tokio::task::spawn_blocking(move || {
            let mut r = ureq::post(&url)
                .header("content-type", "application/json")
                .send(body.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("POST {url}: {e}"));
            let text = r.body_mut().read_to_string().expect("body");
            serde_json::from_str(&text).unwrap_or(Value::Null)
        })
        .await
        .expect("join")
    }

    pub async fn get_text(&self, path: &str) -> String {
        let url = format!("{}{path}", self.url);
        tokio::task::spawn_blocking(move || {
            ureq::get(&url)
                .call()
                .unwrap_or_else(|e| panic!("GET {url}: {e}"))
                .body_mut()
                .read_to_string()
                .expect("body")
        })
        .await
        .expect("join")
    }

    /// The payer finishes the transaction with `outcome`; the simulator then sends
    /// `callbacks` push callbacks and answers their HTTP statuses.
    pub async fn decide(&self, transaction: &str, outcome: &str, callbacks: u32) -> Vec<u16> {
        let answer = self
            .post(
                &format!("/control/transactions/{transaction}"),
                json!({"outcome": outcome, "method": "CREDITCARD", "callbacks": callbacks}),
            )
            .await;
        answer["callbacks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_u64)
                    .map(|c| c as u16)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn health(&self, down: bool, delay_ms: u64) {
        self.post(
            "/control/health",
            json!({"down": down, "delay_ms": delay_ms}),
        )
        .await;
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
