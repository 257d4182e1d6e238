//! The cost of sealing personal data (docs/personal-data.md): what each deposit adds to the
//! write path, and each read of a sealed field to the read path.
//!
//! ```text
//! cargo bench -p custody-vault
//! ```
//!
//! Each operation runs for half a second after one warm-up call and prints µs per call. Under
//! `cargo test --benches` each runs once, as a smoke test.

use std::time::{Duration, Instant};

use custody_vault::{open, seal, DataKey, KeyWrap, MasterKeyFile};

/// A deposit's record as the event holds it (JSON), about the size of the real one.
const RECORD: &str = r#"{"document_type":"414","number":"E12345678","citizen_id":"11010519491231002X","chinese_name":"张三","latin_name":"ZHANG SAN","birth_date":"1949-12-31","sex":"male","valid_until":"2034-12-31"}"#;

fn time(name: &str, budget: Duration, mut f: impl FnMut()) {
    f();
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < budget {
        f();
        calls += 1;
    }
    let per_call = started.elapsed().as_secs_f64() * 1e6 / calls.max(1) as f64;
    println!("{name:<50} {per_call:>9.2} µs");
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let budget = if bench {
        Duration::from_millis(500)
    } else {
        Duration::ZERO
    };
    let key = DataKey::generate();
    let aad = b"Document/0123456789abcdef/Deposited/record";
    let sealed = seal(&key, aad, RECORD.as_bytes());
    time(
        &format!("seal a record ({} bytes)", RECORD.len()),
        budget,
        || {
            std::hint::black_box(seal(&key, aad, RECORD.as_bytes()));
        },
    );
    time("open it", budget, || {
        std::hint::black_box(open(&key, aad, &sealed).expect("opens"));
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let master =
        MasterKeyFile::load_or_generate(&dir.path().join("master.key")).expect("master key");
    let wrapped = master.wrap(&key);
    time("wrap a data key (a person's first event)", budget, || {
        std::hint::black_box(master.wrap(&key));
    });
    time("unwrap a data key (a key not in memory)", budget, || {
        std::hint::black_box(master.unwrap(&wrapped).expect("unwraps"));
    });
    if !bench {
        println!("(check mode: run with `cargo bench -p custody-vault` for the figures)");
    }
}
