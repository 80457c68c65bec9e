//! The applications read models.
//!
//! - `applications_inbox` (`inbox`): one row per submitted application — never a draft —
//!   with its authority, service, tenant, status, submission instant and the due date of
//!   an open information request: an authority's or Fachverfahren's inbox, filtered and
//!   paged in SQL;
//! - `applications_applicants` (`applicants`): which applications each applicant made,
//!   drafts included, for the Art. 15 access export;
//! - `applications_drafts` (`drafts`): every draft with its last edit and announced expiry,
//!   for the draft sweeper.
//!
//! Nothing here decrypts: events are decoded without a key, and the table holds only ids,
//! applicants' pseudonymous ids, routing labels, statuses, file numbers and instants.

use std::sync::Arc;

use crate::projection::Projection;

pub mod applicants;
pub mod drafts;
pub mod inbox;

pub use applicants::{applications_of, Applicants};
pub use drafts::{drafts_edited_by, DraftRow, Drafts};
pub use inbox::{inbox, Inbox, InboxFilter, InboxRow, InboxScope};

/// The applications projections, which the applications domain module registers.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(Inbox), Arc::new(Applicants), Arc::new(Drafts)]
}
