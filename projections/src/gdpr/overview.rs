//! The processing overview (projection `processing_overview`): the counts behind the
//! Art. 30 GDPR records of processing activities.
//!
//! One row per purpose, data category, recipient, legal basis and kind of processing —
//! a consent given (`consent_given`), a disclosure granted (`disclosure_granted`) or denied
//! (`disclosure_denied`) — with how often it happened and the effective instants of the
//! first and the latest time. A consent counts once in every combination of its scope as
//! given; a disclosure once per requested category. Denials have the legal basis `none`.
//! A consent counts when its `ConsentGiven` is the first event of its stream, and a
//! disclosure when its decision is, which is how the domain's deciders write them.
//!
//! The counts are kept by upserts that add to what is stored. A batch is summed up in
//! memory first, so each row is written once per batch.

use std::collections::{BTreeMap, HashMap};

use amtsbuch_domain::gdpr::consent::ConsentEvent;
use amtsbuch_domain::gdpr::disclosure::{DisclosureEvent, GrantBasis};
use amtsbuch_domain::gdpr::{ConsentId, DataCategory, DisclosureId, PurposeId, RecipientId};
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;
use serde_json::{json, Value as Json};
use sqlx::types::chrono::{DateTime, Utc};

use super::{consent_basis, parsed, ts, unwritable, LegalBasis};
use crate::db::{chunk_sizes, values_list, DbError, ReadDb, ReadTx, Row, Value};
use crate::projection::{read_event, Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "processing_overview";

/// The legal basis recorded for denials.
const NONE: &str = "none";

/// The processing-overview projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessingOverview;

/// What was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProcessingKind {
    ConsentGiven,
    DisclosureGranted,
    DisclosureDenied,
}

impl ProcessingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsentGiven => "consent_given",
            Self::DisclosureGranted => "disclosure_granted",
            Self::DisclosureDenied => "disclosure_denied",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::ConsentGiven,
            Self::DisclosureGranted,
            Self::DisclosureDenied,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// The key of a row, as stored.
type Key = (String, String, String, String, &'static str);

/// A batch's additions to one row.
#[derive(Debug, Clone, Copy)]
struct Tally {
    count: u64,
    first_at: DateTime<Utc>,
    last_at: DateTime<Utc>,
}

impl Tally {
    fn add(&mut self, at: DateTime<Utc>) {
        self.count += 1;
        self.first_at = self.first_at.min(at);
        self.last_at = self.last_at.max(at);
    }
}

/// What one event adds: (key, instant) pairs.
struct Sum {
    tallies: BTreeMap<Key, Tally>,
    /// Legal bases of the consents disclosures of this batch were granted under.
    bases: HashMap<ConsentId, LegalBasis>,
}

impl Sum {
    fn add(&mut self, key: Key, at: DateTime<Utc>) {
        self.tallies
            .entry(key)
            .and_modify(|t| t.add(at))
            .or_insert(Tally {
                count: 1,
                first_at: at,
                last_at: at,
            });
    }

    async fn event(
        &mut self,
        tx: &mut ReadTx,
        event: &RecordedEvent,
        record: &EventRecord,
    ) -> Result<(), ProjectionError> {
        // A consent or disclosure counts at the first event of its stream only.
        if record.stream_version != 1 {
            return Ok(());
        }
        let fail = |reason: String| unwritable(event, reason);
        let consent = |s: &StreamId| ConsentId::from_stream(s).is_some();
        let disclosure = |s: &StreamId| DisclosureId::from_stream(s).is_some();
        if let Some(ConsentEvent::Given(g)) =
            read_event::<ConsentEvent>(NAME, consent, event, record)
        {
            let basis = name_of!(g.legal_basis).map_err(fail)?;
            for purpose in g.scope.purposes() {
                for category in g.scope.categories().iter() {
                    for recipient in g.scope.recipients() {
                        let key = (
                            purpose.as_str().to_owned(),
                            name_of!(category).map_err(fail)?,
                            recipient.as_str().to_owned(),
                            basis.clone(),
                            ProcessingKind::ConsentGiven.as_str(),
                        );
                        self.add(key, g.given_at);
                    }
                }
            }
            return Ok(());
        }
        let Some(d) = read_event::<DisclosureEvent>(NAME, disclosure, event, record) else {
            return Ok(());
        };
        let (purpose, recipient, categories, at, basis, kind) = match &d {
            DisclosureEvent::Granted(g) => {
                let basis = match &g.basis {
                    GrantBasis::Consent { consent_id, .. } => {
                        let known = self.bases.get(consent_id).copied();
                        let basis = match known {
                            Some(b) => b,
                            None => consent_basis(tx, &consent_id.stream_id()).await?,
                        };
                        self.bases.insert(*consent_id, basis);
                        basis.code()
                    }
                    GrantBasis::OtherLegalBasis { legal_basis, .. } => {
                        LegalBasis::Statutory(*legal_basis).code()
                    }
                };
                (
                    &g.purpose,
                    &g.recipient,
                    g.categories,
                    g.at,
                    basis,
                    ProcessingKind::DisclosureGranted,
                )
            }
            DisclosureEvent::Denied(d) => (
                &d.purpose,
                &d.recipient,
                d.categories,
                d.at,
                NONE.to_owned(),
                ProcessingKind::DisclosureDenied,
            ),
        };
        for category in categories.iter() {
            let key = (
                purpose.as_str().to_owned(),
                name_of!(category).map_err(fail)?,
                recipient.as_str().to_owned(),
                basis.clone(),
                kind.as_str(),
            );
            self.add(key, at);
        }
        Ok(())
    }
}

/// Most rows per upsert: 2,048 parameters.
const MAX_ROWS: usize = 256;
const COLUMNS_PER_ROW: usize = 8;
const UPSERT_HEAD: &str = "INSERT INTO gdpr_processing_overview (purpose, category, recipient, \
     legal_basis, kind, count, first_at, last_at) ";
const UPSERT_TAIL: &str = " ON CONFLICT (purpose, category, recipient, legal_basis, kind) \
     DO UPDATE SET count = gdpr_processing_overview.count + EXCLUDED.count, \
     first_at = CASE WHEN EXCLUDED.first_at < gdpr_processing_overview.first_at \
         THEN EXCLUDED.first_at ELSE gdpr_processing_overview.first_at END, \
     last_at = CASE WHEN EXCLUDED.last_at > gdpr_processing_overview.last_at \
         THEN EXCLUDED.last_at ELSE gdpr_processing_overview.last_at END";

async fn upsert(tx: &mut ReadTx, tallies: &BTreeMap<Key, Tally>) -> Result<(), DbError> {
    let rows: Vec<(&Key, &Tally)> = tallies.iter().collect();
    let mut rest = rows.as_slice();
    for n in chunk_sizes(rows.len(), MAX_ROWS) {
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let sql = format!(
            "{UPSERT_HEAD}{}{UPSERT_TAIL}",
            values_list(COLUMNS_PER_ROW, n)
        );
        let mut params: Vec<Value<'_>> = Vec::with_capacity(n * COLUMNS_PER_ROW);
        for ((purpose, category, recipient, basis, kind), tally) in chunk {
            params.extend([
                purpose.as_str().into(),
                category.as_str().into(),
                recipient.as_str().into(),
                basis.as_str().into(),
                (*kind).into(),
                tally.count.into(),
                tally.first_at.into(),
                tally.last_at.into(),
            ]);
        }
        tx.execute(&sql, &params).await?;
    }
    Ok(())
}

async fn apply_all(
    tx: &mut ReadTx,
    batch: impl Iterator<Item = (&RecordedEvent, &EventRecord)>,
) -> Result<(), ProjectionError> {
    let mut sum = Sum {
        tallies: BTreeMap::new(),
        bases: HashMap::new(),
    };
    for (event, record) in batch {
        sum.event(tx, event, record).await?;
    }
    upsert(tx, &sum.tallies).await?;
    Ok(())
}

impl Projection for ProcessingOverview {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gdpr_processing_overview"]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[ConsentId::CATEGORY, DisclosureId::CATEGORY])
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply_all(tx, std::iter::once((event, record))))
    }

    /// Sums the batch up first and writes each touched row once.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        batch: &'a [(RecordedEvent, EventRecord)],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply_all(tx, batch.iter().map(|(e, r)| (e, r))))
    }
}

