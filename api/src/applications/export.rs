//! The applications' part of a data subject's access export (Art. 15 GDPR): every
//! application the subject made, drafts included, with its data and messages decrypted
//! (or marked erased). The member `applications` is there only for a subject who applied.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use amtsbuch_domain::applications::SubjectId;
use amtsbuch_projections::db::ReadDb;

use super::lifecycle::{load, view};
use crate::command;
use crate::module::ExportPart;
use crate::problem::Problem;
use crate::AppState;

/// The export part, built from the applicants read model and the applications' events.
pub const EXPORT: ExportPart = ExportPart {
    read_models: &[amtsbuch_projections::applications::applicants::NAME],
    build,
};

fn build(
    state: &AppState,
    subject: SubjectId,
    _now: DateTime<Utc>,
) -> BoxFuture<'_, Result<Map<String, Value>, Problem>> {
    Box::pin(async move {
        let db = ReadDb::new(&state.store);
        let ids = amtsbuch_projections::applications::applications_of(&db, subject)
            .await
            .map_err(|e| Problem::internal(&e))?;
        let mut part = Map::new();
        if ids.is_empty() {
            return Ok(part);
        }
        command::sealer(state)?;
        let mut applications = Vec::with_capacity(ids.len());
        for id in ids {
            let (events, folded, version) = load(state, id).await?;
            if let Some(app) = folded.0 {
                applications.push(
                    serde_json::to_value(view(&events, &app, version))
                        .map_err(|e| Problem::internal(&e))?,
                );
            }
        }
        part.insert("applications".into(), Value::Array(applications));
        Ok(part)
    })
}
