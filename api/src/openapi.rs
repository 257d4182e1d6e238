//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every route.
//!
//! Built from [`ROUTES`], one row per method and path. Two tests keep it honest: a unit test
//! reads every `.route(…)` of this crate's source and compares it with the table both ways, and
//! an integration test calls every documented operation and finds none unrouted. The error
//! schema's codes are [`ErrorCode::ALL`], the one wire error table. The read API's answers have
//! schemas here too ([`answer_schema`]); an integration test checks real answers against them.

use axum::Json;
use serde_json::{json, Map, Value};

use crate::error::ErrorCode;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (probes).
    Open,
    /// A signed envelope (SPEC §5), no bearer token.
    Signed,
    /// A bearer token of this role.
    Token(&'static str),
}

/// One documented operation.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub access: Access,
}

const fn route(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    access: Access,
) -> Route {
    Route {
        method,
        path,
        tag,
        summary,
        access,
    }
}

const OPERATOR: Access = Access::Token("operator");
const READER: Access = Access::Token("reader");
const AUDITOR: Access = Access::Token("auditor");

/// Every route of the service (the web UI's pages apart).
pub const ROUTES: &[Route] = &[
    route(
        "get",
        "/health",
        "probes",
        "Liveness: the process serves",
        Access::Open,
    ),
    route(
        "get",
        "/ready",
        "probes",
        "Readiness: store migrated and answering, workers running, NATS connected",
        Access::Open,
    ),
    route(
        "get",
        "/metrics",
        "probes",
        "Prometheus metrics (OpenMetrics text)",
        OPERATOR,
    ),
    route(
        "get",
        "/api/v1/openapi.json",
        "probes",
        "This document",
        Access::Open,
    ),
    route(
        "post",
        "/yth_g1xt/api/v1/{mstype}",
        "ingress",
        "A signed report of a cabinet, unit or exit-entry adapter (SPEC §5)",
        Access::Signed,
    ),
    route(
        "get",
        "/api/v1/documents",
        "read",
        "Documents in the caller's org subtree, filtered and paged",
        READER,
    ),
    route(
        "get",
        "/api/v1/documents/{zjbs}",
        "read",
        "One document",
        READER,
    ),
    route(
        "get",
        "/api/v1/persons/{rybs}",
        "read",
        "One person and their documents",
        READER,
    ),
    route(
        "get",
        "/api/v1/cabinets/{sbxlh}",
        "read",
        "One cabinet: drawers, occupancy, heartbeat",
        READER,
    ),
    route(
        "get",
        "/api/v1/access-records",
        "read",
        "Deposits and withdrawals",
        READER,
    ),
    route(
        "get",
        "/api/v1/alerts",
        "read",
        "Anomalies, device alarms and rejected reports",
        READER,
    ),
    route(
        "get",
        "/api/v1/stats",
        "read",
        "Documents by state, withdrawals per day, overdue",
        READER,
    ),
    route(
        "get",
        "/api/v1/overdue",
        "read",
        "Open reminders with overdue days",
        READER,
    ),
    route(
        "get",
        "/api/v1/reconciliations",
        "read",
        "Nightly reconciliation results and deviations",
        READER,
    ),
    route(
        "get",
        "/api/v1/reconciliations.csv",
        "read",
        "Reconciliation deviations as a CSV work list",
        READER,
    ),
    route(
        "get",
        "/api/v1/audit/documents/{zjbs}/events",
        "audit",
        "A document's events with metadata and hashes",
        AUDITOR,
    ),
    route(
        "get",
        "/api/v1/audit/persons/{rybs}/events",
        "audit",
        "A person's events with metadata and hashes",
        AUDITOR,
    ),
    route(
        "get",
        "/api/v1/audit/documents/{zjbs}/state",
        "audit",
        "A document's state as of a moment",
        AUDITOR,
    ),
    route(
        "get",
        "/api/v1/audit/verify",
        "audit",
        "Verify checkpoints, inclusion and every hash chain",
        AUDITOR,
    ),
    route(
        "get",
        "/api/v1/audit/checkpoints",
        "audit",
        "The latest signed checkpoint",
        AUDITOR,
    ),
    route(
        "post",
        "/api/v1/audit/checkpoints",
        "audit",
        "Seal the log into a checkpoint now",
        AUDITOR,
    ),
    route(
        "get",
        "/api/v1/audit/checkpoint-key",
        "audit",
        "The checkpoint signing public key",
        AUDITOR,
    ),
    route(
        "get",
        "/api/v1/audit/proofs/inclusion",
        "audit",
        "Inclusion proof of an event",
        AUDITOR,
    ),
    route(
        "get",
        "/api/v1/audit/proofs/consistency",
        "audit",
        "Consistency proof between two tree sizes",
        AUDITOR,
    ),
    route(
        "get",
        "/api/v1/audit/export",
        "audit",
        "The offline verification bundle",
        AUDITOR,
    ),
    route(
        "post",
        "/api/v1/ops/orgs",
        "ops",
        "Create an org node",
        OPERATOR,
    ),
    route(
        "post",
        "/api/v1/ops/devices",
        "ops",
        "Enroll a cabinet device",
        OPERATOR,
    ),
    route(
        "post",
        "/api/v1/ops/devices/{sbxlh}/disable",
        "ops",
        "Disable a device",
        OPERATOR,
    ),
    route(
        "post",
        "/api/v1/ops/persons/{rybs}/erasure",
        "ops",
        "Erase a person's personal data (crypto-shredding; docs/personal-data.md)",
        OPERATOR,
    ),
    route(
        "post",
        "/api/v1/ops/senders",
        "ops",
        "Register a gateway, exit-entry or unit sender",
        OPERATOR,
    ),
    route(
        "post",
        "/api/v1/ops/tokens",
        "ops",
        "Issue a token",
        OPERATOR,
    ),
    route(
        "get",
        "/api/v1/ops/tokens",
        "ops",
        "Every token with its creation, expiry, last use and revocation; never a secret",
        OPERATOR,
    ),
    route(
        "delete",
        "/api/v1/ops/tokens/{id}",
        "ops",
        "Revoke a token",
        OPERATOR,
    ),
    route(
        "get",
        "/api/v1/ops/rejections",
        "ops",
        "Rejected reports, newest first, without bodies; a cursor pages them",
        OPERATOR,
    ),
    route(
        "get",
        "/api/v1/ops/rejections/{id}",
        "ops",
        "One rejected report with its kept body",
        OPERATOR,
    ),
    route(
        "get",
        "/api/v1/ops/platform-key",
        "ops",
        "The platform's SM2 encryption key and certificate",
        OPERATOR,
    ),
    route(
        "get",
        "/api/v1/ops/projections",
        "ops",
        "Each projection's position, lag and rebuild",
        OPERATOR,
    ),
    route(
        "get",
        "/api/v1/ops/workers",
        "ops",
        "Which instance runs each background worker (the lease table): the same from every instance",
        OPERATOR,
    ),
    route(
        "post",
        "/api/v1/ops/projections/{name}/rebuild",
        "ops",
        "Rebuild a projection while serving",
        OPERATOR,
    ),
    route(
        "post",
        "/api/v1/ops/scheduler/run",
        "ops",
        "Run the return-date scheduler now",
        OPERATOR,
    ),
    route(
        "get",
        "/api/v1/ops/notifications",
        "ops",
        "The reminder outbox",
        OPERATOR,
    ),
    route(
        "post",
        "/api/v1/ops/notifications/deliver",
        "ops",
        "Attempt webhook delivery now",
        OPERATOR,
    ),
    route(
        "get",
        "/api/v1/ops/processes",
        "ops",
        "Each process manager's position",
        OPERATOR,
    ),
];

