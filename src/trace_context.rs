//! W3C Trace Context (`traceparent`): the trace a request belongs to, so
//! the AS's span, trustpath's decision and the MCP server's tool calls join
//! in one trace. The server reads it from each request and scopes the
//! request's work in it; the log writer records its trace id in the
//! entries the request appends.

use std::fmt;

/// A request's place in a trace: the caller's trace id, and the span id
/// trustpath answers under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits, not all zero.
    pub trace_id: String,
    /// 16 lower-case hex digits: trustpath's own span for this request.
    pub span_id: String,
    /// Trace flags as sent (`01`: sampled).
    pub flags: String,
    /// The caller's span (`parent-id` of the `traceparent` it sent).
    pub parent_id: Option<String>,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// The context for a request that sent `traceparent` (the same trace,
    /// a new span of ours), or a new trace when it sent none or a malformed
    /// one (W3C: a receiver that cannot parse it restarts the trace).
    pub fn continue_or_start(traceparent: Option<&str>) -> Self {
        let (trace_id, parent_id, flags) = match traceparent.and_then(parse) {
            Some((trace_id, parent_id, flags)) => (trace_id, Some(parent_id), flags),
            None => (random_hex(16), None, "00".to_string()),
        };
        Self {
            trace_id,
            span_id: random_hex(8),
            flags,
            parent_id,
        }
    }

    /// Runs `work` with this context as the current one.
    pub async fn scope<F: std::future::Future>(self, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }

    /// The trace id of the request being served, if any.
    pub fn current_trace_id() -> Option<String> {
        CURRENT.try_with(|c| c.trace_id.clone()).ok()
    }
}

/// `traceparent` as trustpath sends it back: version 00, our span.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// (trace id, parent id, flags) of a version-00 `traceparent`; later
/// versions are read by their first four fields, as the spec asks.
fn parse(header: &str) -> Option<(String, String, String)> {
    let mut parts = header.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then(|| {
        (
            trace_id.to_string(),
            parent_id.to_string(),
            flags.to_string(),
        )
    })
}

/// `bytes` random bytes in hex, never all zero (an invalid id).
fn random_hex(bytes: usize) -> String {
    use rand::RngCore as _;
    let mut id = vec![0u8; bytes];
    while id.iter().all(|b| *b == 0) {
        rand::thread_rng().fill_bytes(&mut id);
    }
    hex::encode(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_trace_and_restarts_a_malformed_one() {
        let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::continue_or_start(Some(sent));
        assert_eq!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.flags, "01");
        assert_ne!(c.span_id, "00f067aa0ba902b7");
        assert!(c
            .to_string()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let c = TraceContext::continue_or_start(Some(bad));
            assert_ne!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
            assert_eq!(c.trace_id.len(), 32);
        }
        // A later version with more fields is read by its first four.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        let c = TraceContext::continue_or_start(Some(later));
        assert_eq!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
