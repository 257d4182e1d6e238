//! Talking to the service: signed reports (`POST /yth_g1xt/api/v1/{mstype}`) and the ops API
//! calls a cabinet's life needs (platform key, org node, device enrollment).
//!
//! Every URL is built from the one base URL the caller gives; nothing else is ever contacted.

use std::time::Duration;

use custody_protocol::SignedRequest;
use futures::TryStreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cabinet::{CabinetSpec, DeviceEnrollment, SimulatedCabinet};
use super::error::SimulateError;
use super::generate::random_credit_code;

/// Longest body text kept in an error message.
const ERROR_BODY_LIMIT: usize = 2000;

/// A reqwest client for the simulator: no proxy (the simulator must reach exactly the URL it is
/// given, never a proxy from the environment), a per-request timeout, and a connection pool
/// large enough for `pool_size` concurrent senders.
pub fn http_client(timeout: Duration, pool_size: usize) -> Result<reqwest::Client, SimulateError> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .pool_max_idle_per_host(pool_size)
        .build()
        .map_err(|source| SimulateError::Http {
            call: "building the HTTP client".into(),
            source,
        })
}

/// The base URL without trailing slashes, refused unless it is `http://` or `https://`.
pub fn normalise_base_url(base_url: &str) -> Result<String, SimulateError> {
    let trimmed = base_url.trim().trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
        return Err(SimulateError::Options(format!(
            "--url {base_url:?} must start with http:// or https://"
        )));
    }
    Ok(trimmed.to_owned())
}

/// The URL a signed request of `mstype` is posted to.
pub fn report_url(base_url: &str, mstype: &str) -> String {
    format!(
        "{}/yth_g1xt/api/v1/{mstype}",
        base_url.trim_end_matches('/')
    )
}

/// Posts a signed request as JSON to `{base_url}/yth_g1xt/api/v1/{mstype}` and returns the HTTP
/// status and the body. A body that is not JSON comes back as a JSON string of its text, so a
/// refusal by a layer in front of the handler is still visible.
pub async fn post(
    client: &reqwest::Client,
    base_url: &str,
    request: &SignedRequest,
) -> Result<(u16, Value), SimulateError> {
    let url = report_url(base_url, &request.mstype);
    let body = request.to_json()?;
    let call = || format!("POST {url}");
    let response = client
        .post(&url)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|source| SimulateError::Http {
            call: call(),
            source,
        })?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|source| SimulateError::Http {
            call: call(),
            source,
        })?;
    Ok((status, body_value(&text)))
}

fn body_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// The service's answer to a signed request (SPEC §5). Message-specific fields are ignored
/// here; read them from the raw body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReply {
    /// The business serial the reply is about (may be empty for messages without one).
    #[serde(default)]
    pub ywlsh: String,
    /// Whether the report was accepted.
    #[serde(default)]
    pub status: bool,
    /// `"0"` or an `E_…` code.
    #[serde(default)]
    pub error_code: String,
    /// Human-readable reason.
    #[serde(default)]
    pub error_msg: String,
    /// Whether the same operation had already been recorded.
    #[serde(default)]
    pub duplicate: bool,
}

impl ServiceReply {
    /// Reads a reply body; `None` when it is not a JSON object with a string `error_code`.
    pub fn from_body(body: &Value) -> Option<ServiceReply> {
        body.get("error_code")?.as_str()?;
        serde_json::from_value(body.clone()).ok()
    }
}

/// `GET /api/v1/ops/platform-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformKey {
    /// The platform's SM2 encryption public key, SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// Its certificate, PEM.
    pub certificate_pem: String,
}

/// The ops API as an operator (bearer token) uses it.
#[derive(Debug, Clone)]
pub struct OpsClient {
    client: reqwest::Client,
    base_url: String,
    token: String,
}

