//! docs/personal-data.md and the table of personal fields (`eventlog/src/personal.rs`) must say
//! the same thing: which field of which event is sealed, under whose key.

use std::path::Path;

use custody_eventlog::personal::{Owner, PERSONAL_FIELDS};

#[test]
fn the_docs_list_exactly_the_personal_fields_of_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/personal-data.md");
    let doc = std::fs::read_to_string(&path).expect("docs/personal-data.md");
    let section = doc
        .split("## Which fields are personal")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a section \"Which fields are personal\"");
    let mut documented: Vec<(String, String, String, String)> = section
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| aggregate"))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            (
                cells[0].clone(),
                cells[1].clone(),
                cells[2].clone(),
                cells[3].clone(),
            )
        })
        .collect();
    let owner = |owner: Owner| match owner {
        Owner::Aggregate => "the person (the aggregate)".to_string(),
        Owner::Field(name) => format!("the event's `{name}`"),
        Owner::RecordHolder => {
            "the record's holder (RYBS of its citizen ID number and Chinese name)".to_string()
        }
    };
    let mut coded: Vec<(String, String, String, String)> = PERSONAL_FIELDS
        .iter()
        .map(|f| {
            (
                f.aggregate_type.to_string(),
                f.event_type.to_string(),
                f.field.to_string(),
                owner(f.owner),
            )
        })
        .collect();
    documented.sort();
    coded.sort();
    assert_eq!(documented, coded);
}
