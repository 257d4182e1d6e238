//! The department page's sessions (docs/department-page.md): in memory, one per sign-in, each
//! bound to the SM3 of the token it was opened with. A leaf: it knows no route and no state.
//!
//! A session ends when its holder signs out, after [`IDLE_MS`] without a request, or
//! [`ABSOLUTE_MS`] after sign-in, whichever comes first; times come from the platform clock the
//! caller passes (tests advance a `ManualClock`). Sessions do not survive a restart: the
//! department signs in again.

use std::collections::HashMap;
use std::sync::Mutex;

use custody_domain::identifiers::sm3_hex;
use rand::RngExt;

/// A session unused this long ends (30 minutes).
pub const IDLE_MS: i64 = 30 * 60 * 1000;
/// A session ends this long after sign-in, used or not (8 hours).
pub const ABSOLUTE_MS: i64 = 8 * 60 * 60 * 1000;

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The SM3 of the reader token signed in with; the token is looked up on every request,
    /// so a revoked token ends the session at once.
    pub token_digest: String,
    /// The anti-CSRF value every state-changing form of the session carries.
    pub csrf: String,
    pub started_ms: i64,
    pub seen_ms: i64,
}

/// The sessions, by the SM3 of their cookie value (the value itself is kept nowhere).
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

impl Sessions {
    /// Opens a session for a token; answers the cookie value and the session.
    pub fn open(&self, token_digest: &str, now_ms: i64) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            token_digest: token_digest.to_string(),
            csrf: random_hex(),
            started_ms: now_ms,
            seen_ms: now_ms,
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the sessions that have ended, so that the map does not grow.
        open.retain(|_, s| s.live(now_ms));
        open.insert(sm3_hex(id.as_bytes()), session.clone());
        (id, session)
    }

    /// The live session of a cookie value, marked as used now; an ended one is forgotten.
    pub fn touch(&self, id: &str, now_ms: i64) -> Option<Session> {
        let key = sm3_hex(id.as_bytes());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        match open.get_mut(&key) {
            Some(session) if session.live(now_ms) => {
                session.seen_ms = now_ms;
                Some(session.clone())
            }
            Some(_) => {
                open.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session (sign-out).
    pub fn close(&self, id: &str) {
        let key = sm3_hex(id.as_bytes());
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}

impl Session {
    fn live(&self, now_ms: i64) -> bool {
        now_ms - self.seen_ms < IDLE_MS && now_ms - self.started_ms < ABSOLUTE_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_idle_at_its_limit_and_on_sign_out() {
        let sessions = Sessions::default();
        let (id, _) = sessions.open("digest", 0);
        assert!(sessions.touch(&id, IDLE_MS - 1).is_some());
        assert!(sessions.touch(&id, 2 * IDLE_MS - 2).is_some());
        assert!(sessions.touch(&id, 3 * IDLE_MS).is_none());
        assert!(sessions.touch(&id, 3 * IDLE_MS).is_none(), "forgotten");
        let (id, _) = sessions.open("digest", 0);
        sessions.close(&id);
        assert!(sessions.touch(&id, 1).is_none());
        assert!(sessions.touch("never-issued", 1).is_none());
    }

    #[test]
    fn a_session_ends_at_its_absolute_limit_however_used() {
        let sessions = Sessions::default();
        let (id, _) = sessions.open("digest", 0);
        let mut now = 0;
        while now + IDLE_MS / 2 < ABSOLUTE_MS {
            now += IDLE_MS / 2;
            assert!(sessions.touch(&id, now).is_some(), "{now}");
        }
        assert!(sessions.touch(&id, ABSOLUTE_MS).is_none());
    }
}