/// One row of the overview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverviewRow {
    pub purpose: PurposeId,
    pub category: DataCategory,
    pub recipient: RecipientId,
    /// `None` for denials.
    pub legal_basis: Option<LegalBasis>,
    pub kind: ProcessingKind,
    pub count: u64,
    /// Effective instants of the first and the latest counted event.
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

impl OverviewRow {
    pub fn to_json(&self) -> Json {
        json!({
            "purpose": self.purpose.as_str(),
            "category": to_json!(self.category),
            "recipient": self.recipient.as_str(),
            "legal_basis": self.legal_basis.map_or_else(|| NONE.to_owned(), |b| b.code()),
            "kind": self.kind.as_str(),
            "count": self.count,
            "first_at": ts(&self.first_at),
            "last_at": ts(&self.last_at),
        })
    }
}

fn overview_row(row: &Row) -> Result<OverviewRow, DbError> {
    let basis: String = row.get("legal_basis")?;
    let kind: String = row.get("kind")?;
    Ok(OverviewRow {
        purpose: parsed("purpose", PurposeId::parse(&row.get::<String>("purpose")?))?,
        category: parse_name!(DataCategory, "category", row.get::<String>("category")?)?,
        recipient: parsed(
            "recipient",
            RecipientId::parse(&row.get::<String>("recipient")?),
        )?,
        legal_basis: if basis == NONE {
            None
        } else {
            Some(LegalBasis::parse("legal_basis", &basis)?)
        },
        kind: ProcessingKind::parse(&kind)
            .ok_or_else(|| super::decode_error("kind", format!("{kind:?} is not a kind")))?,
        count: row.get_u64("count")?,
        first_at: row.timestamp("first_at")?,
        last_at: row.timestamp("last_at")?,
    })
}

/// The whole overview, ordered by purpose, category, recipient, legal basis and kind.
pub async fn processing_overview(db: &ReadDb) -> Result<Vec<OverviewRow>, DbError> {
    db.fetch_all(
        "SELECT purpose, category, recipient, legal_basis, kind, count, first_at, last_at \
         FROM gdpr_processing_overview ORDER BY purpose, category, recipient, legal_basis, kind",
        &[],
    )
    .await?
    .iter()
    .map(overview_row)
    .collect()
}