/// The path's `{name}` parameters.
fn parameters(path: &str) -> Vec<Value> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
        })
        .collect()
}

/// The schema (in `components.schemas`) of an operation's 200 answer, where one is written.
fn answer_schema(route: &Route) -> Option<&'static str> {
    match (route.method, route.path) {
        ("get", "/api/v1/documents/{zjbs}") => Some("Document"),
        ("get", "/api/v1/documents") => Some("DocumentPage"),
        ("get", "/api/v1/persons/{rybs}") => Some("Person"),
        ("get", "/api/v1/cabinets/{sbxlh}") => Some("Cabinet"),
        ("get", "/api/v1/access-records") => Some("AccessRecordPage"),
        ("get", "/api/v1/alerts") => Some("Alerts"),
        ("get", "/api/v1/overdue") => Some("Overdue"),
        _ => None,
    }
}

/// A JSON Schema type that may also be null.
fn nullable(kind: &str) -> Value {
    json!({"type": [kind, "null"]})
}

/// An object schema of `properties`, every one of them required (the read API always writes
/// each key, null when it has no value).
fn object(properties: Value) -> Value {
    let required: Vec<String> = properties
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    json!({"type": "object", "required": required, "properties": properties})
}

fn array_of(reference: &str) -> Value {
    json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{reference}")}})
}

