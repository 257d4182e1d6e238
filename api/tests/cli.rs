//! The command line: one pair of connection options everywhere, completions and a man page.

use std::process::Command;

fn custody(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(args)
        .output()
        .expect("run custody");
    assert!(
        out.status.success(),
        "custody {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_subcommand_that_calls_the_service_takes_url_and_token() {
    for subcommand in [
        &["projections", "status"][..],
        &["projections", "rebuild"],
        &["audit", "verify"],
        &["audit", "checkpoint"],
        &["audit", "export"],
        &["simulate"],
    ] {
        let mut args = subcommand.to_vec();
        args.push("--help");
        let help = custody(&args);
        assert!(help.contains("--url <URL>"), "{subcommand:?}: {help}");
        assert!(help.contains("--token <"), "{subcommand:?}: {help}");
        assert!(help.contains("CUSTODY_TOKEN"), "{subcommand:?}: {help}");
    }
}

#[test]
fn completions_and_the_man_page() {
    assert!(custody(&["completions", "bash"]).contains("_custody"));
    assert!(custody(&["completions", "zsh"]).contains("#compdef custody"));
    let man = custody(&["man"]);
    assert!(man.contains(".TH custody"), "{man}");
    assert!(man.contains("serve"));
}

/// `custody keys seal-plaintext` on a store with nothing in clear: it opens the store, seals
/// nothing, records nothing, and says so; the store stays usable for a second run.
#[test]
fn seal_plaintext_on_a_store_with_nothing_in_clear_records_nothing() {
    let dir = tempfile::tempdir().expect("data dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_custody"))
            .args(["keys", "seal-plaintext", "--data-dir", data_dir])
            .output()
            .expect("run custody");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("nothing resealed or recorded"), "{stderr}");
    }
    assert!(dir.path().join("custody.db").is_file());
}
