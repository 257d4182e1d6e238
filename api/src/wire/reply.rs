//! What a handler is given about the request as received, and what it answers: shared by the
//! ingress and every message family, and importing none of them.

use serde_json::{Map, Value};

/// The request as received, for the rejected-reports log and the events' metadata.
pub struct Received<'a> {
    pub mstype: &'a str,
    pub body: &'a [u8],
    pub body_sm3: String,
    /// The peer address, when the router was served with connect information.
    pub source: Option<std::net::IpAddr>,
    pub now: chrono::DateTime<chrono::FixedOffset>,
}

/// What an accepted message answers beyond the common fields.
pub struct Reply {
    pub ywlsh: String,
    pub duplicate: bool,
    pub extra: Map<String, Value>,
}

impl Reply {
    pub fn new(ywlsh: impl Into<String>, duplicate: bool) -> Reply {
        Reply {
            ywlsh: ywlsh.into(),
            duplicate,
            extra: Map::new(),
        }
    }
}

/// Who a refused report names, as far as it could be read.
pub struct Named<'a> {
    pub ei: &'a str,
    pub reqid: &'a str,
    pub ywlsh: &'a str,
}
