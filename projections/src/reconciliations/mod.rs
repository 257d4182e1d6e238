//! The `reconciliations` projection (SPEC §6; docs/reconciliation.md): the nightly
//! reconciliation's results, per cabinet and business date, built from the Reconciliation
//! aggregate's events (`BatchDiffed`, `RepairsRecorded`) like every view: generations, rebuild,
//! positions.
//!
//! - [`rows`]: the view's tables and the rows a reconciliation makes: the aggregate itself with
//!   its summary (`view_reconciliations`), and, once its repairs are recorded, one row per
//!   deviation in the diff's order (`view_reconciliation_deviations`);
//! - [`read`]: the typed readers of the results, of the inventory gaps the access records show,
//!   and of the batches with deviations left for people (alerts).

pub mod read;
pub(crate) mod rows;
