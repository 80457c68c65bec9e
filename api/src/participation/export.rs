//! The participation part of a data subject's access export (Art. 15 GDPR): every
//! contribution the subject submitted, with what it wrote decrypted (or marked erased),
//! and every registration for a gathering, with the name and contact it gave. The members
//! `contributions` and `registrations` are there only for a subject who has some.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use amtsbuch_domain::event::{Personal, SubjectId};
use amtsbuch_domain::participation::contribution::ContributionEvent;
use amtsbuch_domain::participation::gathering::GatheringEvent;
use amtsbuch_domain::participation::{ContributionId, GatheringId};
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::participation as rm;

use crate::command::{self, load};
use crate::module::ExportPart;
use crate::problem::Problem;
use crate::AppState;

/// The export part, built from the participation read model and the events.
pub const EXPORT: ExportPart = ExportPart {
    read_models: &[rm::NAME],
    build,
};

fn personal<T: serde::Serialize>(p: &Personal<T>) -> Value {
    match p {
        Personal::Available(v) => serde_json::to_value(v).unwrap_or(Value::Null),
        Personal::Erased => json!({ "erased": true }),
    }
}

fn uuid(s: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(s).map_err(|e| Problem::internal(&e))
}

fn build(
    state: &AppState,
    subject: SubjectId,
    _now: DateTime<Utc>,
) -> BoxFuture<'_, Result<Map<String, Value>, Problem>> {
    Box::pin(async move {
        let db = ReadDb::new(&state.store);
        let me = subject.0.to_string();
        let contributions = rm::contributions_of(&db, &me).await?;
        let registrations = rm::registrations_of(&db, &me).await?;
        let mut part = Map::new();
        if contributions.is_empty() && registrations.is_empty() {
            return Ok(part);
        }
        command::sealer(state)?;
        let mut out = Vec::with_capacity(contributions.len());
        for row in contributions {
            let id = ContributionId(uuid(&row.contribution_id)?);
            let (events, _) = load::<ContributionEvent>(state, &id.stream_id()).await?;
            let Some(ContributionEvent::Submitted(s)) = events.first().map(|e| &e.event) else {
                continue;
            };
            out.push(json!({
                "contribution_id": row.contribution_id,
                "procedure_id": row.procedure_id,
                "round_id": row.round_id,
                "kind": row.kind,
                "late": row.late,
                "submitted_at": format_timestamp(&s.submitted_at),
                "choices": serde_json::to_value(&s.choices).unwrap_or(Value::Null),
                "content": personal(&s.content),
                "hidden": row.hidden,
                "withdrawn": row.withdrawn,
            }));
        }
        if !out.is_empty() {
            part.insert("contributions".into(), Value::Array(out));
        }
        let mut out = Vec::with_capacity(registrations.len());
        for row in registrations {
            let gid = GatheringId(uuid(&row.gathering_id)?);
            let (events, _) = load::<GatheringEvent>(state, &gid.stream_id()).await?;
            let received = events.iter().find_map(|e| match &e.event {
                GatheringEvent::Registered(r)
                    if r.registration_id.to_string() == row.registration_id =>
                {
                    Some(r)
                }
                _ => None,
            });
            let Some(r) = received else { continue };
            out.push(json!({
                "registration_id": row.registration_id,
                "gathering_id": row.gathering_id,
                "place": row.place,
                "registered_at": format_timestamp(&r.registered_at),
                "registrant": personal(&r.data),
            }));
        }
        if !out.is_empty() {
            part.insert("registrations".into(), Value::Array(out));
        }
        Ok(part)
    })
}
