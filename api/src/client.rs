//! The operator's and auditor's command-line calls to a running service: projection status and
//! rebuild (with progress), and log verification.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Args)]
pub struct Connection {
    /// Base URL of the running service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token (operator for projections, auditor or operator for audit).
    #[arg(long, env = "CUSTODY_OPS_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection's position, lag and rebuild state.
    Status(Connection),
    /// Rebuild a projection from the event store while the service keeps serving the old one.
    Rebuild {
        /// documents, persons, cabinets, access_records or alerts.
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check that no stored event was altered, removed or reordered: the running service's
    /// live store, or, with --bundle and --key, an exported bundle offline.
    Verify(VerifyArgs),
    /// Seal the log into a signed checkpoint now.
    Checkpoint(Connection),
    /// Write the audit bundle (events, checkpoints, proofs, key; docs/audit.md) to a file.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Args)]
pub struct VerifyArgs {
    /// An exported bundle to verify offline, with no service or database.
    #[arg(long, requires = "key")]
    pub bundle: Option<PathBuf>,
    /// The checkpoint public key (SubjectPublicKeyInfo PEM), obtained apart from the bundle.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// A witness file (JSON lines of checkpoints, `serve --checkpoint-witness`): the log must
    /// hold every checkpoint in it. Without --bundle, the running service's export is checked
    /// (with --key, or else the service's own checkpoint key).
    #[arg(long)]
    pub witness: Option<PathBuf>,
    /// Base URL of the running service (without --bundle).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token, auditor or operator (without --bundle).
    #[arg(long, env = "CUSTODY_OPS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

async fn call(
    connection: &Connection,
    method: reqwest::Method,
    path: &str,
) -> Result<(u16, Value), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}{path}", connection.url.trim_end_matches('/'));
    let response = client
        .request(method, &url)
        .bearer_auth(&connection.token)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

pub async fn projections(command: ProjectionsCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        ProjectionsCommand::Status(connection) => {
            let (status, body) =
                call(&connection, reqwest::Method::GET, "/api/v1/ops/projections").await?;
            if status != 200 {
                return Err(format!("HTTP {status}: {body}").into());
            }
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
        ProjectionsCommand::Rebuild { name, connection } => {
            let path = format!("/api/v1/ops/projections/{name}/rebuild");
            let (status, body) = call(&connection, reqwest::Method::POST, &path).await?;
            if status != 202 {
                return Err(format!("HTTP {status}: {body}").into());
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let (_, body) =
                    call(&connection, reqwest::Method::GET, "/api/v1/ops/projections").await?;
                let rebuild = body["projections"]
                    .as_array()
                    .and_then(|all| all.iter().find(|p| p["name"] == name.as_str()))
                    .map(|p| p["rebuild"].clone())
                    .unwrap_or(Value::Null);
                let events = rebuild["events"].as_u64().unwrap_or(0);
                let total = rebuild["total"].as_u64().unwrap_or(0).max(events);
                let rate = rebuild["events_per_second"].as_f64().unwrap_or(0.0);
                let eta = if rate > 0.0 {
                    (total - events) as f64 / rate
                } else {
                    0.0
                };
                let width = 30usize;
                let filled = if total == 0 {
                    0
                } else {
                    (events as usize * width) / total as usize
                };
                print!(
                    "\r[{}{}] {events}/{total} events  {rate:.0} events/s  ETA {eta:.0} s   ",
                    "#".repeat(filled),
                    " ".repeat(width - filled.min(width))
                );
                std::io::stdout().flush()?;
                match rebuild["state"].as_str() {
                    Some("finished") => {
                        println!(
                            "\nrebuilt {name}: {events} events in {} ms",
                            rebuild["elapsed_ms"]
                        );
                        return Ok(());
                    }
                    Some("failed") => {
                        return Err(format!("\nrebuild failed: {}", rebuild["error"]).into())
                    }
                    _ => {}
                }
            }
        }
    }
}

pub async fn audit(command: AuditCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        AuditCommand::Verify(VerifyArgs {
            bundle: Some(bundle),
            key: Some(key),
            witness,
            ..
        }) => {
            let bundle = read_bundle(&bundle)?;
            let key =
                std::fs::read_to_string(&key).map_err(|e| format!("{}: {e}", key.display()))?;
            print_verdict(&bundle, &key, witness.as_deref())
        }
        AuditCommand::Verify(VerifyArgs {
            bundle: Some(_),
            key: None,
            ..
        }) => {
            Err("--bundle needs --key: the checkpoint key, obtained apart from the bundle".into())
        }
        AuditCommand::Verify(VerifyArgs {
            bundle: None,
            witness: Some(witness),
            key,
            url,
            token,
        }) => {
            let connection = connection(url, token)?;
            let (status, body) =
                call(&connection, reqwest::Method::GET, "/api/v1/audit/export").await?;
            if status != 200 {
                return Err(format!("HTTP {status}: {body}").into());
            }
            let bundle: custody_audit::bundle::Bundle = serde_json::from_value(body)?;
            let key = match key {
                Some(key) => {
                    std::fs::read_to_string(&key).map_err(|e| format!("{}: {e}", key.display()))?
                }
                None => bundle.public_key_pem.clone(),
            };
            print_verdict(&bundle, &key, Some(&witness))
        }
        AuditCommand::Verify(args) => {
            let connection = connection(args.url, args.token)?;
            let (status, body) =
                call(&connection, reqwest::Method::GET, "/api/v1/audit/verify").await?;
            if status != 200 {
                return Err(format!("HTTP {status}: {body}").into());
            }
            println!("{}", serde_json::to_string_pretty(&body)?);
            if body["verified"] == true {
                Ok(())
            } else {
                Err("the log does not verify".into())
            }
        }
        AuditCommand::Checkpoint(connection) => {
            let (status, body) = call(
                &connection,
                reqwest::Method::POST,
                "/api/v1/audit/checkpoints",
            )
            .await?;
            if status != 200 && status != 201 {
                return Err(format!("HTTP {status}: {body}").into());
            }
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
        AuditCommand::Export { out, connection } => {
            let (status, body) =
                call(&connection, reqwest::Method::GET, "/api/v1/audit/export").await?;
            if status != 200 {
                return Err(format!("HTTP {status}: {body}").into());
            }
            std::fs::write(&out, serde_json::to_vec(&body)?)
                .map_err(|e| format!("{}: {e}", out.display()))?;
            println!(
                "wrote {} events and {} checkpoints to {}",
                body["events"].as_array().map_or(0, Vec::len),
                body["checkpoints"].as_array().map_or(0, Vec::len),
                out.display()
            );
            Ok(())
        }
    }
}

fn connection(url: String, token: Option<String>) -> Result<Connection, String> {
    Ok(Connection {
        url,
        token: token.ok_or("--token (or CUSTODY_OPS_TOKEN) is needed without --bundle")?,
    })
}

fn read_bundle(path: &Path) -> Result<custody_audit::bundle::Bundle, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bundle: custody_audit::bundle::Bundle = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not an audit bundle: {e}", path.display()))?;
    if bundle.format != custody_audit::bundle::BUNDLE_FORMAT {
        return Err(format!("unknown bundle format {:?}", bundle.format).into());
    }
    Ok(bundle)
}

/// The checkpoints of a witness file, one JSON object a line.
pub fn read_witness(
    path: &Path,
) -> Result<Vec<custody_audit::SignedCheckpoint>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1).into())
        })
        .collect()
}

