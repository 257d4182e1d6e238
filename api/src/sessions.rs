//! The department page's sessions (docs/department-page.md): one per sign-in, each bound to the
//! SM3 of the token it was opened with, held in the store (`page_sessions`) so that every
//! instance behind a load balancer knows them. A leaf: it knows no route and no state.
//!
//! A session ends when its holder signs out, after [`IDLE_MS`] without a request, or
//! [`ABSOLUTE_MS`] after sign-in, whichever comes first; times come from the platform clock the
//! caller passes (tests advance a `ManualClock`). Sessions survive a restart of the service.

use custody_domain::identifiers::sm3_hex;
use custody_eventlog::{EventLogError, PlatformStore, SessionLimits};
use rand::RngExt;

pub use custody_eventlog::PageSession as Session;

/// A session unused this long ends (30 minutes).
pub const IDLE_MS: i64 = 30 * 60 * 1000;
/// A session ends this long after sign-in, used or not (8 hours).
pub const ABSOLUTE_MS: i64 = 8 * 60 * 60 * 1000;

const LIMITS: SessionLimits = SessionLimits {
    idle_ms: IDLE_MS,
    absolute_ms: ABSOLUTE_MS,
};

/// The sessions, by the SM3 of their cookie value (the value itself is kept nowhere).
pub struct Sessions {
    store: PlatformStore,
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

impl Sessions {
    pub fn new(store: PlatformStore) -> Sessions {
        Sessions { store }
    }

    /// Opens a session for a token; answers the cookie value and the session.
    pub async fn open(
        &self,
        token_digest: &str,
        now_ms: i64,
    ) -> Result<(String, Session), EventLogError> {
        let id = random_hex();
        let session = Session {
            token_digest: token_digest.to_string(),
            csrf: random_hex(),
            started_ms: now_ms,
            seen_ms: now_ms,
        };
        self.store
            .open_page_session(&sm3_hex(id.as_bytes()), &session, LIMITS)
            .await?;
        Ok((id, session))
    }

    /// The live session of a cookie value, marked as used now; an ended one is forgotten.
    pub async fn touch(&self, id: &str, now_ms: i64) -> Result<Option<Session>, EventLogError> {
        self.store
            .touch_page_session(&sm3_hex(id.as_bytes()), now_ms, LIMITS)
            .await
    }

    /// Ends a session (sign-out).
    pub async fn close(&self, id: &str) -> Result<(), EventLogError> {
        self.store.close_page_session(&sm3_hex(id.as_bytes())).await
    }
}
