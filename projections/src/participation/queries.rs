//! The queries over the participation read model: the public search, a procedure with
//! its rounds, the published contributions, the moderation log, the calendar, the
//! moderation queue, the survey's choices and the weighing's counts, and the lookups the commands need (a registration's gathering).
//!
//! A procedure's public count is kept in `participation_counts` and joined to the
//! procedures a query returns.
//!
//! *Active* is not stored: an announced procedure is active from its first round's start,
//! so the search compares `opens_at` with the instant it is asked at.

use amtsbuch_domain::participation::procedure::PublicStatus;
use amtsbuch_domain::participation::{Ags, BoundingBox, Format, Topic};
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_domain::AuthorityId;
use serde_json::{json, Value as Json};
use sqlx::types::chrono::{DateTime, Utc};

use super::micro_box;
use crate::db::{DbError, Dialect, ReadDb, Row, Value};

/// The largest page of any listing.
pub const MAX_LIMIT: u32 = 100;

/// The public search's filters. Every filter is optional; without `status`, drafts and
/// archived procedures are left out (drafts are never public, archived ones only on
/// request).
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub status: Option<PublicStatus>,
    pub format: Option<Format>,
    pub topic: Option<Topic>,
    pub authority: Option<AuthorityId>,
    pub ags: Option<Ags>,
    /// Procedures whose participation period reaches into `[from, to]`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Full text: words of title and topics.
    pub text: Option<String>,
    pub bbox: Option<BoundingBox>,
    pub limit: u32,
    pub offset: u32,
}

/// The words of a full-text query: letters and digits, as both databases split them.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A procedure as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcedureRow {
    pub procedure_id: String,
    pub authority: String,
    pub format: String,
    pub title: String,
    pub topics: Json,
    pub region: String,
    pub status: String,
    pub stage: Option<String>,
    pub geometry: Option<Json>,
    pub accepts_late: bool,
    pub report_threshold: i64,
    pub survey: Option<Json>,
    pub drafted_at: String,
    pub announced_at: Option<String>,
    pub opens_at: Option<String>,
    pub closes_at: Option<String>,
    pub decided_at: Option<String>,
    pub decision: Option<String>,
    pub cancelled_at: Option<String>,
    pub cancel_reason: Option<String>,
    pub contributions: i64,
    pub last_position: u64,
}

impl ProcedureRow {
    /// The status shown at `now`.
    pub fn public_status(&self, now: &str) -> &str {
        match (self.status.as_str(), self.opens_at.as_deref()) {
            ("announced", Some(opens)) if opens <= now => "active",
            (status, _) => status,
        }
    }

    /// The public JSON form at `now`.
    pub fn to_json(&self, now: &DateTime<Utc>) -> Json {
        let now = format_timestamp(now);
        json!({
            "id": self.procedure_id,
            "authority": self.authority,
            "format": self.format,
            "title": self.title,
            "topics": self.topics,
            "region": self.region,
            "status": self.public_status(&now),
            "stage": self.stage,
            "geometry": self.geometry,
            "accepts_late": self.accepts_late,
            "report_threshold": self.report_threshold,
            "survey": self.survey,
            "announced_at": self.announced_at,
            "opens_at": self.opens_at,
            "closes_at": self.closes_at,
            "decided_at": self.decided_at,
            "decision": self.decision,
            "cancelled_at": self.cancelled_at,
            "cancel_reason": self.cancel_reason,
            "contributions": self.contributions,
        })
    }
}

const PROCEDURE_COLUMNS: &str = "procedure_id, authority, format, title, topics, region, \
    status, stage, geometry, accepts_late, report_threshold, survey, drafted_at, \
    announced_at, opens_at, closes_at, decided_at, decision, cancelled_at, cancel_reason, \
    last_position";

/// The procedures `selected` (a statement over `participation_procedures` that returns
/// [`PROCEDURE_COLUMNS`]) with their public counts, which have a table of their own, in
/// the search's order. The counts are joined to the rows selected only, after any limit.
fn with_counts(selected: &str) -> String {
    format!(
        "SELECT p.*, COALESCE(n.contributions, 0) AS contributions FROM ({selected}) p \
         LEFT JOIN participation_counts n ON n.procedure_id = p.procedure_id \
         ORDER BY {ORDER}"
    )
}

/// The search's order, the most recently opened first; `participation_procedures_listed`
/// serves it.
const ORDER: &str = "COALESCE(p.opens_at, p.drafted_at) DESC, p.procedure_id";

