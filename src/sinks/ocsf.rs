//! Log entries as OCSF 1.3 events, for SIEMs that ingest OCSF.
//!
//! Works on the entry as read back (redacted fields show as `_sealed`
//! placeholders, an expired entry as `{"expired": true}`), so every entry
//! maps, whatever retention left of it. The mapping, field by field, is in
//! LOG-FORMAT.md ("OCSF"):
//!
//! - a connection decision is two events, kept apart as the log keeps
//!   them: Authentication (3002) for the authentication result, and
//!   Authorize Session (3003) for the policy decision, its privileges the
//!   approved scopes;
//! - a tool-call check is API Activity (6003);
//! - every other entry (grants issued and revoked, policies, keys,
//!   retention) is a Base Event (0) carrying the entry under `unmapped`.
//!
//! Each event's `metadata.uid` is `SEQ` or `SEQ-PART`, stable across
//! redeliveries, so a SIEM can drop the duplicates at-least-once brings.

use serde_json::{json, Map, Value};

pub const OCSF_VERSION: &str = "1.3.0";

/// The OCSF events of entry `seq` (one or two).
pub fn events(seq: u64, entry: &Value) -> Vec<Value> {
    match entry.get("kind").and_then(Value::as_str) {
        Some("connection_decision") => {
            vec![authentication(seq, entry), authorize_session(seq, entry)]
        }
        Some("tool_call") => vec![api_activity(seq, entry)],
        _ => vec![base_event(seq, entry)],
    }
}

const SUCCESS: (u8, &str) = (1, "Success");
const FAILURE: (u8, &str) = (2, "Failure");

/// Success when the entry's decision allowed; anything else (a denial, or
/// no decision left to read) is a failure.
fn decision_status(entry: &Value) -> (u8, &'static str) {
    let allow = entry
        .pointer("/decision/allow")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if allow {
        SUCCESS
    } else {
        FAILURE
    }
}

fn text<'a>(entry: &'a Value, pointer: &str) -> Option<&'a str> {
    entry.pointer(pointer).and_then(Value::as_str)
}

/// The fields every event has; `class` is (category, class, activity).
fn event(
    seq: u64,
    part: Option<&str>,
    entry: &Value,
    (category, class, activity): (u32, u32, u32),
    (status_id, status): (u8, &str),
) -> Map<String, Value> {
    let time = text(entry, "/time")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp_millis());
    let uid = match part {
        Some(part) => format!("{seq}-{part}"),
        None => seq.to_string(),
    };
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "trustpath",
            "vendor_name": "trustpath",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "uid": uid,
        "log_name": "decision-log",
        "sequence": seq,
    });
    if let Some(session) = text(entry, "/session_id") {
        metadata["correlation_uid"] = json!(session);
    }
    let mut event = Map::new();
    event.insert("category_uid".into(), json!(category));
    event.insert("class_uid".into(), json!(class));
    event.insert("activity_id".into(), json!(activity));
    event.insert("type_uid".into(), json!(class * 100 + activity));
    let severity = if status_id == SUCCESS.0 { 1 } else { 3 };
    event.insert("severity_id".into(), json!(severity));
    event.insert("time".into(), json!(time));
    event.insert("status_id".into(), json!(status_id));
    event.insert("status".into(), json!(status));
    event.insert("metadata".into(), metadata);
    let mut trustpath = json!({
        "seq": seq,
        "kind": entry.get("kind").cloned().unwrap_or(Value::Null),
        "leaf_hash": entry.get("leaf_hash").cloned().unwrap_or(Value::Null),
        "policy_revision": entry.get("policy_revision").cloned().unwrap_or(Value::Null),
    });
    for field in ["decision_id", "trace_id", "node"] {
        if let Some(value) = entry.get(field).filter(|v| !v.is_null()) {
            trustpath[field] = value.clone();
        }
    }
    event.insert("unmapped".into(), json!({ "trustpath": trustpath }));
    event
}

/// The client as OCSF's `user`: the agent is the principal here.
fn client(entry: &Value) -> Value {
    let id = text(entry, "/client_id").unwrap_or("");
    json!({ "uid": id, "name": id, "type_id": 99, "type": "Agent" })
}

/// `user` (the client) and, when the entry has one, `session`: who a
/// connection decision's two events are about.
fn the_client_and_session(event: &mut Map<String, Value>, entry: &Value) {
    event.insert("user".into(), client(entry));
    if let Some(session) = text(entry, "/session_id") {
        event.insert("session".into(), json!({ "uid": session }));
    }
}

fn reasons(entry: &Value, pointer: &str) -> Option<String> {
    let list = entry.pointer(pointer)?.as_array()?;
    let joined: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    (!joined.is_empty()).then(|| joined.join("; "))
}

fn unmapped(event: &mut Map<String, Value>, field: &str, value: Value) {
    if let Some(t) = event
        .get_mut("unmapped")
        .and_then(|u| u.get_mut("trustpath"))
    {
        t[field] = value;
    }
}

