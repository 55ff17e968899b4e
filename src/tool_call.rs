//! The tool-call pipeline: check the grant -> summarise the arguments ->
//! evaluate -> enforce -> log.
//!
//! Called by the MCP server or gateway before each tool call. Like the
//! connection pipeline it fails closed: whatever goes wrong denies, and the
//! denial is logged with its reason.
#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::ToolCallConfig;
use crate::digest::sha256_hex;
use crate::grant::status::GrantChecker;
use crate::identity::proof::PresentedJwt;
use crate::log::entry::ToolCallRecord;
use crate::log::{EntryReceipt, LogError, LogWriter, Record};
use crate::model::{
    to_document, ArgumentsSummary, GrantCheck, GrantStatus, ToolCallDecision, ToolCallInput,
    ToolCallRequest, TOOLS_CALL,
};
use crate::policy::verdict::ToolCallVerdict;
use crate::policy::PolicyStore;
use crate::time::rfc3339;

/// What the enforcement point is told.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCallOutcome {
    pub tool_call_id: String,
    pub allow: bool,
    pub reasons: Vec<String>,
    pub required_scopes: Vec<String>,
    pub grant_status: GrantStatus,
    pub session_id: Option<String>,
    pub grant_jti: Option<String>,
    /// The connection decision that issued the grant.
    pub decision_id: Option<String>,
    pub log_entry: EntryReceipt,
    pub policy_revision: String,
}

pub struct ToolCallChecker {
    grants: Arc<GrantChecker>,
    policies: Arc<PolicyStore>,
    config: ToolCallConfig,
    log: LogWriter,
}

impl ToolCallChecker {
    pub fn new(
        grants: Arc<GrantChecker>,
        policies: Arc<PolicyStore>,
        config: ToolCallConfig,
        log: LogWriter,
    ) -> Self {
        Self {
            grants,
            policies,
            config,
            log,
        }
    }

    /// `request` must have passed [`validate`] (the server checks).
    pub async fn check(&self, request: ToolCallRequest) -> Result<ToolCallOutcome, LogError> {
        let now = Utc::now();
        let tool_call_id = uuid::Uuid::now_v7().to_string();
        let Evaluated {
            input,
            mut decision,
            grant,
            policy_revision,
        } = evaluate(&self.grants, &self.policies, &self.config, &request, now);

        // 5. Log it; answer only once the entry is durable.
        let claims = grant.claims.as_ref();
        let session_id = claims.map(|c| c.sid.clone());
        let grant_jti = claims.map(|c| c.jti.clone());
        let decision_id = claims.map(|c| c.decision_id.clone());
        let record = Record::ToolCall(ToolCallRecord {
            tool_call_id: tool_call_id.clone(),
            session_id: session_id.clone(),
            grant_jti: grant_jti.clone(),
            decision_id: decision_id.clone(),
            client_id: claims.map(|c| c.sub.clone()),
            tool: request.tool,
            method: request.method,
            input,
            decision: decision.clone(),
            overruled: None,
        });
        let appended = self
            .log
            .append_all(rfc3339(now), policy_revision.clone(), vec![record])
            .await?;
        // A revocation logged while this call was checked wins.
        if let Some(reason) = &appended.overruled {
            decision = decision.overruled(reason);
        }
        let log_entry = appended
            .receipts
            .into_iter()
            .next()
            .ok_or(LogError::Corrupt)?;

        Ok(ToolCallOutcome {
            tool_call_id,
            allow: decision.allow,
            reasons: decision.reasons,
            required_scopes: decision.required_scopes,
            grant_status: grant.status,
            session_id,
            grant_jti,
            decision_id,
            log_entry,
            policy_revision,
        })
    }
}

/// Steps 1 to 4 of a check, before anything is logged.
struct Evaluated {
    input: Value,
    decision: ToolCallDecision,
    grant: GrantCheck,
    policy_revision: String,
}

/// Checks the grant, summarises the arguments, evaluates the policy on
/// exactly what will be logged, and enforces what holds whatever it says.
fn evaluate(
    grants: &GrantChecker,
    policies: &PolicyStore,
    config: &ToolCallConfig,
    request: &ToolCallRequest,
    now: chrono::DateTime<Utc>,
) -> Evaluated {
    // 1. The grant: signed by us, logged as issued, not revoked, not expired.
    let grant = match (&request.grant, &request.grant_id, &request.session_id) {
        (Some(token), _, _) => grants.check_token(token, now.timestamp()),
        (None, Some(jti), _) => grants.check_grant_id(jti, now.timestamp()),
        (None, None, Some(session_id)) => grants.check_session(session_id, now.timestamp()),
        (None, None, None) => GrantCheck::failed(
            GrantStatus::Missing,
            "no grant or session was presented".into(),
            None,
        ),
    };

    // 2. The arguments, as the log may keep them.
    let arguments = summarise_arguments(request, config);

    // 3. Evaluate the tool-call policy on exactly what will be logged.
    let bundle = policies.current();
    let typed = ToolCallInput {
        now: rfc3339(now),
        now_unix: now.timestamp(),
        tool: request.tool.clone(),
        method: request.method.clone(),
        actor: request.actor.clone(),
        session_id: request.session_id.clone(),
        grant_id: request.grant_id.clone(),
        resource: request.resource.clone(),
        client_id: request.client_id.clone(),
        arguments,
        grant: grant.clone(),
    };
    let input = to_document(&typed);
    let verdict = ToolCallVerdict::evaluate(&bundle, &input);

    // 4. Enforce what holds whatever the policy says.
    let decision = enforce(&typed, verdict);
    Evaluated {
        input,
        decision,
        grant,
        policy_revision: bundle.revision().as_str().to_string(),
    }
}

