//! The operator's and auditor's command-line calls to a running service: projection status and
//! rebuild (with progress), and log verification.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

/// The same two options in every subcommand that calls a running service.
#[derive(Args)]
pub struct Connection {
    /// Base URL of the running service.
    #[arg(long, env = "CUSTODY_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token (operator for projections, auditor or operator for audit).
    #[arg(long, env = "CUSTODY_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection's position, lag and rebuild state: a table, or the API's JSON.
    Status {
        #[command(flatten)]
        connection: Connection,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
    #[arg(long, env = "CUSTODY_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token, auditor or operator (without --bundle).
    #[arg(long, env = "CUSTODY_TOKEN", hide_env_values = true)]
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
        ProjectionsCommand::Status { connection, json } => {
            let (status, body) =
                call(&connection, reqwest::Method::GET, "/api/v1/ops/projections").await?;
            if status != 200 {
                return Err(format!("HTTP {status}: {body}").into());
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                print!("{}", projection_table(&body));
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { name, connection } => {
            let path = format!("/api/v1/ops/projections/{name}/rebuild");
            let (status, body) = call(&connection, reqwest::Method::POST, &path).await?;
            if status != 202 {
                return Err(format!("HTTP {status}: {body}").into());
            }
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} events  {per_sec}  ETA {eta}",
                )
                .map_err(|e| e.to_string())?,
            );
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
                bar.set_length(rebuild["total"].as_u64().unwrap_or(0).max(events));
                bar.set_position(events);
                match rebuild["state"].as_str() {
                    Some("finished") => {
                        bar.finish_and_clear();
                        println!(
                            "rebuilt {name}: {events} events in {} ms",
                            rebuild["elapsed_ms"]
                        );
                        return Ok(());
                    }
                    Some("failed") => {
                        bar.abandon();
                        return Err(format!("rebuild failed: {}", rebuild["error"]).into());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `GET /api/v1/ops/projections` as a table: one row per projection.
pub fn projection_table(body: &Value) -> String {
    let head = &body["head"]["global_position"];
    let mut rows = vec![[
        "PROJECTION".to_string(),
        "GEN".into(),
        "POSITION".into(),
        "APPLIED".into(),
        "BEHIND".into(),
        "LAG P50 MS".into(),
        "LAG P99 MS".into(),
        "REBUILD".into(),
    ]];
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for p in body["projections"].as_array().into_iter().flatten() {
        rows.push([
            text(&p["name"]),
            text(&p["generation"]),
            text(&p["position"]["global_position"]),
            text(&p["applied"]),
            text(&p["lag_events"]),
            text(&p["live_lag"]["p50_ms"]),
            text(&p["live_lag"]["p99_ms"]),
            text(&p["rebuild"]["state"]),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("log head: {}\n", text(head));
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub async fn audit(command: AuditCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        AuditCommand::Verify(VerifyArgs {
            bundle: Some(bundle),
            key: Some(key),
            witness,
            ..
        }) => {
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
            // The export is downloaded (mode 0600: it holds personal data) and checked as an
            // offline bundle is, then removed.
            let connection = connection(url, token)?;
            let file = std::env::temp_dir().join(format!(
                "custody-audit-{}-{}.jsonl",
                std::process::id(),
                chrono::Utc::now().timestamp_millis()
            ));
            let downloaded = download(&connection, "/api/v1/audit/export", &file).await;
            let checked = match downloaded {
                Ok(_) => match key {
                    Some(key) => std::fs::read_to_string(&key)
                        .map_err(|e| format!("{}: {e}", key.display()).into()),
                    None => bundle_key(&file),
                }
                .and_then(|key| print_verdict(&file, &key, Some(&witness))),
                Err(error) => Err(error),
            };
            let _ = std::fs::remove_file(&file);
            checked
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
            let bytes = download(&connection, "/api/v1/audit/export", &out).await?;
            println!("wrote {bytes} bytes of audit bundle to {}", out.display());
            Ok(())
        }
    }
}

/// Streams a GET's body into a new file (mode 0600), and checks it ended with the bundle's end
/// line: an export cut short must not look like a log cut short.
async fn download(
    connection: &Connection,
    path: &str,
    out: &Path,
) -> Result<u64, Box<dyn std::error::Error>> {
    use std::io::Write;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("{}{path}", connection.url.trim_end_matches('/'));
    let mut response = client
        .get(&url)
        .bearer_auth(&connection.token)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {body}").into());
    }
    let mut file = custody_eventlog::files::create_private_file(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let (mut bytes, mut tail) = (0u64, Vec::new());
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("{url}: the export stopped: {e}"))?
    {
        file.write_all(&chunk)?;
        bytes += chunk.len() as u64;
        tail.extend_from_slice(&chunk);
        let keep = tail.len().saturating_sub(256);
        tail.drain(..keep);
    }
    file.sync_all()?;
    let last_line = String::from_utf8_lossy(&tail);
    let last_line = last_line.trim_end().rsplit('\n').next().unwrap_or_default();
    if !last_line.starts_with("{\"end\"") {
        return Err(format!("{}: the export ended without its end line", out.display()).into());
    }
    Ok(bytes)
}

/// The public key the bundle itself names (only when no key was given apart from it).
fn bundle_key(path: &Path) -> Result<String, Box<dyn std::error::Error>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut first = String::new();
    std::io::BufReader::new(file).read_line(&mut first)?;
    let header: custody_audit::bundle::BundleHeader = serde_json::from_str(&first)
        .map_err(|e| format!("{}: not an audit bundle: {e}", path.display()))?;
    Ok(header.public_key_pem)
}

fn connection(url: String, token: Option<String>) -> Result<Connection, String> {
    Ok(Connection {
        url,
        token: token.ok_or("--token (or CUSTODY_TOKEN) is needed without --bundle")?,
    })
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

/// Verifies a bundle file against a checkpoint public key (PEM) and optionally a witness file,
/// reading the file a line at a time, once a pass.
pub fn verify_bundle(
    bundle: &Path,
    key_pem: &str,
    witness: Option<&Path>,
) -> Result<custody_audit::bundle::Verdict, Box<dyn std::error::Error>> {
    let public_key = custody_protocol::keys::public_key_from_spki_pem(key_pem)
        .map_err(|e| format!("checkpoint key: {e}"))?;
    let witnessed = witness.map(read_witness).transpose()?.unwrap_or_default();
    let open = || std::fs::File::open(bundle).map(std::io::BufReader::new);
    custody_audit::bundle::verify_lines(
        open,
        &custody_protocol::Sm2Verifier::new(&public_key),
        &witnessed,
    )
    .map_err(|e| format!("{}: {e}", bundle.display()).into())
}

fn print_verdict(
    bundle: &Path,
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
    verify_bundle(bundle, &key, witness)
}

#[cfg(test)]
mod tests {
    use super::projection_table;

    #[test]
    fn the_status_table_has_a_row_per_projection() {
        let body = serde_json::json!({
            "head": {"tx_id": 9, "global_position": 42},
            "projections": [{
                "name": "documents", "generation": 2,
                "position": {"tx_id": 9, "global_position": 40}, "applied": 40,
                "lag_events": 2,
                "live_lag": {"sampled_events": 40, "p50_ms": 3, "p99_ms": 17, "max_ms": 20},
                "rebuild": null
            }]
        });
        let table = projection_table(&body);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "log head: 42");
        assert!(lines[1].starts_with("PROJECTION  GEN  POSITION  APPLIED  BEHIND"));
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(cells, ["documents", "2", "40", "40", "2", "3", "17", "-"]);
    }
}
