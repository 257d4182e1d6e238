//! docs/state-machines.md and the code's transition tables must say the same thing.

use std::path::Path;

use custody_domain::transitions::triples;
use custody_domain::{
    cabinet, consent_letter, document, person, reconciliation, reminder, travel_approval,
};

/// The (event, from, to) triples of the table under `## {section}` in the doc.
fn documented(section: &str) -> Vec<(String, String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/state-machines.md");
    let doc = std::fs::read_to_string(&path).expect("docs/state-machines.md");
    let heading = format!("## {section}");
    let body = doc
        .split("\n## ")
        .find(|part| format!("## {part}").starts_with(&heading) || part.starts_with(&heading))
        .unwrap_or_else(|| panic!("no section {heading}"));
    let mut out = Vec::new();
    for line in body.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() != 3 || cells[0] == "event" || cells[0].starts_with("---") {
            continue;
        }
        for from in cells[1].split(',').map(str::trim) {
            let to = if cells[2] == "(same)" { from } else { cells[2] };
            out.push((cells[0].to_string(), from.to_string(), to.to_string()));
        }
    }
    out.sort();
    out
}

#[test]
fn document_table_matches_the_doc() {
    assert_eq!(triples(document::TRANSITIONS), documented("Document"));
}

#[test]
fn person_table_matches_the_doc() {
    assert_eq!(triples(person::TRANSITIONS), documented("Person"));
}

#[test]
fn cabinet_table_matches_the_doc() {
    assert_eq!(triples(cabinet::TRANSITIONS), documented("Cabinet"));
}

#[test]
fn travel_approval_table_matches_the_doc() {
    assert_eq!(
        triples(travel_approval::TRANSITIONS),
        documented("Travel approval")
    );
}

#[test]
fn consent_letter_table_matches_the_doc() {
    assert_eq!(
        triples(consent_letter::TRANSITIONS),
        documented("Consent letter")
    );
}

#[test]
fn reminder_table_matches_the_doc() {
    assert_eq!(triples(reminder::TRANSITIONS), documented("Reminder"));
}

#[test]
fn reconciliation_table_matches_the_doc() {
    assert_eq!(
        triples(reconciliation::TRANSITIONS),
        documented("Reconciliation")
    );
}

#[test]
fn the_doc_is_not_empty() {
    // Guards the parser: a doc it cannot read must not pass as "no transitions".
    assert!(documented("Document").len() > 20);
    assert!(documented("Person").len() >= 10);
    assert!(!documented("Travel approval").is_empty());
    assert!(!documented("Consent letter").is_empty());
    assert_eq!(documented("Reminder").len(), 5);
    assert_eq!(documented("Reconciliation").len(), 2);
}
