//! deploy/: the systemd unit's command line with the example configuration starts a service
//! that is ready; `custody config check` shows flags over environment over file, masks secrets
//! and refuses an unknown key.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Served;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The unit's `ExecStart` arguments, with the example configuration for the installed one.
fn unit_arguments() -> Vec<String> {
    let unit = std::fs::read_to_string(deploy_dir().join("custody.service")).expect("the unit");
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let example = deploy_dir().join("custody.toml").display().to_string();
    exec.split_whitespace()
        .skip(1)
        .map(|arg| {
            if arg == "/etc/custody/custody.toml" {
                example.clone()
            } else {
                arg.to_string()
            }
        })
        .collect()
}

#[tokio::test]
async fn the_unit_starts_a_ready_service_with_the_example_configuration() {
    let served = Served::start(&unit_arguments());
    let address = served.address();
    let ready = reqwest::get(format!("http://{address}/ready"))
        .await
        .expect("GET /ready");
    assert_eq!(ready.status(), 200);
}

fn config_check(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_custody"));
    command.args(["config", "check"]).args(args);
    for name in [
        "CUSTODY_OPS_TOKEN",
        "CUSTODY_DATABASE_URL",
        "CUSTODY_SENDER_RATE",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command.output().expect("run custody config check")
}

#[test]
fn config_check_shows_what_takes_effect_and_from_where() {
    let example = deploy_dir().join("custody.toml");
    let example = example.to_str().expect("a UTF-8 path");
    let out = config_check(
        &["--config", example, "--global-rate", "7"],
        &[
            ("CUSTODY_SENDER_RATE", "9"),
            (
                "CUSTODY_DATABASE_URL",
                "postgres://custody:s3cret@db/custody",
            ),
            ("CUSTODY_OPS_TOKEN", "an-operator-secret-0123456789abcdef"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // Flag over file, environment over file, file over default, defaults where nothing says.
    assert!(text.contains("global-rate = \"7\"  # flag"), "{text}");
    assert!(
        text.contains("sender-rate = \"9\"  # environment"),
        "{text}"
    );
    assert!(
        text.contains("data-dir = \"/var/lib/custody\"  # file"),
        "{text}"
    );
    assert!(
        text.contains("max-connections = \"32\"  # default"),
        "{text}"
    );
    assert!(
        text.contains("database-url = \"postgres://***@db/custody\"  # environment"),
        "{text}"
    );
    assert!(text.contains("ops-token = \"***\""), "{text}");
    assert!(!text.contains("s3cret") && !text.contains("an-operator-secret"));
}

#[test]
fn config_check_refuses_an_unknown_key() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("custody.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9\"\nsender_rat = 3\n").expect("write");
    let out = config_check(&["--config", file.to_str().expect("UTF-8")], &[]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("unknown key \"sender_rat\""), "{error}");
}
