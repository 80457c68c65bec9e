//! The payments part of a data subject's access export (Art. 15 GDPR): every receivable the
//! subject is the payer of, as `GET /receivables/{id}` shows it, with the payer's name it
//! was requested under decrypted (or marked erased), and the receivable's history: each of
//! its events with its type and instant. The member `receivables` is there only for a
//! subject who is the payer of one.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use amtsbuch_domain::event::{DomainEvent, SubjectId};
use amtsbuch_domain::payments::receivable::ReceivableEvent;
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::payments as read;

use super::routes::view;
use crate::command::{self, load, personal_json};
use crate::module::ExportPart;
use crate::problem::Problem;
use crate::AppState;

/// The export part, built from the receivables read model and the receivables' events.
pub const EXPORT: ExportPart = ExportPart {
    read_models: &[read::NAME],
    build,
};

fn build(
    state: &AppState,
    subject: SubjectId,
    _now: DateTime<Utc>,
) -> BoxFuture<'_, Result<Map<String, Value>, Problem>> {
    Box::pin(async move {
        let db = ReadDb::new(&state.store);
        let receivables = read::receivables_of_payer(&db, &subject.to_string()).await?;
        let mut part = Map::new();
        if receivables.is_empty() {
            return Ok(part);
        }
        command::sealer(state)?;
        let mut out = Vec::with_capacity(receivables.len());
        for r in receivables {
            let (events, _) = load::<ReceivableEvent>(state, &r.id.stream_id()).await?;
            let payer_name = events.iter().find_map(|e| match &e.event {
                ReceivableEvent::Requested(q) => Some(personal_json(&q.payer_name)),
                _ => None,
            });
            let history: Vec<Value> = events
                .iter()
                .map(|e| {
                    json!({
                        "event": e.event.event_type(),
                        "recorded_at": format_timestamp(&e.recorded_at),
                    })
                })
                .collect();
            let mut entry = match serde_json::to_value(view(&r)) {
                Ok(Value::Object(entry)) => entry,
                Ok(_) => Map::new(),
                Err(e) => return Err(Problem::internal(&e)),
            };
            entry.insert("payer_name".into(), payer_name.unwrap_or(Value::Null));
            entry.insert("history".into(), Value::Array(history));
            out.push(Value::Object(entry));
        }
        part.insert("receivables".into(), Value::Array(out));
        Ok(part)
    })
}
