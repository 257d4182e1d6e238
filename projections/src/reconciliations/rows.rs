//! The rows of the `reconciliations` view.

use custody_domain::reconciliation::{Reconciliation, ReconciliationState};
use custody_domain::transitions::Named;

use crate::bulk::{OnConflict, Row, Table};
use crate::views::ViewAggregate;

pub(crate) const RECONCILIATIONS: Table = Table {
    name: "view_reconciliations",
    columns: &[
        "generation",
        "id",
        "version",
        "updated_at",
        "aggregate",
        "state",
        "sbxlh",
        "business_date",
        "dzywlsh",
        "unit",
        "received_at",
        "as_of",
        "documents_reported",
        "operations_reported",
        "state_deviations",
        "unrepaired",
        "log_deviations",
    ],
    key: &["generation", "id"],
    on_conflict: OnConflict::Update,
};

pub(crate) const DEVIATIONS: Table = Table {
    name: "view_reconciliation_deviations",
    columns: &[
        "generation",
        "sbxlh",
        "business_date",
        "position",
        "kind",
        "zjbs",
        "holder_rybs",
        "holder_name",
        "unit",
        "cabinet_state",
        "zjgxlh",
        "drawer_row",
        "drawer_col",
        "platform_state",
        "platform_sbxlh",
        "reason",
        "repaired",
        "ywlsh",
        "side",
        "operation",
        "operated_at",
        "note",
    ],
    key: &["generation", "sbxlh", "business_date", "position"],
    // Written once, when the repairs are recorded: the same rows every time.
    on_conflict: OnConflict::Nothing,
};

/// The snake-case name a serde enum has on the wire (`in_cabinet`, `out_on_platform`, ...).
fn snake(value: &impl serde::Serialize) -> Option<String> {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
}

/// How many state deviations were not repaired (only a planned repair can be).
fn unrepaired(reconciliation: &Reconciliation) -> i64 {
    reconciliation
        .diff
        .iter()
        .flat_map(|diff| &diff.state_deviations)
        .filter(|d| !reconciliation.repaired(&d.document))
        .count() as i64
}

impl ViewAggregate for Reconciliation {
    const TABLE: &'static Table = &RECONCILIATIONS;

    fn state_name(&self) -> &'static str {
        self.state.name()
    }

    fn columns(&self) -> Row {
        let diff = self.diff.as_ref();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        vec![
            diff.map(|d| d.device.to_string()).into(),
            diff.map(|d| d.business_date.to_string()).into(),
            diff.map(|d| d.serial.to_string()).into(),
            diff.map(|d| d.unit.to_string()).into(),
            diff.map(|d| d.received_at.to_rfc3339()).into(),
            diff.map(|d| d.as_of.to_rfc3339()).into(),
            diff.map(|d| i64::from(d.documents_reported)).into(),
            diff.map(|d| i64::from(d.operations_reported)).into(),
            diff.map(|d| count(d.state_deviations.len())).into(),
            diff.map(|_| unrepaired(self)).into(),
            diff.map(|d| count(d.log_deviations.len())).into(),
        ]
    }
}

/// The deviation rows of a reconciliation whose repairs are recorded (none before: whether a
/// deviation was repaired is part of its row).
pub(crate) fn deviation_rows(generation: i64, reconciliation: &Reconciliation) -> Vec<Row> {
    let (Some(diff), ReconciliationState::Reconciled) =
        (&reconciliation.diff, reconciliation.state)
    else {
        return Vec::new();
    };
    let date = diff.business_date.to_string();
    let sbxlh = diff.device.to_string();
    let mut rows: Vec<Row> = Vec::new();
    let mut position = 0i64;
    let mut next = || {
        position += 1;
        position - 1
    };
    for d in &diff.state_deviations {
        let note = reconciliation
            .outcome(&d.document)
            .and_then(|o| o.note.clone());
        let drawer = d.cabinet_drawer.as_ref();
        rows.push(vec![
            generation.into(),
            sbxlh.as_str().into(),
            date.as_str().into(),
            next().into(),
            "state".into(),
            d.document.as_str().into(),
            d.holder.as_ref().map(|h| h.to_string()).into(),
            d.holder_name.clone().into(),
            d.unit.as_ref().map(|u| u.to_string()).into(),
            snake(&d.cabinet_state).into(),
            drawer.map(|x| x.body.clone()).into(),
            drawer.map(|x| i64::from(x.row)).into(),
            drawer.map(|x| i64::from(x.column)).into(),
            d.platform_state.name().into(),
            d.platform_location
                .as_ref()
                .map(|l| l.device.to_string())
                .into(),
            snake(&d.reason).into(),
            i64::from(reconciliation.repaired(&d.document)).into(),
            None::<String>.into(),
            None::<String>.into(),
            None::<String>.into(),
            None::<String>.into(),
            note.into(),
        ]);
    }
    for d in &diff.log_deviations {
        rows.push(vec![
            generation.into(),
            sbxlh.as_str().into(),
            date.as_str().into(),
            next().into(),
            "log".into(),
            d.document.as_ref().map(|x| x.to_string()).into(),
            None::<String>.into(),
            None::<String>.into(),
            None::<String>.into(),
            None::<String>.into(),
            None::<String>.into(),
            None::<i64>.into(),
            None::<i64>.into(),
            None::<String>.into(),
            None::<String>.into(),
            None::<String>.into(),
            None::<i64>.into(),
            d.serial.as_str().into(),
            snake(&d.side).into(),
            d.operation.as_str().into(),
            d.operated_at.map(|t| t.to_rfc3339()).into(),
            d.note.clone().into(),
        ]);
    }
    rows
}
