//! The operator's and auditor's command-line calls to a running service: projection status and
//! rebuild (with progress), and log verification.

use std::io::Write;
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
    /// Check that no stored event was altered, removed or reordered.
    Verify(Connection),
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
        AuditCommand::Verify(connection) => {
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
    }
}
