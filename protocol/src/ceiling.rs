//! The crypto ceiling of ingress: how many signed, enveloped reports a second this machine's
//! cores can verify and open when they do nothing else. `scripts/bench-ingress` prints it beside
//! the rate the service achieved, from the same build (issue 11).
//!
//! Each report costs what the service spends on it: one SM2 verify of its signature through the
//! device key's table (as `VerifyTables` does once a key has been seen) and one GM/T 0010
//! envelope open (`from_der` decrypt). Every thread loops on its own report for the budget, all
//! threads at once, so the rate is what the cores deliver together, not one core times n.

use std::time::{Duration, Instant};

use rand::RngExt;

use crate::envelope::{self, EnvelopeOpener};
use crate::keys;
use crate::sm2sig::Sm2Signer;
use crate::verify_tables::{self, VerifyTables};
use crate::{EnvelopeError, KeyError, SignatureError};

/// Bytes signed per report: the size of a deposit request's signed bytes (request-1's 1,252).
const SIGNED_BYTES: usize = 1_252;
/// Bytes sealed per report: a document record (record-1's 137).
const RECORD_BYTES: usize = 137;

#[derive(Debug, thiserror::Error)]
pub enum CeilingError {
    #[error("key: {0}")]
    Key(#[from] KeyError),
    #[error("envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("a measuring thread panicked")]
    Thread,
}

/// What the cores did in the budget.
#[derive(Debug, Clone, Copy)]
pub struct CryptoCeiling {
    pub threads: usize,
    /// Mean wall time of one tabled verify, per thread.
    pub verify_us: f64,
    /// Mean wall time of one envelope open, per thread.
    pub open_us: f64,
    /// Reports (verify + open) all threads completed per second of wall time.
    pub reports_per_second: f64,
}

/// Measures on `threads` threads at once for about `budget`.
pub fn measure(threads: usize, budget: Duration) -> Result<CryptoCeiling, CeilingError> {
    let threads = threads.max(1);
    let mut rng = rand::rng();
    let cabinet = keys::generate_secret_key(&mut rng);
    let platform = keys::generate_secret_key(&mut rng);
    let certificate = keys::self_signed_certificate(
        &platform,
        "CN=ceiling",
        Duration::from_secs(3600),
        &mut rng,
    )?;
    let signer = Sm2Signer::new(&cabinet);
    let message: Vec<u8> = (0..SIGNED_BYTES).map(|_| rng.random::<u8>()).collect();
    let signature = signer.sign(&message)?;
    let record: Vec<u8> = (0..RECORD_BYTES).map(|_| rng.random::<u8>()).collect();
    let sealed = envelope::seal(&record, &certificate, &mut rng)?;
    let opener = EnvelopeOpener::with_certificate(&platform, &certificate)?;
    let tables = VerifyTables::default();
    let verifier = signer.verifier();
    // Seen often enough to be tabled, as a registered cabinet's key is after its first reports.
    for _ in 0..verify_tables::TABLE_AFTER_SIGHTINGS {
        tables.verify(&verifier, &message, &signature)?;
    }
    let job = Job {
        message: &message,
        signature: &signature,
        sealed: &sealed,
        opener: &opener,
        tables: &tables,
        verifier: &verifier,
    };
    let started = Instant::now();
    let tallies: Vec<Result<Tally, CeilingError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| job.run(budget)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(CeilingError::Thread)))
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let mut total = Tally::default();
    for tally in tallies {
        let tally = tally?;
        total.reports += tally.reports;
        total.verify += tally.verify;
        total.open += tally.open;
    }
    let reports = total.reports.max(1) as f64;
    Ok(CryptoCeiling {
        threads,
        verify_us: total.verify.as_secs_f64() * 1e6 / reports,
        open_us: total.open.as_secs_f64() * 1e6 / reports,
        reports_per_second: total.reports as f64 / wall,
    })
}

struct Job<'a> {
    message: &'a [u8],
    signature: &'a [u8],
    sealed: &'a [u8],
    opener: &'a EnvelopeOpener,
    tables: &'a VerifyTables,
    verifier: &'a crate::Sm2Verifier,
}

#[derive(Default)]
struct Tally {
    reports: u64,
    verify: Duration,
    open: Duration,
}

impl Job<'_> {
    fn run(&self, budget: Duration) -> Result<Tally, CeilingError> {
        let started = Instant::now();
        let mut tally = Tally::default();
        loop {
            let before = Instant::now();
            self.tables
                .verify(self.verifier, self.message, self.signature)?;
            let verified = Instant::now();
            std::hint::black_box(self.opener.open(self.sealed)?);
            tally.verify += verified - before;
            tally.open += verified.elapsed();
            tally.reports += 1;
            if started.elapsed() >= budget {
                return Ok(tally);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_verifies_and_opens() {
        let ceiling = measure(2, Duration::ZERO).expect("measured");
        assert_eq!(ceiling.threads, 2);
        assert!(ceiling.reports_per_second > 0.0);
        assert!(ceiling.verify_us > 0.0 && ceiling.open_us > 0.0);
    }
}
