//! Per-operation timings of the protocol's hot paths (plain `std::time`, no harness).
//!
//! `cargo bench -p custody-protocol` runs each operation for about half a second; under
//! `cargo test --benches` (no `--bench` argument) every operation runs once as a smoke test.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use custody_protocol::envelope::{self, EnvelopeOpener};
use custody_protocol::keys;
use custody_protocol::sm2sig::{Sm2Signer, Sm2Verifier};
use custody_protocol::verify_tables::{self, PointTable, VerifyTables};
use custody_protocol::{Certificate, SignedRequest};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("utf-8 fixture")
}

/// Cores the ingress crypto ceiling is stated for (the development machine's).
const CORES: f64 = 2.0;

/// Runs `operation` repeatedly for `budget` (at least once), prints µs per call and returns it.
fn measure(name: &str, budget: Duration, mut operation: impl FnMut()) -> f64 {
    operation(); // warm-up
    let start = Instant::now();
    let mut iterations = 0u32;
    loop {
        operation();
        iterations += 1;
        if start.elapsed() >= budget {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per_call = elapsed * 1e6 / f64::from(iterations);
    // The count is how many calls fit the budget, not a rate.
    println!("{name:<44} {per_call:>10.1} µs/op  ({iterations} calls in {elapsed:.2} s)");
    per_call
}

fn main() {
    let budget = if std::env::args().any(|arg| arg == "--bench") {
        Duration::from_millis(500)
    } else {
        Duration::ZERO
    };

    let cabinet_key =
        keys::secret_key_from_pkcs8_pem(&fixture_text("cabinet-XJH-Q2555061.key.pem")).unwrap();
    let platform_key =
        keys::secret_key_from_pkcs8_pem(&fixture_text("platform-enc.key.pem")).unwrap();
    let platform_certificate =
        Certificate::from_pem(&fixture_text("platform-enc.cert.pem")).unwrap();

    let signer = Sm2Signer::new(&cabinet_key);
    let verifier: Sm2Verifier = signer.verifier();
    let signed_bytes = fixture("request-1.signed-bytes.bin");
    let signature = fixture("request-1.sig.der");
    let request_json = fixture("request-1.json");
    let record = fixture("record-1.bin");
    let envelope_der = fixture("envelope-1.der");
    let opener = EnvelopeOpener::with_certificate(&platform_key, &platform_certificate).unwrap();
    let mut rng = rand::rng();

    println!(
        "custody-protocol ({} bytes signed, {} byte record)",
        signed_bytes.len(),
        record.len()
    );
    let plain_verify = measure("sm2 verify, plain (request-1 signed bytes)", budget, || {
        verifier
            .verify(black_box(&signed_bytes), black_box(&signature))
            .unwrap();
    });
    let tables = VerifyTables::default();
    // Seen twice: tabled from now on (and the generator's table built).
    for _ in 0..verify_tables::TABLE_AFTER_SIGHTINGS {
        tables.verify(&verifier, &signed_bytes, &signature).unwrap();
    }
    assert_eq!(tables.len(), 1, "the key is tabled");
    let tabled_verify = measure(
        "sm2 verify, tabled (request-1 signed bytes)",
        budget,
        || {
            tables
                .verify(&verifier, black_box(&signed_bytes), black_box(&signature))
                .unwrap();
        },
    );
    let public_key = verifier.public_key();
    measure("sm2 key table build (one device key)", budget, || {
        black_box(PointTable::for_key(black_box(&public_key)));
    });
    measure("sm2 sign (request-1 signed bytes)", budget, || {
        black_box(signer.sign(black_box(&signed_bytes)).unwrap());
    });
    measure("request parse + verify sig, plain", budget, || {
        let parsed = SignedRequest::from_json(black_box(&request_json)).unwrap();
        parsed.verify_sender(&verifier).unwrap();
    });
    measure("request parse + verify sig, tabled", budget, || {
        let parsed = SignedRequest::from_json(black_box(&request_json)).unwrap();
        parsed.verify_sender_tabled(&verifier, &tables).unwrap();
    });
    let old_open = measure(
        "envelope open, from_slice (envelope-1, 137 B)",
        budget,
        || {
            black_box(opener.open_from_slice(black_box(&envelope_der)).unwrap());
        },
    );
    let new_open = measure(
        "envelope open, from_der (envelope-1, 137 B)",
        budget,
        || {
            black_box(opener.open(black_box(&envelope_der)).unwrap());
        },
    );
    measure("envelope seal (137 B record)", budget, || {
        black_box(envelope::seal(black_box(&record), &platform_certificate, &mut rng).unwrap());
    });

    println!(
        "memory: {} bytes per device-key table, {} bytes for the generator's (once); \
         cache capacity {} keys",
        verify_tables::key_table_bytes(),
        verify_tables::generator_table_bytes(),
        tables.capacity()
    );
    let ceiling = |verify: f64, open: f64| CORES * 1e6 / (verify + open);
    println!(
        "crypto ceiling per report (verify + open), {CORES} cores: before {:.0} µs = {:.0} reports/s; \
         now {:.0} µs = {:.0} reports/s",
        plain_verify + old_open,
        ceiling(plain_verify, old_open),
        tabled_verify + new_open,
        ceiling(tabled_verify, new_open),
    );
}
