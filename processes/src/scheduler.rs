//! The return-date scheduler (SPEC §4): documents in `Withdrawn` whose planned return date has
//! passed get `ReturnDateReached`.
//!
//! It reads the documents the reminder process keeps (state, planned return date, and the
//! sequence of the withdrawal that put them in `Withdrawn`), never the read views, and lets the
//! aggregate judge: a document deposited meanwhile is refused, harmlessly. Each mark is keyed
//! `rdr:<zjbs>:<planned return>:<sequence of the withdrawal>`, so two passes, or two service
//! instances, give one event, and a later lend with the same return date is still marked.

use custody_commands::{CommandError, Commands, Outcome};
use custody_domain::document::{Document, DocumentCommand};
use custody_domain::reminder::china_date;
use custody_domain::values::Timestamp;
use sqlx::{AnyPool, Row};

use crate::consumer::platform_metadata;
use crate::ProcessError;

/// The outcome of one return-date pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReturnDatePass {
    /// Documents marked `ReturnDateReached` by this pass.
    pub marked: usize,
    /// Documents an earlier pass had already marked (the process had not seen it yet).
    pub duplicates: usize,
    /// Documents the aggregate refused (returned or moved meanwhile).
    pub refused: usize,
}

/// Marks every document overdue on the China-time day of `now`.
pub(crate) async fn mark_due(
    commands: &Commands,
    pool: &AnyPool,
    now: Timestamp,
) -> Result<ReturnDatePass, ProcessError> {
    let today = china_date(now);
    // ISO dates compare as text: `planned_return < today` is "at least one overdue day"
    // (`custody_domain::reminder::overdue_days`), which the aggregate checks again.
    let rows = sqlx::query(
        "SELECT zjbs, state_since, planned_return FROM process_documents \
         WHERE state = 'Withdrawn' AND planned_return IS NOT NULL AND planned_return < $1 \
         ORDER BY zjbs",
    )
    .bind(today.to_string())
    .fetch_all(pool)
    .await?;
    let mut pass = ReturnDatePass::default();
    for row in rows {
        let zjbs: String = row.try_get("zjbs")?;
        let since: i64 = row.try_get("state_since")?;
        let planned: String = row.try_get("planned_return")?;
        let key = format!("rdr:{zjbs}:{planned}:{since}");
        match commands
            .execute::<Document>(
                &zjbs,
                DocumentCommand::MarkReturnDateReached { today },
                platform_metadata(key, None),
            )
            .await
        {
            Ok(Outcome::Appended) => pass.marked += 1,
            Ok(Outcome::Duplicate(_)) => pass.duplicates += 1,
            Err(CommandError::Domain(error)) => {
                tracing::debug!(document = zjbs, %error, "return date not marked");
                pass.refused += 1;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(pass)
}