/// What `trustpath eval --tool-call` prints: the check as it would be
/// answered, and the input the policy saw. Nothing is logged.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCallEvaluation {
    pub allow: bool,
    pub reasons: Vec<String>,
    pub required_scopes: Vec<String>,
    pub grant_status: GrantStatus,
    pub policy_revision: String,
    pub input: Value,
}

/// A tool call checked against a stopped server's keys and log, without
/// logging it.
pub fn dry_run(
    grants: &GrantChecker,
    policies: &PolicyStore,
    config: &ToolCallConfig,
    request: &ToolCallRequest,
) -> ToolCallEvaluation {
    let checked = evaluate(grants, policies, config, request, Utc::now());
    ToolCallEvaluation {
        allow: checked.decision.allow,
        reasons: checked.decision.reasons,
        required_scopes: checked.decision.required_scopes,
        grant_status: checked.grant.status,
        policy_revision: checked.policy_revision,
        input: checked.input,
    }
}

/// A tool-call request that contradicts itself, before anything is checked.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidToolCall {
    pub field: &'static str,
    pub message: String,
}

/// Refuses a request whose parts disagree: a `grant_id` sent with a `grant`
/// token must be that token's `jti`, else one of them would be checked and
/// the other logged as if it had been.
pub fn validate(request: &ToolCallRequest) -> Result<(), InvalidToolCall> {
    let invalid = |field, message: String| Err(InvalidToolCall { field, message });
    if request.grant.is_none() && request.grant_id.is_none() && request.session_id.is_none() {
        return invalid(
            "grant",
            "give grant (the grant token), grant_id or session_id".into(),
        );
    }
    if request.tool.is_empty() {
        return invalid("tool", "tool must not be empty".into());
    }
    if request.method.is_empty() {
        return invalid("method", "method must not be empty".into());
    }
    if let (Some(token), Some(grant_id)) = (&request.grant, &request.grant_id) {
        let presented = PresentedJwt::inspect(token);
        let jti = presented.claim_str("jti");
        if jti != Some(grant_id.as_str()) {
            return invalid(
                "grant_id",
                format!(
                    "grant_id {grant_id:?} is not the jti of the grant token sent with it ({})",
                    jti.map_or_else(|| "it has none".to_string(), |j| format!("{j:?}"))
                ),
            );
        }
    }
    Ok(())
}

/// Names and a SHA-256 of every argument; values only where allow-listed,
/// since arguments can carry secrets and personal data.
pub fn summarise_arguments(request: &ToolCallRequest, config: &ToolCallConfig) -> ArgumentsSummary {
    let arguments = request.arguments.clone().unwrap_or_default();
    // RFC 8785 canonical JSON, so the enforcement point can reproduce the hash.
    let canonical = serde_json_canonicalizer::to_vec(&arguments).unwrap_or_default();
    let values: Map<String, Value> = arguments
        .iter()
        .filter(|(name, _)| config.logs_value(&request.tool, name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let mut names: Vec<String> = arguments.into_iter().map(|(name, _)| name).collect();
    names.sort();
    ArgumentsSummary {
        sha256: sha256_hex(&canonical),
        names,
        values,
    }
}

/// Applies the rules no policy can lift to the policy's verdict: the grant
/// must be active, belong to the session named, and list the tool for
/// `tools/call`. Reads only the logged input, so replay gives the same answer.
pub fn enforce(
    input: &ToolCallInput,
    verdict: Result<ToolCallVerdict, String>,
) -> ToolCallDecision {
    let grant = &input.grant;
    // The PDP's own denials come first, then what the policy said.
    let mut reasons = Vec::new();
    if !grant.is_active() {
        let why = grant.reason.as_deref().unwrap_or("no reason given");
        reasons.push(format!("grant is {}: {why}", grant.status.as_str()));
    }
    let tool = input.tool.as_str();
    if let Some(claims) = &grant.claims {
        if let Some(session) = input.session_id.as_deref() {
            if claims.sid != session {
                reasons.push(format!(
                    "grant belongs to session {}, not {session}",
                    claims.sid
                ));
            }
        }
        if let (Some(resource), Some(aud)) = (input.resource.as_deref(), claims.aud.as_deref()) {
            if resource != aud {
                reasons.push(format!("grant was issued for {aud}, not {resource}"));
            }
        }
        if let Some(client) = input.client_id.as_deref() {
            if claims.sub != client {
                reasons.push(format!("grant was issued to {}, not {client}", claims.sub));
            }
        }
        if input.method == TOOLS_CALL && !claims.tools.iter().any(|t| t == tool) {
            reasons.push(format!("tool {tool:?} is not in the grant"));
        }
    }
    let denied_by_pdp = !reasons.is_empty();
    let (allowed_by_policy, required_scopes) = match verdict {
        Ok(v) => {
            if !v.allow && v.reasons.is_empty() {
                reasons.push("denied by policy".to_string());
            }
            reasons.extend(v.reasons);
            (v.allow, v.required_scopes)
        }
        Err(reason) => {
            reasons.push(reason);
            (false, Vec::new())
        }
    };
    ToolCallDecision {
        allow: allowed_by_policy && !denied_by_pdp,
        reasons,
        required_scopes,
    }
}