/// The read API's answers (SPEC §7.1). Personal data is masked unless the token has `pii`.
fn read_schemas() -> Map<String, Value> {
    let text = || json!({"type": "string"});
    let integer = || json!({"type": "integer"});
    let mut schemas = Map::new();
    schemas.insert(
        "Document".into(),
        object(json!({
            "zjbs": text(), "zjlx": text(), "zjhm": nullable("string"),
            "state": {"type": "string", "description": "a document state of SPEC §3.1"},
            "holder": object(json!({
                "rybs": nullable("string"), "xm": nullable("string"),
                "gmsfhm": nullable("string")
            })),
            "unit": nullable("string"),
            "location": {"oneOf": [{"type": "null"}, object(json!({
                "sbxlh": text(), "zjgxlh": nullable("string"),
                "row": nullable("integer"), "col": nullable("integer")
            }))]},
            "planned_return": nullable("string"),
            "version": integer(), "updated_at": nullable("string")
        })),
    );
    schemas.insert(
        "DocumentPage".into(),
        object(json!({
            "documents": array_of("Document"), "page": integer(), "per_page": integer(),
            "total": integer()
        })),
    );
    schemas.insert(
        "Person".into(),
        object(json!({
            "rybs": text(), "xm": nullable("string"), "gmsfhm": nullable("string"),
            "state": {"type": "string", "description": "a person state of SPEC §3.2, or HolderOnly"},
            "unit": nullable("string"),
            "documents": {"type": "array", "items": text()}
        })),
    );
    schemas.insert(
        "Cabinet".into(),
        object(json!({
            "sbxlh": text(), "unit": nullable("string"), "state": text(),
            "cabinets": {"type": "array", "items": object(json!({
                "zjgxlh": text(), "rows": integer(), "cols": integer(),
                "drawers": {"type": "array", "items": object(json!({
                    "row": integer(), "col": integer(),
                    "documents": {"type": "array", "items": text()}
                }))}
            }))},
            "last_heartbeat": {"oneOf": [{"type": "null"}, object(json!({
                "at": text(), "status": {"description": "what the device reported"}
            }))]}
        })),
    );
    schemas.insert(
        "AccessRecord".into(),
        object(json!({
            "zjbs": text(), "sequence": integer(), "kind": text(), "unit": nullable("string"),
            "sbxlh": nullable("string"), "zjgxlh": nullable("string"),
            "row": nullable("integer"), "col": nullable("integer"), "ywlsh": nullable("string"),
            "operated_at": nullable("string"), "destination": nullable("string"),
            "planned_return": nullable("string"), "anomaly": nullable("string")
        })),
    );
    schemas.insert(
        "AccessRecordPage".into(),
        object(json!({
            "access_records": array_of("AccessRecord"), "page": integer(),
            "per_page": integer()
        })),
    );
    schemas.insert(
        "Alert".into(),
        object(json!({
            "kind": text(), "unit": nullable("string"),
            "subject": {"type": "object", "required": ["type", "id"]},
            "detail": {"description": "what the alert is about, by kind"},
            "raised_at": nullable("string")
        })),
    );
    schemas.insert(
        "Alerts".into(),
        object(json!({"alerts": array_of("Alert")})),
    );
    schemas.insert(
        "OverdueReminder".into(),
        object(json!({
            "reminder": text(), "zjbs": text(), "rybs": nullable("string"),
            "zjlx": nullable("string"), "unit": nullable("string"), "sbxlh": nullable("string"),
            "kind": text(), "state": text(), "planned_return": nullable("string"),
            "overdue_days": integer(), "opened_at": text(), "sent": integer(),
            "last_sent_at": nullable("string")
        })),
    );
    schemas.insert(
        "Overdue".into(),
        object(json!({"today": text(), "overdue": array_of("OverdueReminder")})),
    );
    schemas
}

