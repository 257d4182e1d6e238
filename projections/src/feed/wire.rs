//! An event on the JetStream stream: where it goes, its headers, and its JSON form. Shared by
//! the relay (which writes it) and [`super::JetStreamFeed`] (which reads it).
//!
//! - subject `<prefix>.<aggregate_type>.<aggregate_id>`;
//! - `Nats-Msg-Id: <aggregate_type>:<aggregate_id>:<sequence>`, so the stream drops a
//!   republished event inside its duplicate window;
//! - `Custody-Tx-Id`, `Custody-Global-Position`, `Custody-Sequence`, `Custody-Event-Type`;
//! - payload: every field of the stored event, as JSON.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::HeaderMap;
use bytes::Bytes;
use custody_eventlog::StoredEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Cursor, FeedError};

pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
pub const HEADER_TX_ID: &str = "Custody-Tx-Id";
pub const HEADER_POSITION: &str = "Custody-Global-Position";
pub const HEADER_SEQUENCE: &str = "Custody-Sequence";
pub const HEADER_EVENT_TYPE: &str = "Custody-Event-Type";

/// Which stream carries the events, under which subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// The JetStream stream's name.
    pub stream: String,
    /// Subjects are `<prefix>.<aggregate_type>.<aggregate_id>`; the stream takes `<prefix>.>`.
    pub subject_prefix: String,
    /// How long the stream remembers message ids to drop duplicates.
    pub duplicate_window: Duration,
    /// Copies of the stream in a JetStream cluster (3 survives losing any one node; 1 for a
    /// single server). Applied when the stream is created.
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            stream: "CUSTODY_EVENTS".into(),
            subject_prefix: "custody.events".into(),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        }
    }
}

impl StreamSettings {
    /// Settings for a stream named `stream` under `subject_prefix` (e.g. a test's own).
    pub fn new(stream: impl Into<String>, subject_prefix: impl Into<String>) -> Self {
        StreamSettings {
            stream: stream.into(),
            subject_prefix: subject_prefix.into(),
            ..StreamSettings::default()
        }
    }

    /// The subject of one aggregate's events.
    pub fn subject(&self, aggregate_type: &str, aggregate_id: &str) -> String {
        format!(
            "{}.{}.{}",
            self.subject_prefix,
            subject_token(aggregate_type),
            subject_token(aggregate_id)
        )
    }

    /// The stream's configuration. Only options nats-server 2.9 knows: it silently ignores
    /// newer ones.
    pub fn stream_config(&self) -> Config {
        Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            // The store is the record: the stream keeps everything, on disk.
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            storage: StorageType::File,
            num_replicas: self.replicas.max(1),
            duplicate_window: self.duplicate_window,
            ..Config::default()
        }
    }
}

/// A subject token may not hold `.`, `*`, `>` or white space. Identifiers never do (they are hex
/// digests and serial numbers); should one ever, the subject only loses precision: the headers
/// and payload keep the exact identity.
fn subject_token(value: &str) -> String {
    let token: String = value
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect();
    if token.is_empty() {
        "_".into()
    } else {
        token
    }
}

/// The dedupe id of an event: its place in its aggregate.
pub fn message_id(event: &StoredEvent) -> String {
    format!(
        "{}:{}:{}",
        event.aggregate_type, event.aggregate_id, event.sequence
    )
}

#[derive(Serialize)]
struct WireEventRef<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    sequence: i64,
    event_type: &'a str,
    event_version: &'a str,
    payload: &'a Value,
    metadata: &'a Value,
    global_position: i64,
}

#[derive(Deserialize)]
struct WireEvent {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    global_position: i64,
}

