//! Idempotency-key namespaces of the list feeds: record ids of different feeds may coincide.

pub fn crossing(jlbh: &str) -> String {
    format!("crjjl:{jlbh}")
}

pub fn issuance(jlbh: &str) -> String {
    format!("bzjg:{jlbh}")
}

/// A person's entry in a filing list (`sjsb-bbxx`).
pub fn filing_prefix(bbywlsh: &str) -> String {
    format!("bbxx:{bbywlsh}:")
}

/// The exit-entry administration's answer for a person of a filing list (`sjts-bbjg`).
pub fn answer_prefix(bbywlsh: &str) -> String {
    format!("bbjg:{bbywlsh}:")
}

/// The automatic repair of one document by a reconciliation batch.
pub fn repair(dzywlsh: &str, zjbs: &str) -> String {
    format!("dzsj:{dzywlsh}:{zjbs}")
}

/// The outcomes of a reconciliation batch's repairs.
pub fn repairs(dzywlsh: &str) -> String {
    format!("dzsj:{dzywlsh}:repairs")
}
