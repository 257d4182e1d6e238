//! The department page's sessions (`migrations/*/0015_page_sessions.sql`): in the store, so
//! that a browser signed in through one instance is signed in on every other behind the same
//! load balancer. Keyed by the SM3 of the cookie value; the value itself is kept nowhere. When a
//! session ends is the caller's rule ([`SessionLimits`]); the SQL only applies it.

use crate::{EventLogError, PlatformStore};

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSession {
    /// The SM3 of the reader token signed in with.
    pub token_digest: String,
    /// The anti-CSRF value every state-changing form of the session carries.
    pub csrf: String,
    pub started_ms: i64,
    pub seen_ms: i64,
}

/// A session ends `idle_ms` after its last use or `absolute_ms` after it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle_ms: i64,
    pub absolute_ms: i64,
}

impl PlatformStore {
    /// Stores a new session under the SM3 of its cookie value; sessions that have ended by
    /// `session.started_ms` are deleted first, so that the table does not grow.
    pub async fn open_page_session(
        &self,
        id_sm3: &str,
        session: &PageSession,
        limits: SessionLimits,
    ) -> Result<(), EventLogError> {
        let now = session.started_ms;
        sqlx::query("DELETE FROM page_sessions WHERE seen_ms <= $1 OR started_ms <= $2")
            .bind(now - limits.idle_ms)
            .bind(now - limits.absolute_ms)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO page_sessions (id_sm3, token_sm3, csrf, started_ms, seen_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_sm3)
        .bind(&session.token_digest)
        .bind(&session.csrf)
        .bind(session.started_ms)
        .bind(session.seen_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live session stored under `id_sm3`, marked as used at `now_ms`; one that has ended
    /// is deleted. `seen_ms` never moves back (instances' clocks may differ a little).
    pub async fn touch_page_session(
        &self,
        id_sm3: &str,
        now_ms: i64,
        limits: SessionLimits,
    ) -> Result<Option<PageSession>, EventLogError> {
        let row: Option<(String, String, i64, i64)> = sqlx::query_as(
            "UPDATE page_sessions SET seen_ms = CASE WHEN seen_ms < $1 THEN $2 ELSE seen_ms END \
             WHERE id_sm3 = $3 AND seen_ms > $4 AND started_ms > $5 \
             RETURNING token_sm3, csrf, started_ms, seen_ms",
        )
        .bind(now_ms)
        .bind(now_ms)
        .bind(id_sm3)
        .bind(now_ms - limits.idle_ms)
        .bind(now_ms - limits.absolute_ms)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some((token_digest, csrf, started_ms, seen_ms)) => Ok(Some(PageSession {
                token_digest,
                csrf,
                started_ms,
                seen_ms,
            })),
            None => {
                self.close_page_session(id_sm3).await?;
                Ok(None)
            }
        }
    }

    /// Ends a session (sign-out, or its token revoked).
    pub async fn close_page_session(&self, id_sm3: &str) -> Result<(), EventLogError> {
        sqlx::query("DELETE FROM page_sessions WHERE id_sm3 = $1")
            .bind(id_sm3)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventLog;

    const LIMITS: SessionLimits = SessionLimits {
        idle_ms: 1_000,
        absolute_ms: 10_000,
    };

    fn session(now: i64) -> PageSession {
        PageSession {
            token_digest: "digest".into(),
            csrf: "csrf".into(),
            started_ms: now,
            seen_ms: now,
        }
    }

    #[tokio::test]
    async fn a_session_ends_idle_at_its_limit_on_close_and_at_its_absolute_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = EventLog::open_embedded(dir.path()).await.expect("store");
        let store = log.platform();
        store
            .open_page_session("a", &session(0), LIMITS)
            .await
            .expect("open");
        let touch = |id: &'static str, now: i64| store.touch_page_session(id, now, LIMITS);
        assert_eq!(
            touch("a", 999).await.expect("touch").map(|s| s.seen_ms),
            Some(999)
        );
        // A clock a little behind does not move the last use back.
        assert_eq!(
            touch("a", 500).await.expect("touch").map(|s| s.seen_ms),
            Some(999)
        );
        assert!(touch("a", 1_998).await.expect("touch").is_some());
        assert!(touch("a", 2_998).await.expect("touch").is_none(), "idle");
        assert!(
            touch("a", 2_000).await.expect("touch").is_none(),
            "forgotten"
        );

        store
            .open_page_session("b", &session(0), LIMITS)
            .await
            .expect("open");
        store.close_page_session("b").await.expect("close");
        assert!(touch("b", 1).await.expect("touch").is_none());
        assert!(touch("never-issued", 1).await.expect("touch").is_none());

        store
            .open_page_session("c", &session(0), LIMITS)
            .await
            .expect("open");
        let mut now = 0;
        while now + 500 < LIMITS.absolute_ms {
            now += 500;
            assert!(touch("c", now).await.expect("touch").is_some(), "{now}");
        }
        assert!(touch("c", LIMITS.absolute_ms)
            .await
            .expect("touch")
            .is_none());
    }
}
