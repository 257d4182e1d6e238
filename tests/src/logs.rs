//! Every log line the services of a test run write, checked for personal data as it is written.
//!
//! The harness installs one JSON-format subscriber for the whole test process (the service's
//! own `--log-format json` layout), whose writer looks at each line for a citizen ID number
//! (18 characters with a valid check character) or a document number (a letter and 8 digits,
//! as cabinets and the simulator write them) and keeps the lines that hold one.
//! [`crate::TestApp::stop`] fails the test when any was seen, so every integration test that
//! stops its app checks the logs of the whole run up to then.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use custody_domain::identifiers::CitizenId;

static INSTALL: Once = Once::new();
static LINES: AtomicU64 = AtomicU64::new(0);
static OFFENDING: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs the checking subscriber, once per process (`RUST_LOG`, default `info`).
pub fn capture() {
    INSTALL.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber already installed (a test of its own) keeps its place.
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .with_writer(|| Line(Vec::new()))
            .try_init();
    });
}

/// Log lines written so far in this process.
pub fn lines_seen() -> u64 {
    LINES.load(Ordering::Relaxed)
}

/// The lines seen so far that hold a citizen ID or a document number.
pub fn personal_data_lines() -> Vec<String> {
    OFFENDING.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Whether `text` holds something that looks like a citizen ID or a document number.
pub fn holds_personal_data(text: &str) -> bool {
    let mut rest = text;
    let mut after_dot = false;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let token = &rest[..end];
        // The digits of a decimal fraction are not an identifier.
        if !after_dot && (is_citizen_id(token) || is_document_number(token)) {
            return true;
        }
        after_dot = rest[end..].starts_with('.');
        rest = rest[end..]
            .char_indices()
            .nth(1)
            .map_or("", |(i, _)| &rest[end + i..]);
    }
    false
}

fn is_citizen_id(token: &str) -> bool {
    token.len() == 18 && token[..17].bytes().all(|b| b.is_ascii_digit()) && {
        token.parse::<CitizenId>().is_ok()
    }
}

fn is_document_number(token: &str) -> bool {
    let bytes = token.as_bytes();
    bytes.len() == 9 && bytes[0].is_ascii_uppercase() && bytes[1..].iter().all(u8::is_ascii_digit)
}

/// One event's formatted line, judged when the formatter is done with it.
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        for line in text.lines() {
            LINES.fetch_add(1, Ordering::Relaxed);
            if holds_personal_data(line) {
                OFFENDING
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::holds_personal_data;

    #[test]
    fn citizen_ids_and_document_numbers_are_found_and_look_alikes_are_not() {
        assert!(holds_personal_data(r#"{"gmsfhm":"11010519491231002X"}"#));
        assert!(holds_personal_data("number E12345678 refused"));
        // A wrong check character, a longer digit run, hex, a device serial: not personal data.
        assert!(!holds_personal_data("110105194912310021"));
        assert!(!holds_personal_data("X1234567890123456789012"));
        assert!(!holds_personal_data("9f86d081884c7d659a2feaa0c55ad015"));
        assert!(!holds_personal_data("XJH-Q2555061 processes"));
        assert!(!holds_personal_data(
            r#"{"latency_ms":0.061227000000000004}"#
        ));
        assert!(holds_personal_data("a 11010519491231002X."));
    }
}