/// The headers and payload of one event at `cursor`.
pub fn encode(
    event: &StoredEvent,
    cursor: Cursor,
) -> Result<(HeaderMap, Bytes), serde_json::Error> {
    let payload = serde_json::to_vec(&WireEventRef {
        aggregate_type: &event.aggregate_type,
        aggregate_id: &event.aggregate_id,
        sequence: event.sequence,
        event_type: &event.event_type,
        event_version: &event.event_version,
        payload: &event.payload,
        metadata: &event.metadata,
        global_position: event.global_position,
    })?;
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_MSG_ID, message_id(event).as_str());
    headers.insert(HEADER_TX_ID, cursor.tx_id.to_string().as_str());
    headers.insert(HEADER_POSITION, cursor.position.to_string().as_str());
    headers.insert(HEADER_SEQUENCE, event.sequence.to_string().as_str());
    headers.insert(HEADER_EVENT_TYPE, event.event_type.as_str());
    Ok((headers, Bytes::from(payload)))
}

/// The commit-order cursor a message's headers carry.
pub fn decode_cursor(headers: Option<&HeaderMap>) -> Result<Cursor, FeedError> {
    let headers = headers.ok_or_else(|| FeedError::Decode("no headers".into()))?;
    let field = |name: &str| -> Result<&str, FeedError> {
        headers
            .get(name)
            .map(|value| value.as_str())
            .ok_or_else(|| FeedError::Decode(format!("no {name} header")))
    };
    let tx_id = field(HEADER_TX_ID)?;
    let position = field(HEADER_POSITION)?;
    Ok(Cursor {
        tx_id: tx_id
            .parse()
            .map_err(|_| FeedError::Decode(format!("{HEADER_TX_ID}: {tx_id:?}")))?,
        position: position
            .parse()
            .map_err(|_| FeedError::Decode(format!("{HEADER_POSITION}: {position:?}")))?,
    })
}

/// A message back into the stored event and its cursor.
pub fn decode(
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<(StoredEvent, Cursor), FeedError> {
    let cursor = decode_cursor(headers)?;
    let wire: WireEvent =
        serde_json::from_slice(payload).map_err(|e| FeedError::Decode(e.to_string()))?;
    if wire.global_position != cursor.position {
        return Err(FeedError::Decode(format!(
            "payload position {} differs from header position {}",
            wire.global_position, cursor.position
        )));
    }
    Ok((
        StoredEvent {
            aggregate_type: wire.aggregate_type,
            aggregate_id: wire.aggregate_id,
            sequence: wire.sequence,
            event_type: wire.event_type,
            event_version: wire.event_version,
            payload: wire.payload,
            metadata: wire.metadata,
            global_position: wire.global_position,
        },
        cursor,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> StoredEvent {
        StoredEvent {
            aggregate_type: "Document".into(),
            aggregate_id: "ab12".into(),
            sequence: 3,
            event_type: "Deposited".into(),
            event_version: "1".into(),
            payload: json!({"Deposited": {"x": [1, 2]}}),
            metadata: json!({"prev_hash": "00"}),
            global_position: 42,
        }
    }

    #[test]
    fn round_trip() {
        let cursor = Cursor {
            tx_id: u64::MAX - 1,
            position: 42,
        };
        let (headers, payload) = encode(&event(), cursor).expect("encode");
        assert_eq!(
            headers.get(HEADER_MSG_ID).map(|v| v.as_str()),
            Some("Document:ab12:3")
        );
        let (decoded, decoded_cursor) = decode(Some(&headers), &payload).expect("decode");
        assert_eq!(decoded, event());
        assert_eq!(decoded_cursor, cursor);
    }

    #[test]
    fn refuses_foreign_messages() {
        assert!(decode(None, b"{}").is_err());
        let (headers, _) = encode(&event(), Cursor::START).expect("encode");
        assert!(decode(Some(&headers), b"not json").is_err());
    }

    #[test]
    fn subjects_are_single_tokens() {
        let settings = StreamSettings::default();
        assert_eq!(
            settings.subject("Document", "a.b c*>"),
            "custody.events.Document.a_b_c__"
        );
        assert_eq!(settings.subject("Cabinet", ""), "custody.events.Cabinet._");
    }
}
