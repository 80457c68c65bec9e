//! The draft sweeper: drafts expire 30 days after their last edit, announced 7 days
//! before, without anybody asking.
//!
//! Every interval it records `DraftExpiryAnnounced` for the drafts whose notice is due and
//! lets the drafts whose announced expiry has come expire: their personal data (form data,
//! attachments' file names and content) is shredded — the application's key destroyed and
//! its attachments' sealed content deleted — and `ApplicationExpired` recorded. The rules
//! are the decider's ([`ApplicationCommand::AnnounceExpiry`], [`ApplicationCommand::Expire`]);
//! a draft edited or submitted meanwhile is refused by them and left alone. One process per
//! database sweeps (a lease), and every step is safe to repeat.
//!
//! The jobs' flags also set the retention period of closed applications (see
//! `retention`), since `serve` hands a module its flags through its jobs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, FromArgMatches};

use amtsbuch_domain::applications::application::{
    self as lifecycle, ApplicationCommand, ApplicationState, DRAFT_LIFETIME_DAYS,
    EXPIRY_NOTICE_DAYS,
};
use amtsbuch_infra::lease::Lease;
use amtsbuch_projections::applications::{drafts, drafts_edited_by};
use amtsbuch_projections::db::ReadDb;

use super::retention::{set_retention_period, shred_application, DEFAULT_RETENTION_DAYS};
use crate::command::{self, execute, read_models_current, refused, Meta};
use crate::module::Jobs;
use crate::problem::Problem;
use crate::AppState;

/// The sweeper as a background job of `serve`, with the module's flags.
pub const JOBS: Jobs = Jobs {
    args: ApplicationArgs::augment_args,
    spawn: spawn_from_args,
};

/// The flags of `serve` for applications.
#[derive(Debug, Args)]
pub struct ApplicationArgs {
    /// How long a closed or withdrawn application is kept after it ended, in days: until
    /// then its applicant cannot be erased (a retention hold). Default six years.
    #[arg(long, env = "AMTSBUCH_APPLICATION_RETENTION_DAYS", default_value_t = DEFAULT_RETENTION_DAYS)]
    application_retention_days: i64,
    /// How often drafts due are announced to expire, and expired.
    #[arg(
        long,
        env = "AMTSBUCH_DRAFT_SWEEP_INTERVAL_SECS",
        default_value_t = 300
    )]
    draft_sweep_interval_secs: u64,
}

/// The most drafts one sweep handles; the rest wait for the next.
const BATCH: u32 = 500;

fn spawn_from_args(
    state: &AppState,
    args: &clap::ArgMatches,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let args = ApplicationArgs::from_arg_matches(args)?;
    set_retention_period(chrono::Duration::days(
        args.application_retention_days.max(0),
    ));
    Ok(vec![spawn(
        state.clone(),
        Duration::from_secs(args.draft_sweep_interval_secs.max(1)),
    )])
}

/// Start sweeping drafts every `every`; the task ends with the process.
pub fn spawn(state: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let lease =
                match Lease::acquire(&state.store, "amtsbuch_applications_draft_sweeper", every)
                    .await
                {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "draft sweeper cannot take its lease; retrying");
                        tokio::time::sleep(every).await;
                        continue;
                    }
                };
            tracing::info!("this process runs the draft sweeper");
            while lease.is_held() {
                if let Err(e) = sweep(&state, Utc::now()).await {
                    tracing::warn!(status = e.status.as_u16(), detail = %e.detail, "draft sweep failed; retrying at the next interval");
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = lease.lost() => {}
                }
            }
            tracing::warn!("draft sweeper lost its lease; standing by");
        }
    })
}

/// One sweep at the instant `now`: how many drafts were announced to expire, and how many
/// expired.
pub async fn sweep(state: &AppState, now: DateTime<Utc>) -> Result<(usize, usize), Problem> {
    if state.sealer.is_none() {
        return Ok((0, 0));
    }
    read_models_current(state, &[drafts::NAME]).await?;
    let db = ReadDb::new(&state.store);
    let notice_from = now - chrono::Duration::days(DRAFT_LIFETIME_DAYS - EXPIRY_NOTICE_DAYS);
    let due = drafts_edited_by(&db, notice_from, BATCH)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let meta = Meta::system("draft-sweeper");
    let (mut announced, mut expired) = (0, 0);
    for draft in due {
        let id = draft.application_id;
        let stream = id.stream_id();
        let expires_at = draft.last_edit_at + chrono::Duration::days(DRAFT_LIFETIME_DAYS);
        if now >= expires_at && draft.announced_expiry_at == Some(expires_at) {
            let command = ApplicationCommand::Expire { at: now };
            // Decided first, so that a draft edited meanwhile is not shredded.
            let (current, _) = command::current::<ApplicationState>(state, &stream).await?;
            match lifecycle::decide(&command, &current) {
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(application = %id, reason = %e, "draft not expired");
                    continue;
                }
            }
            // Shredded before the expiry is recorded: a sweep interrupted in between
            // finds the draft again and completes it.
            shred_application(state, id).await?;
            match execute::<ApplicationState>(
                state,
                &stream,
                &command,
                |e| refused("application-refused", e),
                &meta,
            )
            .await
            {
                Ok(d) if d.outcome.is_some() => expired += 1,
                Ok(_) => {}
                Err(p) if p.kind == "application-refused" => {}
                Err(p) => return Err(p),
            }
        } else if draft.announced_expiry_at != Some(expires_at) {
            let command = ApplicationCommand::AnnounceExpiry { at: now };
            match execute::<ApplicationState>(
                state,
                &stream,
                &command,
                |e| refused("application-refused", e),
                &meta,
            )
            .await
            {
                Ok(d) if d.outcome.is_some() => announced += 1,
                Ok(_) => {}
                // Edited or submitted meanwhile: not due any more.
                Err(p) if p.kind == "application-refused" => {}
                Err(p) => return Err(p),
            }
        }
    }
    Ok((announced, expired))
}