/// Authentication (3002), Logon: the authentication result alone.
fn authentication(seq: u64, entry: &Value) -> Value {
    let result = text(entry, "/authentication/result").unwrap_or("none");
    let status = match result {
        "verified" | "document_only" => SUCCESS,
        "failed" => FAILURE,
        _ => (99, "Other"),
    };
    let mut event = event(seq, Some("authentication"), entry, (3, 3002, 1), status);
    the_client_and_session(&mut event, entry);
    event.insert("auth_protocol_id".into(), json!(99));
    let method = text(entry, "/authentication/method").unwrap_or("none");
    event.insert("auth_protocol".into(), json!(method));
    if let Some(detail) = reasons(entry, "/authentication/reasons") {
        event.insert("status_detail".into(), json!(detail));
    }
    let authentication = json!({
        "result": result,
        "issuer": entry.pointer("/authentication/issuer"),
        "subject": entry.pointer("/authentication/subject"),
        "key_id": entry.pointer("/authentication/key_id"),
    });
    unmapped(&mut event, "authentication", authentication);
    Value::Object(event)
}

/// Authorize Session (3003), Assign Privileges: the policy decision, its
/// privileges the approved scopes.
fn authorize_session(seq: u64, entry: &Value) -> Value {
    let status = decision_status(entry);
    let mut event = event(seq, Some("decision"), entry, (3, 3003, 1), status);
    the_client_and_session(&mut event, entry);
    let approved = entry
        .pointer("/decision/approved_scopes")
        .cloned()
        .unwrap_or_else(|| json!([]));
    event.insert("privileges".into(), approved);
    if let Some(detail) = reasons(entry, "/decision/reasons") {
        event.insert("status_detail".into(), json!(detail));
    }
    let decision = json!({
        "outcome": entry.pointer("/decision/outcome"),
        "requested_scopes": entry.pointer("/decision/requested_scopes"),
        "denied_scopes": entry.pointer("/decision/denied_scopes"),
        "ttl_seconds": entry.pointer("/decision/ttl_seconds"),
        "grant_jti": entry.get("grant_jti"),
    });
    unmapped(&mut event, "decision", decision);
    Value::Object(event)
}

/// API Activity (6003), Other: a tool call checked against its grant.
fn api_activity(seq: u64, entry: &Value) -> Value {
    let status = decision_status(entry);
    let mut event = event(seq, None, entry, (6, 6003, 99), status);
    let tool = text(entry, "/tool").unwrap_or("");
    event.insert(
        "actor".into(),
        json!({ "user": client(entry), "session": { "uid": entry.get("session_id") } }),
    );
    event.insert(
        "api".into(),
        json!({
            "operation": text(entry, "/method").unwrap_or(""),
            "request": { "uid": entry.get("tool_call_id") },
        }),
    );
    event.insert(
        "resources".into(),
        json!([{ "name": tool, "type": "mcp_tool" }]),
    );
    event.insert(
        "src_endpoint".into(),
        json!({ "name": text(entry, "/client_id") }),
    );
    if let Some(detail) = reasons(entry, "/decision/reasons") {
        event.insert("status_detail".into(), json!(detail));
    }
    unmapped(
        &mut event,
        "required_scopes",
        entry
            .pointer("/decision/required_scopes")
            .cloned()
            .unwrap_or(Value::Null),
    );
    Value::Object(event)
}

/// Base Event (0), Other: the entry itself under `unmapped`.
fn base_event(seq: u64, entry: &Value) -> Value {
    let mut event = event(seq, None, entry, (0, 0, 99), SUCCESS);
    let kind = match entry.get("kind").and_then(Value::as_str) {
        Some(kind) => kind,
        None if entry.get("expired").is_some() => "expired",
        None => "unknown",
    };
    event.insert("message".into(), json!(kind));
    unmapped(&mut event, "entry", entry.clone());
    Value::Object(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_decision_is_an_authentication_and_an_authorization() {
        let entry = json!({
            "seq": 7, "time": "2026-11-28T07:00:00Z", "policy_revision": "r1",
            "kind": "connection_decision", "decision_id": "d1", "session_id": "s1",
            "client_id": "https://agent.example/client",
            "authentication": {"result": "failed", "method": "private_key_jwt", "reasons": ["bad signature"]},
            "decision": {"outcome": "denied", "allow": false, "requested_scopes": ["a"],
                         "approved_scopes": [], "denied_scopes": [{"scope": "a", "reason": "r"}],
                         "reasons": ["authentication failed"]},
            "grant_jti": null, "leaf_hash": "x"
        });
        let events = events(7, &entry);
        assert_eq!(events.len(), 2);
        let (authn, authz) = (&events[0], &events[1]);
        assert_eq!(authn["class_uid"], 3002);
        assert_eq!(authn["type_uid"], 300201);
        assert_eq!(authn["status_id"], 2);
        assert_eq!(authn["status_detail"], "bad signature");
        assert_eq!(authn["time"], 1_795_849_200_000_i64);
        assert_eq!(authz["class_uid"], 3003);
        assert_eq!(authz["privileges"], json!([]));
        assert_eq!(authz["session"]["uid"], "s1");
        assert_eq!(authz["metadata"]["uid"], "7-decision");
        assert_eq!(authz["metadata"]["correlation_uid"], "s1");
    }

    #[test]
    fn an_expired_entry_is_a_base_event() {
        let events = events(3, &json!({"expired": true, "seq": 3}));
        assert_eq!(events[0]["class_uid"], 0);
        assert_eq!(events[0]["message"], "expired");
        assert_eq!(events[0]["metadata"]["uid"], "3");
    }
}