impl OpsClient {
    /// An ops client for `base_url` (see [`normalise_base_url`]) with the operator `token`.
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        token: &str,
    ) -> Result<OpsClient, SimulateError> {
        Ok(OpsClient {
            client,
            base_url: normalise_base_url(base_url)?,
            token: token.to_owned(),
        })
    }

    /// The service's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The HTTP client (shared with report senders).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Calls `method path` with an optional JSON body; any 2xx answer's body is returned (as JSON,
    /// or `null` when empty), anything else is [`SimulateError::Refused`].
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Value, SimulateError> {
        let url = format!("{}{path}", self.base_url);
        let call = format!("{method} {url}");
        let mut builder = self
            .client
            .request(method, &url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|source| SimulateError::Http {
            call: call.clone(),
            source,
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| SimulateError::Http {
                call: call.clone(),
                source,
            })?;
        if !status.is_success() {
            return Err(SimulateError::Refused {
                call,
                status: status.as_u16(),
                body: truncate(&text),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|err| SimulateError::UnexpectedReply {
            call,
            reason: format!("not JSON ({err}): {}", truncate(&text)),
        })
    }

    /// The platform's encryption key and certificate.
    pub async fn platform_key(&self) -> Result<PlatformKey, SimulateError> {
        let path = "/api/v1/ops/platform-key";
        let body = self.call::<Value>(Method::GET, path, None).await?;
        serde_json::from_value(body).map_err(|err| SimulateError::UnexpectedReply {
            call: format!("GET {}{path}", self.base_url),
            reason: format!("expected {{public_key_pem, certificate_pem}}: {err}"),
        })
    }

    /// Creates an org tree node (`parent` a credit code, or `None` for a root).
    pub async fn create_org(
        &self,
        code: &str,
        name: &str,
        parent: Option<&str>,
    ) -> Result<Value, SimulateError> {
        let body = serde_json::json!({ "code": code, "name": name, "parent": parent });
        self.call(Method::POST, "/api/v1/ops/orgs", Some(&body))
            .await
    }

    /// Enrolls a cabinet device.
    pub async fn enroll_device(
        &self,
        enrollment: &DeviceEnrollment,
    ) -> Result<Value, SimulateError> {
        self.call(Method::POST, "/api/v1/ops/devices", Some(enrollment))
            .await
    }
}

fn truncate(text: &str) -> String {
    if text.len() <= ERROR_BODY_LIMIT {
        return text.to_owned();
    }
    let mut end = ERROR_BODY_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A unit with enrolled, activated simulated cabinets.
#[derive(Debug)]
pub struct Fleet {
    /// The unit's credit code.
    pub unit_credit_code: String,
    /// The unit's name.
    pub unit_name: String,
    /// The platform certificate the cabinets seal to.
    pub platform_certificate_pem: String,
    /// The cabinets, all enrolled and activated.
    pub cabinets: Vec<SimulatedCabinet>,
}

/// Posts `request` and insists on HTTP 200 with `status: true`.
pub async fn post_expecting_success(
    client: &reqwest::Client,
    base_url: &str,
    request: &SignedRequest,
) -> Result<ServiceReply, SimulateError> {
    let (status, body) = post(client, base_url, request).await?;
    let call = format!("POST {}", report_url(base_url, &request.mstype));
    let reply = ServiceReply::from_body(&body);
    match reply {
        Some(reply) if status == 200 && reply.status => Ok(reply),
        _ => Err(SimulateError::Refused {
            call,
            status,
            body: truncate(&body.to_string()),
        }),
    }
}

/// Sets up a fresh unit (a root org node with a random valid credit code) and `count` simulated
/// cabinets: fetches the platform certificate, enrolls every cabinet and activates it with its
/// signed `sjsb-sbcsh` (`time_millis` as the requests' time). Up to 8 cabinets are set up at
/// once.
pub async fn provision_fleet(
    ops: &OpsClient,
    count: usize,
    time_millis: i64,
) -> Result<Fleet, SimulateError> {
    let platform_key = ops.platform_key().await?;
    let unit_credit_code = random_credit_code(&mut rand::rng());
    let unit_name = format!("模拟单位 {}", &unit_credit_code[8..16]);
    ops.create_org(&unit_credit_code, &unit_name, None).await?;

    let mut cabinets = Vec::with_capacity(count);
    for _ in 0..count {
        let spec = CabinetSpec::random(&mut rand::rng(), &unit_credit_code, &unit_name);
        cabinets.push(SimulatedCabinet::new(spec, &platform_key.certificate_pem)?);
    }
    futures::stream::iter(cabinets.iter().map(Ok))
        .try_for_each_concurrent(8, |cabinet| async move {
            ops.enroll_device(&cabinet.enrollment()).await?;
            let activation = cabinet.activation(time_millis)?;
            post_expecting_success(ops.client(), ops.base_url(), &activation).await?;
            Ok::<(), SimulateError>(())
        })
        .await?;
    Ok(Fleet {
        unit_credit_code,
        unit_name,
        platform_certificate_pem: platform_key.certificate_pem,
        cabinets,
    })
}