/// Verifies a bundle against a checkpoint public key (PEM) and optionally a witness file.
pub fn verify_bundle(
    bundle: &custody_audit::bundle::Bundle,
    key_pem: &str,
    witness: Option<&Path>,
) -> Result<custody_audit::bundle::Verdict, Box<dyn std::error::Error>> {
    let public_key = custody_protocol::keys::public_key_from_spki_pem(key_pem)
        .map_err(|e| format!("checkpoint key: {e}"))?;
    let witnessed = witness.map(read_witness).transpose()?.unwrap_or_default();
    Ok(custody_audit::bundle::verify_with_witnesses(
        bundle,
        &custody_protocol::Sm2Verifier::new(&public_key),
        &witnessed,
    ))
}

fn print_verdict(
    bundle: &custody_audit::bundle::Bundle,
    key_pem: &str,
    witness: Option<&Path>,
) -> Result<(), Box<dyn std::error::Error>> {
    let verdict = verify_bundle(bundle, key_pem, witness)?;
    println!("{}", serde_json::to_string_pretty(&verdict)?);
    if verdict.verified {
        Ok(())
    } else {
        Err("the log does not verify".into())
    }
}

/// Verifies a bundle file offline against a checkpoint public key file, and optionally a
/// witness file (docs/audit.md).
pub fn verify_bundle_file(
    bundle: &Path,
    key: &Path,
    witness: Option<&Path>,
) -> Result<custody_audit::bundle::Verdict, Box<dyn std::error::Error>> {
    let key = std::fs::read_to_string(key).map_err(|e| format!("{}: {e}", key.display()))?;
    verify_bundle(&read_bundle(bundle)?, &key, witness)
}
