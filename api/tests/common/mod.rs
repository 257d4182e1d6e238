//! Starting the `custody` binary in a test and reading its JSON log lines.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;

pub const OPS_TOKEN: &str = "log-test-operator-token-0123456789abcdef";

/// The service's JSON log lines as they come, and the child to stop.
pub struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    _data: tempfile::TempDir,
}

impl Served {
    /// `custody ARGS` on a loopback port of its own, with a temporary data directory (both by
    /// environment, so that a configuration file's values give way to them).
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> Served {
        let data = tempfile::tempdir().expect("temporary data directory");
        let mut child = Command::new(env!("CARGO_BIN_EXE_custody"))
            .args(args)
            .env("CUSTODY_LISTEN", "127.0.0.1:0")
            .env("CUSTODY_DATA_DIR", data.path())
            .env("CUSTODY_OPS_TOKEN", OPS_TOKEN)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start custody serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Served {
            child,
            lines,
            _data: data,
        }
    }

    /// The next log line that parses and satisfies `wanted` (every line must be JSON).
    pub fn line(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("the service logs on");
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            if wanted(&value) {
                return value;
            }
        }
    }
}

impl Served {
    /// Where it serves, from its start line.
    pub fn address(&self) -> String {
        let start = self.line(|v| v["message"] == "custody serving");
        start["address"]
            .as_str()
            .expect("the address it serves on")
            .to_string()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
