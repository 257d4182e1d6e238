//! docs/custody.md and the code's custody policy must say the same thing.

use std::path::Path;

use custody_domain::custody::{cases, Whereabouts};
use custody_domain::transitions::Named;

/// The (actor, act, whereabouts, decision) cases of the table under `## The table`.
fn documented() -> Vec<(String, String, String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/custody.md");
    let doc = std::fs::read_to_string(&path).expect("docs/custody.md");
    let body = doc
        .split("\n## ")
        .find(|part| part.starts_with("The table"))
        .expect("a section `## The table`");
    let mut header: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in body.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').to_string())
            .collect();
        if cells[0] == "actor" {
            header = cells;
            continue;
        }
        if cells[0].starts_with("---") {
            continue;
        }
        for (i, decision) in cells.iter().enumerate().skip(2) {
            out.push((
                cells[0].clone(),
                cells[1].clone(),
                header[i].clone(),
                decision.clone(),
            ));
        }
    }
    out
}

#[test]
fn the_policy_matches_the_doc() {
    let code: Vec<(String, String, String, String)> = cases()
        .into_iter()
        .map(|(a, b, c, d)| (a, b, c, d.to_string()))
        .collect();
    let mut documented = documented();
    let mut code_sorted = code.clone();
    documented.sort();
    code_sorted.sort();
    assert_eq!(code_sorted, documented);
    // Every whereabouts is a column of the doc's table.
    assert_eq!(code.len() % Whereabouts::ALL.len(), 0);
}
