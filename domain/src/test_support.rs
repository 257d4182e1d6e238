//! Fixtures the domain's own unit tests share (compiled for tests only).

use crate::values::{Drawer, Location};

/// The drawer row 1, column 1 of the simulated cabinet SIM-00000001 of one unit.
pub(crate) fn location() -> Location {
    Location {
        unit: "91350100M000100Y43".parse().expect("credit code"),
        device: "SIM-00000001".parse().expect("device"),
        drawer: Drawer {
            body: "SIM-00000001-G1".into(),
            row: 1,
            column: 1,
        },
    }
}