fn operation(route: &Route) -> Value {
    let answered = match answer_schema(route) {
        Some(name) => json!({
            "description": "answered",
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}
        }),
        None => json!({"description": "answered"}),
    };
    let mut operation = json!({
        "operationId": format!("{}{}", route.method, route.path.replace(['/', '{', '}', '.', '-'], "_")),
        "tags": [route.tag],
        "summary": route.summary,
        "parameters": parameters(route.path),
        "responses": {
            "200": answered,
            "default": {
                "description": "an error answer",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }
        }
    });
    match route.access {
        Access::Open => operation["security"] = json!([]),
        Access::Signed => {
            operation["security"] = json!([]);
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}
            });
        }
        Access::Token(role) => {
            operation["security"] = json!([{"bearer": []}]);
            operation["x-custody-role"] = json!(role);
        }
    }
    operation
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let item = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        item[route.method] = operation(route);
    }
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Custody",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Read, audit, ops and ingress APIs of the Custody service (SPEC §5, §7-§9)."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error_code", "error_msg"],
                    "properties": {
                        "error_code": {"type": "string", "enum": codes},
                        "error_msg": {"type": "string"}
                    }
                },
                "Envelope": {
                    "type": "object",
                    "description": "The signed envelope: mstype, c (ei, reqid, time), bdata (base64 JSON), s (sig, rsig)",
                    "required": ["mstype", "c", "bdata", "s"]
                }
            }
        }
    });
    if let Some(schemas) = document["components"]["schemas"].as_object_mut() {
        schemas.extend(read_schemas());
    }
    document
}

pub async fn serve() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{document, ROUTES};
    use crate::error::ErrorCode;

    /// Every `(method, path)` the crate's source routes: each `.route("path", get(…).post(…))`.
    fn routed_in_source() -> BTreeSet<(String, String)> {
        let mut routed = BTreeSet::new();
        let mut files = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(
                    std::fs::read_dir(&path)
                        .expect("dir")
                        .map(|e| e.expect("entry").path()),
                );
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for call in text.split(".route(").skip(1) {
                let Some(rest) = call.trim_start().strip_prefix('"') else {
                    continue;
                };
                let Some((route, rest)) = rest.split_once('"') else {
                    continue;
                };
                // The call's own text: up to the parenthesis that closes it.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map_or(rest.len(), |(i, _)| i);
                for method in ["get", "post", "put", "patch", "delete"] {
                    let called = rest[..end]
                        .match_indices(&format!("{method}("))
                        .any(|(i, _)| {
                            i == 0
                                || !rest.as_bytes()[i - 1].is_ascii_alphanumeric()
                                    && rest.as_bytes()[i - 1] != b'_'
                        });
                    if called {
                        routed.insert((method.to_string(), route.to_string()));
                    }
                }
            }
        }
        // The web UI's pages are not part of the API.
        routed.retain(|(_, path)| {
            path.starts_with("/api/")
                || path.starts_with("/yth_g1xt/")
                || ["/health", "/ready", "/metrics"].contains(&path.as_str())
        });
        routed
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_is_routed() {
        let documented: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(documented.len(), ROUTES.len(), "a route is listed twice");
        assert_eq!(routed_in_source(), documented);
    }

    #[test]
    fn the_error_codes_are_the_wire_error_table() {
        let document = document();
        let listed: Vec<&str> = document["components"]["schemas"]["Error"]["properties"]
            ["error_code"]["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .map(|v| v.as_str().expect("a code"))
            .collect();
        let table: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, table);
        assert_eq!(document["openapi"], "3.1.0");
    }
}
