//! A minimal client of trustpath's decision API, for authorization-server
//! authors who are not on Node: what to send before issuing a token, and
//! how to map the answer onto the OAuth response.
//!
//!     cargo run --example decide -- [REQUEST.json]
//!
//! `TRUSTPATH_URL` (default `http://127.0.0.1:8080`) and `TRUSTPATH_TOKEN`
//! (a `decide` caller's bearer token, when callers are configured) say where
//! to ask. The default request is `examples/requests/document-only.json`.

use std::process::ExitCode;

use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/requests/document-only.json"
        )
        .into()
    });
    let request: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let base = std::env::var("TRUSTPATH_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());

    let mut post = reqwest::Client::new()
        .post(format!("{base}/v1/decisions"))
        .json(&request);
    if let Ok(token) = std::env::var("TRUSTPATH_TOKEN") {
        post = post.bearer_auth(token);
    }
    let response = post.send().await?;
    let status = response.status();
    let answer: Value = response.json().await?;
    if !status.is_success() {
        // 4xx: the request was malformed (answer.field names the field);
        // 503: the decision could not be logged. Either way: no token.
        println!("{}", json!({"error": "server_error", "trustpath": answer}));
        return Ok(ExitCode::FAILURE);
    }

    let decision = &answer["decision"];
    let oauth = if decision["allow"] == true {
        // Issue the access token with exactly the approved scopes and no
        // longer than the grant lives; carry the session and grant ids.
        json!({
            "issue_token": {
                "scope": answer["grant"]["scope"],
                "expires_in": decision["ttl_seconds"],
                "trustpath_session_id": answer["session_id"],
                "trustpath_grant_jti": answer["grant"]["jti"],
            },
            "denied_scopes": decision["denied_scopes"],
        })
    } else if answer["authentication"]["result"] == "failed" {
        // The client did not prove who it is.
        json!({"error": "invalid_client", "error_description": reasons(&answer["authentication"]["reasons"])})
    } else if decision["requested_scopes"]
        .as_array()
        .is_some_and(|s| !s.is_empty())
        && decision["denied_scopes"].as_array().map(Vec::len)
            == decision["requested_scopes"].as_array().map(Vec::len)
        && decision["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == "no requested scope was approved"))
    {
        json!({"error": "invalid_scope", "error_description": reasons(&decision["reasons"])})
    } else {
        json!({"error": "access_denied", "error_description": reasons(&decision["reasons"])})
    };
    println!("{}", serde_json::to_string_pretty(&oauth)?);
    Ok(ExitCode::SUCCESS)
}

fn reasons(list: &Value) -> String {
    list.as_array()
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}
