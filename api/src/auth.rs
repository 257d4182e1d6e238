//! Bearer tokens of the HTTP APIs: `Authorization: Bearer <secret>`. Only the SM3 of a secret is
//! stored; a token has one role and, for readers and auditors, one org node.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use custody_domain::identifiers::sm3_hex;
use custody_eventlog::TokenRecord;

use crate::error::{ErrorCode, WireError};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reader,
    Auditor,
    Operator,
}

impl Role {
    pub fn parse(role: &str) -> Option<Role> {
        match role {
            "reader" => Some(Role::Reader),
            "auditor" => Some(Role::Auditor),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
        }
    }
}

/// The caller, as its bearer token says.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub role: Role,
    pub org: Option<String>,
    pub scopes: Vec<String>,
}

impl Caller {
    pub fn require(&self, role: Role) -> Result<(), WireError> {
        if self.role == role {
            Ok(())
        } else {
            Err(WireError::new(
                ErrorCode::Forbidden,
                format!("this call needs the {} role", role.as_str()),
            ))
        }
    }

    /// How events written on this caller's behalf name their sender.
    pub fn sender(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.token_id)
    }
}

/// The SM3 under which a token secret is stored.
pub fn secret_digest(secret: &str) -> String {
    sm3_hex(secret.as_bytes())
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = WireError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let secret = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|secret| !secret.is_empty())
            .ok_or_else(|| WireError::new(ErrorCode::Unauthorized, "no bearer token"))?;
        let caller = Caller::of_digest(&state, &secret_digest(secret)).await?;
        if let Some(slot) = parts.extensions.get::<crate::observe::SenderSlot>() {
            slot.set(format!("token:{}", caller.token_id));
        }
        Ok(caller)
    }
}

impl Caller {
    /// The caller whose token secret has this SM3 digest, if the token exists, is not revoked
    /// and has not expired (the bearer header and the department page's session both end here).
    pub async fn of_digest(state: &AppState, digest: &str) -> Result<Caller, WireError> {
        let platform = state.commands.log().platform();
        let now_ms = state.commands.clock().now().timestamp_millis();
        let record: TokenRecord = platform
            .token_by_secret_sm3(digest)
            .await?
            .filter(|token| token.usable_at(now_ms))
            .ok_or_else(|| {
                WireError::new(ErrorCode::Unauthorized, "unknown, revoked or expired token")
            })?;
        // Operators see when each token was last used; a failure to note it fails no call.
        if let Err(error) = platform.note_token_use(&record, now_ms).await {
            tracing::warn!(%error, token = record.id, "could not note a token's use");
        }
        let role = Role::parse(&record.role)
            .ok_or_else(|| WireError::new(ErrorCode::Unauthorized, "token has no known role"))?;
        Ok(Caller {
            token_id: record.id,
            role,
            org: record.org,
            scopes: record.scopes,
        })
    }
}
