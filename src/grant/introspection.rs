//! RFC 7662 token introspection of grants.
#![deny(clippy::arithmetic_side_effects)]

use serde_json::{json, Value};

use crate::model::GrantCheck;

/// The introspection response for a checked grant. An inactive grant says
/// nothing more than `active: false` (RFC 7662 §2.2): why is in the log
/// and in tool-call answers, not handed to whoever holds the token.
pub fn response(check: &GrantCheck) -> Value {
    let Some(claims) = check.claims.as_ref().filter(|_| check.is_active()) else {
        return json!({ "active": false });
    };
    let mut body = json!({
        "active": true,
        // RFC 7662 §2.2: how the token is used. A grant is presented as a
        // bearer token (RFC 6750).
        "token_type": "Bearer",
        "iss": claims.iss,
        "scope": claims.scope,
        "client_id": claims.sub,
        "sub": claims.sub,
        "exp": claims.exp,
        "iat": claims.iat,
        "jti": claims.jti,
        "sid": claims.sid,
        "tools": claims.tools,
        "decision_id": claims.decision_id,
    });
    if let Some(aud) = &claims.aud {
        body["aud"] = json!(aud);
    }
    if let Some(act) = &claims.act {
        body["act"] = act.clone();
    }
    body
}