fn json_column(row: &Row, column: &str) -> Result<Option<Json>, DbError> {
    row.get::<Option<String>>(column)?
        .map(|text| {
            serde_json::from_str(&text).map_err(|e| DbError::Decode {
                column: column.to_owned(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

fn procedure_row(row: &Row) -> Result<ProcedureRow, DbError> {
    Ok(ProcedureRow {
        procedure_id: row.get("procedure_id")?,
        authority: row.get("authority")?,
        format: row.get("format")?,
        title: row.get("title")?,
        topics: json_column(row, "topics")?.unwrap_or(Json::Null),
        region: row.get("region")?,
        status: row.get("status")?,
        stage: row.get("stage")?,
        geometry: json_column(row, "geometry")?,
        accepts_late: row.get("accepts_late")?,
        report_threshold: row.get("report_threshold")?,
        survey: json_column(row, "survey")?,
        drafted_at: row.get("drafted_at")?,
        announced_at: row.get("announced_at")?,
        opens_at: row.get("opens_at")?,
        closes_at: row.get("closes_at")?,
        decided_at: row.get("decided_at")?,
        decision: row.get("decision")?,
        cancelled_at: row.get("cancelled_at")?,
        cancel_reason: row.get("cancel_reason")?,
        contributions: row.get("contributions")?,
        last_position: row.get_u64("last_position")?,
    })
}

/// A statement's numbered parameters, gathered while its `WHERE` clause is built.
struct Params<'a> {
    values: Vec<Value<'a>>,
}

impl<'a> Params<'a> {
    fn push(&mut self, v: impl Into<Value<'a>>) -> String {
        self.values.push(v.into());
        format!("${}", self.values.len())
    }
}

/// The public search, at the instant `now`: procedures matching every filter given, the
/// most recently opened first.
pub async fn search(
    db: &ReadDb,
    q: &SearchQuery,
    now: DateTime<Utc>,
) -> Result<Vec<ProcedureRow>, DbError> {
    let mut p = Params { values: Vec::new() };
    let mut conditions: Vec<String> = Vec::new();
    let mut listed_index = false;
    let now_text = format_timestamp(&now);
    match q.status {
        None => {
            conditions.push("status IN ('announced', 'evaluating', 'decided', 'cancelled')".into())
        }
        Some(PublicStatus::Active) => {
            // The same bound on the order's expression (equal to `opens_at` here, which is
            // set) lets the order's index start at `now`, past the upcoming procedures.
            let n = p.push(now_text.clone());
            conditions.push(format!(
                "status = 'announced' AND opens_at <= {n} AND COALESCE(opens_at, drafted_at) <= {n}"
            ));
        }
        Some(PublicStatus::Announced) => {
            let n = p.push(now_text.clone());
            conditions.push(format!(
                "status = 'announced' AND (opens_at IS NULL OR opens_at > {n})"
            ));
        }
        Some(other) => {
            let n = p.push(other.as_str());
            conditions.push(format!("status = {n}"));
        }
    }
    if let Some(format) = q.format {
        let n = p.push(format.as_str());
        conditions.push(format!("format = {n}"));
    }
    if let Some(topic) = &q.topic {
        let n = p.push(topic.as_str().to_owned());
        conditions.push(format!(
            "procedure_id IN (SELECT procedure_id FROM participation_topics WHERE topic = {n})"
        ));
    }
    if let Some(authority) = &q.authority {
        let n = p.push(authority.as_str().to_owned());
        conditions.push(format!("authority = {n}"));
    }
    if let Some(ags) = &q.ags {
        let n = p.push(ags.as_str().to_owned());
        conditions.push(format!("region = {n}"));
    }
    if let Some(from) = q.from {
        let n = p.push(from);
        conditions.push(format!("closes_at >= {n}"));
    }
    if let Some(to) = q.to {
        let n = p.push(to);
        conditions.push(format!("opens_at <= {n}"));
    }
    if let Some(b) = &q.bbox {
        let [min_lon, min_lat, max_lon, max_lat] = micro_box(b);
        let (a, b2, c, d) = (
            p.push(min_lon),
            p.push(min_lat),
            p.push(max_lon),
            p.push(max_lat),
        );
        conditions.push(format!(
            "min_lon <= {c} AND max_lon >= {a} AND min_lat <= {d} AND max_lat >= {b2}"
        ));
    }
    if let Some(text) = &q.text {
        let words = words(text);
        if words.is_empty() {
            return Ok(Vec::new());
        }
        // Full text is where the two databases differ: PostgreSQL's text search with the
        // german configuration (stemmed), SQLite's FTS5 (every word as a prefix).
        match db.dialect() {
            Dialect::Postgres => {
                let n = p.push(words.join(" "));
                conditions.push(format!("search @@ plainto_tsquery('german', {n})"));
            }
            Dialect::Sqlite => {
                let query: Vec<String> = words.iter().map(|w| format!("\"{w}\"*")).collect();
                let n = p.push(query.join(" "));
                conditions.push(format!(
                    "rowid IN (SELECT rowid FROM participation_procedures_fts \
                     WHERE participation_procedures_fts MATCH {n})"
                ));
                // FTS5 gives its matches by rowid, never in the search's order, and the
                // planner cannot tell how many there are: left to itself it fetches every
                // match and sorts them (3.5 ms for a word in every title of 10,000). The
                // matches' rowids are collected once instead, and the order's index is
                // walked until the page is full (1.3 ms then; a word that matches nothing
                // walks the whole index, 0.6 ms).
                listed_index = true;
            }
        }
    }
    let limit = p.push(i64::from(q.limit.clamp(1, MAX_LIMIT)));
    let offset = p.push(i64::from(q.offset));
    let sql = with_counts(&format!(
        "SELECT {PROCEDURE_COLUMNS} FROM participation_procedures p {} WHERE {} \
         ORDER BY {ORDER} LIMIT {limit} OFFSET {offset}",
        if listed_index {
            "INDEXED BY participation_procedures_listed"
        } else {
            ""
        },
        conditions.join(" AND ")
    ));
    // Planned for its values each time: a generic plan (PostgreSQL's after five
    // executions) does not know whether the word is rare or in every title, and read and
    // sorted all 750 active matches of a common word (1.3 ms at 10,000 procedures) where
    // the plan for the word walks the order's index and stops after the page (0.1 ms).
    db.fetch_all_planned(&sql, &p.values)
        .await?
        .iter()
        .map(procedure_row)
        .collect()
}

/// One procedure, whatever its status.
pub async fn procedure(db: &ReadDb, id: &str) -> Result<Option<ProcedureRow>, DbError> {
    db.fetch_optional(
        &with_counts(&format!(
            "SELECT {PROCEDURE_COLUMNS} FROM participation_procedures WHERE procedure_id = $1"
        )),
        &[id.into()],
    )
    .await?
    .as_ref()
    .map(procedure_row)
    .transpose()
}

/// The rounds of a procedure, in order, as public JSON.
pub async fn rounds(db: &ReadDb, procedure_id: &str) -> Result<Vec<Json>, DbError> {
    db.fetch_all(
        "SELECT round_id, stage, starts_at, ends_at, documents, preclusion_notice \
         FROM participation_rounds WHERE procedure_id = $1 ORDER BY starts_at",
        &[procedure_id.into()],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(json!({
            "id": row.get::<String>("round_id")?,
            "stage": row.get::<Option<String>>("stage")?,
            "starts_at": row.get::<String>("starts_at")?,
            "ends_at": row.get::<String>("ends_at")?,
            "documents": json_column(row, "documents")?,
            "preclusion_notice": row.get::<bool>("preclusion_notice")?,
        }))
    })
    .collect()
}

/// A contribution as the read model knows it (no text: that stays sealed in the log).
#[derive(Debug, Clone, PartialEq)]
pub struct ContributionRow {
    pub contribution_id: String,
    pub procedure_id: String,
    pub round_id: String,
    pub kind: String,
    /// The author's pseudonymous participant id; never shown publicly.
    pub author: String,
    pub late: bool,
    pub submitted_at: String,
    /// Where `ContributionSubmitted` lies in the log.
    pub position: u64,
    pub choices: Option<Json>,
    pub hidden: bool,
    pub withdrawn: bool,
    pub reports: i64,
    pub supports: i64,
    pub answer_state: Option<String>,
    pub answer_text: Option<String>,
    pub weighing: Option<String>,
}

const CONTRIBUTION_COLUMNS: &str = "contribution_id, procedure_id, round_id, kind, author, \
    late, submitted_at, position, choices, hidden, withdrawn, reports, supports, \
    answer_state, answer_text, weighing";

fn contribution_row(row: &Row) -> Result<ContributionRow, DbError> {
    Ok(ContributionRow {
        contribution_id: row.get("contribution_id")?,
        procedure_id: row.get("procedure_id")?,
        round_id: row.get("round_id")?,
        kind: row.get("kind")?,
        author: row.get("author")?,
        late: row.get("late")?,
        submitted_at: row.get("submitted_at")?,
        position: row.get_u64("position")?,
        choices: json_column(row, "choices")?,
        hidden: row.get("hidden")?,
        withdrawn: row.get("withdrawn")?,
        reports: row.get("reports")?,
        supports: row.get("supports")?,
        answer_state: row.get("answer_state")?,
        answer_text: row.get("answer_text")?,
        weighing: row.get("weighing")?,
    })
}

/// One contribution.
pub async fn contribution(db: &ReadDb, id: &str) -> Result<Option<ContributionRow>, DbError> {
    db.fetch_optional(
        &format!(
            "SELECT {CONTRIBUTION_COLUMNS} FROM participation_contributions \
             WHERE contribution_id = $1"
        ),
        &[id.into()],
    )
    .await?
    .as_ref()
    .map(contribution_row)
    .transpose()
}

/// The published contributions of a procedure — neither hidden nor withdrawn — after the
/// log position `after`, in the order submitted.
pub async fn published_contributions(
    db: &ReadDb,
    procedure_id: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<ContributionRow>, DbError> {
    db.fetch_all(
        &format!(
            "SELECT {CONTRIBUTION_COLUMNS} FROM participation_contributions \
             WHERE procedure_id = $1 AND hidden = FALSE AND withdrawn = FALSE AND position > $2 \
             ORDER BY position LIMIT $3"
        ),
        &[
            procedure_id.into(),
            after.into(),
            i64::from(limit.clamp(1, MAX_LIMIT)).into(),
        ],
    )
    .await?
    .iter()
    .map(contribution_row)
    .collect()
}

/// The public moderation log of a procedure: every report (its reason only), hiding and
/// unhiding, in the order they happened, and the counts by action and reason.
pub async fn moderation_log(db: &ReadDb, procedure_id: &str) -> Result<Json, DbError> {
    let rows = db
        .fetch_all(
            "SELECT position, contribution_id, action, reason, trigger, at \
             FROM participation_moderation_log WHERE procedure_id = $1 ORDER BY position",
            &[procedure_id.into()],
        )
        .await?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut counts = serde_json::Map::new();
    for row in &rows {
        let action: String = row.get("action")?;
        let reason: Option<String> = row.get("reason")?;
        let key = match (action.as_str(), &reason) {
            ("reported", Some(reason)) => format!("reported:{reason}"),
            _ => action.clone(),
        };
        let n = counts.get(&key).and_then(Json::as_u64).unwrap_or(0);
        counts.insert(key, json!(n + 1));
        entries.push(json!({
            "position": row.get_u64("position")?,
            "contribution_id": row.get::<String>("contribution_id")?,
            "action": action,
            "reason": reason,
            "trigger": row.get::<Option<String>>("trigger")?,
            "at": row.get::<String>("at")?,
        }));
    }
    Ok(json!({ "procedure_id": procedure_id, "counts": counts, "entries": entries }))
}

/// Everything on the public calendar between `from` and `to`, by start: rounds of
/// procedures that are not drafts, and gatherings of announced (and active) procedures
/// only — the ones that take registrations; a gathering of a draft, a cancelled, an
/// evaluated, decided or archived procedure is not to be attended.
pub async fn calendar(
    db: &ReadDb,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Json>, DbError> {
    let params: [Value<'_>; 2] = [from.into(), to.into()];
    let rounds = db
        .fetch_all(
            "SELECT r.round_id, r.procedure_id, r.stage, r.starts_at, r.ends_at, p.title \
             FROM participation_rounds r JOIN participation_procedures p \
             ON p.procedure_id = r.procedure_id \
             WHERE p.status <> 'draft' AND r.starts_at <= $2 AND r.ends_at >= $1",
            &params,
        )
        .await?;
    let gatherings = db
        .fetch_all(
            "SELECT g.gathering_id, g.procedure_id, g.kind, g.title, g.starts_at, g.ends_at, \
             g.capacity, g.confirmed, g.waiting \
             FROM participation_gatherings g JOIN participation_procedures p \
             ON p.procedure_id = g.procedure_id \
             WHERE p.status = 'announced' AND g.starts_at <= $2 AND g.ends_at >= $1",
            &params,
        )
        .await?;
    let mut items: Vec<(String, Json)> = Vec::new();
    for row in &rounds {
        let starts_at: String = row.get("starts_at")?;
        items.push((
            starts_at.clone(),
            json!({
                "kind": "round",
                "id": row.get::<String>("round_id")?,
                "procedure_id": row.get::<String>("procedure_id")?,
                "title": row.get::<String>("title")?,
                "stage": row.get::<Option<String>>("stage")?,
                "starts_at": starts_at,
                "ends_at": row.get::<String>("ends_at")?,
            }),
        ));
    }
    for row in &gatherings {
        let starts_at: String = row.get("starts_at")?;
        items.push((
            starts_at.clone(),
            json!({
                "kind": row.get::<String>("kind")?,
                "id": row.get::<String>("gathering_id")?,
                "procedure_id": row.get::<String>("procedure_id")?,
                "title": row.get::<String>("title")?,
                "starts_at": starts_at,
                "ends_at": row.get::<String>("ends_at")?,
                "capacity": row.get::<i64>("capacity")?,
                "confirmed": row.get::<i64>("confirmed")?,
                "waiting": row.get::<i64>("waiting")?,
            }),
        ));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(items.into_iter().map(|(_, item)| item).collect())
}

/// The moderation queue: reported or hidden contributions of the given procedures and of
/// every procedure of the given authorities, the most reported first.
pub async fn moderation_queue(
    db: &ReadDb,
    procedure_ids: &[String],
    authorities: &[String],
    limit: u32,
) -> Result<Vec<ContributionRow>, DbError> {
    if procedure_ids.is_empty() && authorities.is_empty() {
        return Ok(Vec::new());
    }
    let mut params: Vec<Value<'_>> = Vec::new();
    let mut scopes = Vec::new();
    if !procedure_ids.is_empty() {
        let list = crate::db::placeholders(params.len() + 1, procedure_ids.len());
        params.extend(procedure_ids.iter().map(|id| Value::from(id.as_str())));
        scopes.push(format!("procedure_id IN ({list})"));
    }
    if !authorities.is_empty() {
        let list = crate::db::placeholders(params.len() + 1, authorities.len());
        params.extend(authorities.iter().map(|a| Value::from(a.as_str())));
        scopes.push(format!(
            "procedure_id IN (SELECT procedure_id FROM participation_procedures \
             WHERE authority IN ({list}))"
        ));
    }
    params.push(i64::from(limit.clamp(1, MAX_LIMIT)).into());
    let n = params.len();
    db.fetch_all(
        &format!(
            "SELECT {CONTRIBUTION_COLUMNS} FROM participation_contributions \
             WHERE ({}) AND (reports > 0 OR hidden = TRUE) \
             ORDER BY reports DESC, position LIMIT ${n}",
            scopes.join(" OR ")
        ),
        &params,
    )
    .await?
    .iter()
    .map(contribution_row)
    .collect()
}

/// The chosen options of every survey answer of a procedure that counts — neither hidden
/// nor withdrawn —, in the order submitted: what the survey's results are tallied from.
pub async fn survey_choices(db: &ReadDb, procedure_id: &str) -> Result<Vec<Json>, DbError> {
    db.fetch_all(
        "SELECT choices FROM participation_contributions \
         WHERE procedure_id = $1 AND kind = 'survey_answer' AND hidden = FALSE \
         AND withdrawn = FALSE ORDER BY position",
        &[procedure_id.into()],
    )
    .await?
    .iter()
    .map(|row| Ok(json_column(row, "choices")?.unwrap_or_else(|| json!({}))))
    .collect()
}

/// How the statements of a procedure that were not withdrawn were weighed: the number per
/// result (`considered`, `partly_considered`, `not_considered`, `not_weighed`).
pub async fn weighing_counts(db: &ReadDb, procedure_id: &str) -> Result<Json, DbError> {
    let rows = db
        .fetch_all(
            "SELECT weighing, COUNT(*) AS n FROM participation_contributions \
             WHERE procedure_id = $1 AND kind = 'statement' AND withdrawn = FALSE \
             GROUP BY weighing",
            &[procedure_id.into()],
        )
        .await?;
    let mut counts = serde_json::Map::new();
    for key in [
        "considered",
        "partly_considered",
        "not_considered",
        "not_weighed",
    ] {
        counts.insert(key.into(), json!(0));
    }
    for row in &rows {
        let key = row
            .get::<Option<String>>("weighing")?
            .unwrap_or_else(|| "not_weighed".into());
        counts.insert(key, json!(row.get::<i64>("n")?));
    }
    Ok(Json::Object(counts))
}

/// A gathering as public JSON.
pub async fn gathering(db: &ReadDb, id: &str) -> Result<Option<Json>, DbError> {
    db.fetch_optional(
        "SELECT gathering_id, procedure_id, kind, title, starts_at, ends_at, capacity, \
         confirmed, waiting FROM participation_gatherings WHERE gathering_id = $1",
        &[id.into()],
    )
    .await?
    .map(|row| {
        Ok(json!({
            "id": row.get::<String>("gathering_id")?,
            "procedure_id": row.get::<String>("procedure_id")?,
            "kind": row.get::<String>("kind")?,
            "title": row.get::<String>("title")?,
            "starts_at": row.get::<String>("starts_at")?,
            "ends_at": row.get::<String>("ends_at")?,
            "capacity": row.get::<i64>("capacity")?,
            "confirmed": row.get::<i64>("confirmed")?,
            "waiting": row.get::<i64>("waiting")?,
        }))
    })
    .transpose()
}

/// A registration: its gathering, registrant (pseudonymous id) and place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRow {
    pub registration_id: String,
    pub gathering_id: String,
    pub registrant: String,
    pub place: String,
}

/// One registration.
pub async fn registration(db: &ReadDb, id: &str) -> Result<Option<RegistrationRow>, DbError> {
    db.fetch_optional(
        "SELECT registration_id, gathering_id, registrant, place \
         FROM participation_registrations WHERE registration_id = $1",
        &[id.into()],
    )
    .await?
    .map(|row| {
        Ok(RegistrationRow {
            registration_id: row.get("registration_id")?,
            gathering_id: row.get("gathering_id")?,
            registrant: row.get("registrant")?,
            place: row.get("place")?,
        })
    })
    .transpose()
}

/// The contributions of `author` (a participant id), in the order submitted: for the
/// author's access export (Art. 15 GDPR).
pub async fn contributions_of(db: &ReadDb, author: &str) -> Result<Vec<ContributionRow>, DbError> {
    db.fetch_all(
        &format!(
            "SELECT {CONTRIBUTION_COLUMNS} FROM participation_contributions \
             WHERE author = $1 ORDER BY position"
        ),
        &[author.into()],
    )
    .await?
    .iter()
    .map(contribution_row)
    .collect()
}

/// The registrations of `registrant` (a participant id): for the registrant's access
/// export (Art. 15 GDPR).
pub async fn registrations_of(
    db: &ReadDb,
    registrant: &str,
) -> Result<Vec<RegistrationRow>, DbError> {
    db.fetch_all(
        "SELECT registration_id, gathering_id, registrant, place \
         FROM participation_registrations WHERE registrant = $1 ORDER BY registration_id",
        &[registrant.into()],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(RegistrationRow {
            registration_id: row.get("registration_id")?,
            gathering_id: row.get("gathering_id")?,
            registrant: row.get("registrant")?,
            place: row.get("place")?,
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_text_queries_are_split_into_words() {
        assert_eq!(
            words("Bebauungsplan  Johannstadt!"),
            vec!["bebauungsplan", "johannstadt"]
        );
        assert_eq!(words("\"x\" OR y*"), vec!["x", "or", "y"]);
        assert!(words("!!! ---").is_empty());
        assert_eq!(words("Straßenbahn Löbtau"), vec!["straßenbahn", "löbtau"]);
    }

    #[test]
    fn announced_procedures_show_as_active_once_open() {
        let row = ProcedureRow {
            procedure_id: "p".into(),
            authority: "a".into(),
            format: "dialog".into(),
            title: "t".into(),
            topics: json!([]),
            region: "14612000".into(),
            status: "announced".into(),
            stage: None,
            geometry: None,
            accepts_late: false,
            report_threshold: 3,
            survey: None,
            drafted_at: "2026-03-01T00:00:00.000000Z".into(),
            announced_at: None,
            opens_at: Some("2026-04-01T00:00:00.000000Z".into()),
            closes_at: None,
            decided_at: None,
            decision: None,
            cancelled_at: None,
            cancel_reason: None,
            contributions: 0,
            last_position: 1,
        };
        assert_eq!(
            row.public_status("2026-03-31T23:59:59.999999Z"),
            "announced"
        );
        assert_eq!(row.public_status("2026-04-01T00:00:00.000000Z"), "active");
    }
}
