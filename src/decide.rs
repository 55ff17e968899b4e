//! The decision pipeline: authenticate -> evaluate -> trim -> grant -> log.
//!
//! Shared by the server and the CLI; it knows nothing of HTTP. Any failure
//! along the way denies (fail closed), and the denial is logged with its reason.
#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::digest::sha256_hex;
use crate::grant::GrantSigner;
use crate::identity::retrieval::Retriever;
use crate::identity::{AuthenticatedClient, Authenticator};
use crate::log::entry::GrantIssuedRecord;
use crate::log::index::ClientAndSession;
use crate::log::{ConnectionDecisionRecord, EntryReceipt, LogError, LogStore, LogWriter, Record};
pub use crate::model::GrantLimits;
use crate::model::{
    to_document, ApprovedScopes, Authentication, AuthenticationStatus, ClientInput,
    ConnectionInput, ConnectionRequest, Decision, DeniedScope, Grant, GrantClaims,
    MetadataSourceKind, Outcome, PermittedTools, RequestedScopes,
};
use crate::policy::verdict::ConnectionVerdict;
use crate::policy::PolicyStore;
pub use crate::time::rfc3339;

/// What a decision produced. `grant` and `log_entry` are absent in dry runs.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionOutcome {
    pub decision_id: String,
    pub session_id: String,
    pub authentication: Authentication,
    pub decision: Decision,
    pub grant: Option<Grant>,
    pub log_entry: Option<EntryReceipt>,
    pub policy_revision: String,
    /// Why a denial denied, as a fixed set (metrics); `None` for an allow.
    #[serde(skip)]
    pub denial: Option<DenialCause>,
}

/// Why a connection was denied, in a fixed set of causes: a metric label
/// never carries the free-text reasons (they come from policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialCause {
    /// The session (or, for the writer, the decision) was revoked.
    Revoked,
    /// No scope was requested.
    NoScope,
    /// The policy could not be evaluated: the decision failed closed.
    PolicyError,
    /// The client's identity or proof did not check out.
    AuthenticationFailed,
    /// The policy denied, approved none of the request, or gave no lifetime.
    Policy,
    /// The grant could not be signed: failed closed.
    SigningFailed,
}

impl DenialCause {
    pub fn as_str(self) -> &'static str {
        match self {
            DenialCause::Revoked => "revoked",
            DenialCause::NoScope => "no_scope",
            DenialCause::PolicyError => "policy_error",
            DenialCause::AuthenticationFailed => "authentication_failed",
            DenialCause::Policy => "policy",
            DenialCause::SigningFailed => "signing_failed",
        }
    }

    /// The cause of `decision`, checked in the order [`trim`] applies them.
    fn of(
        decision: &Decision,
        requested: &RequestedScopes,
        authentication: &Authentication,
        evaluation_failed: bool,
        session_revoked: bool,
    ) -> Option<Self> {
        if decision.allow {
            None
        } else if session_revoked {
            Some(DenialCause::Revoked)
        } else if requested.is_empty() {
            Some(DenialCause::NoScope)
        } else if evaluation_failed {
            Some(DenialCause::PolicyError)
        } else if authentication.result == AuthenticationStatus::Failed {
            Some(DenialCause::AuthenticationFailed)
        } else {
            Some(DenialCause::Policy)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The decision could not be made durable, so it must not be acted on.
    #[error("decision could not be logged: {0}")]
    Log(#[from] LogError),
}

/// Grant signing and logging: both present for the server, absent for dry runs.
pub struct Recording {
    pub signer: Arc<GrantSigner>,
    pub log: LogWriter,
    /// Read for revoked sessions.
    pub store: LogStore,
    pub issuer: String,
}

pub struct Decider {
    authenticator: Authenticator,
    retriever: Retriever,
    policies: Arc<PolicyStore>,
    limits: GrantLimits,
    recording: Option<Recording>,
}

impl Decider {
    pub fn new(
        authenticator: Authenticator,
        retriever: Retriever,
        policies: Arc<PolicyStore>,
        limits: GrantLimits,
        recording: Option<Recording>,
    ) -> Self {
        Self {
            authenticator,
            retriever,
            policies,
            limits,
            recording,
        }
    }

    pub fn policies(&self) -> &PolicyStore {
        &self.policies
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    pub fn retriever(&self) -> &Retriever {
        &self.retriever
    }

    /// Reads what the log holds about this client and session (recording
    /// pipelines only): one look-up, however many facts.
    async fn logged_state(
        &self,
        client_id: &str,
        session_id: &str,
    ) -> Option<Result<ClientAndSession, LogError>> {
        let recording = self.recording.as_ref()?;
        Some(crate::log::index::client_and_session(&recording.store, client_id, session_id).await)
    }

    /// Sets `changed` and `previous_sha256` on the client's document record
    /// from its previous decision in the log.
    fn note_document_change(
        logged: Option<&Result<ClientAndSession, LogError>>,
        client: &mut AuthenticatedClient,
    ) {
        let (Some(logged), Some(document)) = (logged, client.authentication.document.as_mut())
        else {
            return;
        };
        match logged {
            Ok(logged) => {
                let previous = logged.previous_document.clone();
                document.changed = previous.as_ref().is_some_and(|p| *p != document.sha256);
                document.previous_sha256 = previous;
            }
            // Unknown counts as changed: the policy then takes its cautious
            // branch (a short grant). Not a warning per request: a store
            // that cannot be read is failing, and the log writer reports
            // that at a bounded rate.
            Err(e) => {
                document.changed = true;
                tracing::debug!(error = %e, "previous document hash unreadable");
            }
        }
    }

    pub async fn decide(&self, request: ConnectionRequest) -> Result<DecisionOutcome, DecideError> {
        let now = Utc::now();
        let decision_id = uuid::Uuid::now_v7().to_string();
        let session_id = request
            .session_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

        // 1. Fetch what the AS did not send (document, keys, metadata),
        //    from the cache while fresh; then authenticate the client's
        //    identity document and proof, and note whether its document
        //    changed since its previous decision.
        let retrieved = self.retriever.retrieve(&request).await;
        let mut client = self
            .authenticator
            .authenticate(&request, &retrieved, now.timestamp())
            .await;
        let logged = self
            .logged_state(&request.client.client_id, &session_id)
            .await;
        Self::note_document_change(logged.as_ref(), &mut client);
        if client.authentication.result == AuthenticationStatus::Verified {
            self.retriever.keep_keys(&retrieved);
        }

        // 2. Evaluate the policy on exactly what will be logged, including
        //    whether the session was revoked (read from the log when recording).
        let session_revoked = logged.as_ref().and_then(session_revoked);
        let bundle = self.policies.current();
        let input = to_document(&policy_input(
            &request,
            &session_id,
            &client,
            now,
            &self.limits,
            session_revoked.as_deref(),
        ));
        let verdict = ConnectionVerdict::evaluate(&bundle, &input);

        // 3. Trim: intersect with the request, cap the lifetime, apply
        //    authentication and revocation.
        let requested_tools = request.tools.as_deref();
        let evaluation_failed = verdict.is_err();
        let mut decision = trim(
            &request.scopes,
            requested_tools,
            &client.authentication,
            verdict,
            &self.limits,
            session_revoked.as_deref(),
        );
        let mut denial = DenialCause::of(
            &decision,
            &request.scopes,
            &client.authentication,
            evaluation_failed,
            session_revoked.is_some(),
        );

        let Some(recording) = &self.recording else {
            return Ok(DecisionOutcome {
                decision_id,
                session_id,
                authentication: client.authentication,
                decision,
                grant: None,
                log_entry: None,
                policy_revision: bundle.revision().as_str().to_string(),
                denial,
            });
        };

        // 4. Sign a grant for an allowed decision.
        let mut grant = None;
        let mut issued = None;
        if decision.allow {
            let claims = grant_claims_for(
                &request,
                &client.client_id,
                &decision,
                &decision_id,
                &session_id,
                now,
                &recording.issuer,
            );
            match recording.signer.sign(&claims) {
                Ok(token) => {
                    grant = Some(Grant {
                        jti: claims.jti.clone(),
                        expires_at: rfc3339(DateTime::from_timestamp(claims.exp, 0).unwrap_or(now)),
                        scope: claims.scope.clone(),
                        token_sha256: sha256_hex(token.as_bytes()),
                        token,
                    });
                    issued = Some(claims);
                }
                Err(e) => {
                    decision = Decision::deny_all(decision.requested_scopes, vec![e.to_string()]);
                    denial = Some(DenialCause::SigningFailed);
                }
            }
        }

        // 5. Log the decision and the grant's issuance together; answer only
        //    once both are durable.
        let client_id = &request.client.client_id;
        let mut records = vec![Record::ConnectionDecision(Box::new(
            ConnectionDecisionRecord {
                decision_id: decision_id.clone(),
                session_id: session_id.clone(),
                client_id: client_id.clone(),
                input,
                authentication: client.authentication.clone(),
                decision: decision.clone(),
                grant_jti: issued.as_ref().map(|c| c.jti.clone()),
                overruled: None,
            },
        ))];
        if let (Some(claims), Some(grant)) = (issued, &grant) {
            records.push(Record::GrantIssued(GrantIssuedRecord {
                decision_id: decision_id.clone(),
                session_id: session_id.clone(),
                client_id: client_id.clone(),
                grant: claims,
                token_sha256: grant.token_sha256.clone(),
            }));
        }
        let policy_revision = bundle.revision().as_str().to_string();
        let appended = recording
            .log
            .append_all(rfc3339(now), policy_revision.clone(), records)
            .await?;
        // A revocation logged while this decision was made wins: the log
        // holds a denial, so that is the answer, and the grant is withheld.
        if let Some(reason) = &appended.overruled {
            decision = decision.overruled(reason);
            grant = None;
            denial = denial.or(Some(DenialCause::Revoked));
        }

        Ok(DecisionOutcome {
            decision_id,
            session_id,
            authentication: client.authentication,
            decision,
            grant,
            log_entry: appended.receipts.into_iter().next(),
            policy_revision,
            denial,
        })
    }
}

/// The input document the policy sees, and the log keeps. The raw assertion
/// is not in it: authentication carries its claims and SHA-256 instead.
pub fn policy_input(
    request: &ConnectionRequest,
    session_id: &str,
    client: &AuthenticatedClient,
    now: DateTime<Utc>,
    limits: &GrantLimits,
    session_revoked: Option<&str>,
) -> ConnectionInput {
    let is_cimd = request.metadata_source.kind == MetadataSourceKind::Cimd;
    ConnectionInput {
        now: rfc3339(now),
        now_unix: now.timestamp(),
        session_id: session_id.to_string(),
        resource: request.resource.clone(),
        scopes: request.scopes.clone(),
        tools: request.tools.clone(),
        metadata_source: request.metadata_source.clone(),
        client: ClientInput {
            client_id: request.client.client_id.clone(),
            host: is_cimd
                .then(|| crate::identity::document::cimd_host(&request.client.client_id))
                .flatten(),
            redirect_uri: request.client.redirect_uri.clone(),
            document: client.document.clone(),
            assertion_present: request.client.assertion.is_some(),
        },
        authentication: client.authentication.clone(),
        subject: request.subject.clone(),
        delegation: request.delegation.clone(),
        limits: *limits,
        session_revoked: session_revoked.map(str::to_string),
    }
}

/// Why a session may get no new grant: it was revoked, or its revocation
/// state could not be read (fail closed). `None` when neither.
fn session_revoked(logged: &Result<ClientAndSession, LogError>) -> Option<String> {
    match logged {
        Ok(ClientAndSession {
            session_revoked: None,
            ..
        }) => None,
        Ok(ClientAndSession {
            session_revoked: Some(seq),
            ..
        }) => Some(format!("session was revoked (log entry {seq})")),
        Err(e) => Some(format!("revocation state could not be read: {e}")),
    }
}

/// Turns the policy's answer into the PDP's decision. The policy can only
/// narrow: approved scopes are its offer intersected with the request.
/// A failed authentication or a revoked session denies whatever it says.
/// Replay calls this with what the log kept, so it reads nothing else.
pub fn trim(
    requested: &RequestedScopes,
    requested_tools: Option<&[String]>,
    authentication: &Authentication,
    verdict: Result<ConnectionVerdict, String>,
    limits: &GrantLimits,
    session_revoked: Option<&str>,
) -> Decision {
    let requested = requested.clone();
    if let Some(reason) = session_revoked {
        return Decision::deny_all(requested, vec![reason.to_string()]);
    }
    // A grant with no scope would be a bearer token that means whatever its
    // holder's resource server assumes: never minted.
    if requested.is_empty() {
        return Decision::deny_all(
            requested,
            vec!["no scope was requested: a grant without scope is never issued".to_string()],
        );
    }
    let verdict = match verdict {
        Ok(v) => v,
        Err(reason) => return Decision::deny_all(requested, vec![reason]),
    };
    if authentication.result == AuthenticationStatus::Failed {
        let mut reasons = vec!["authentication failed".to_string()];
        reasons.extend(authentication.reasons.iter().cloned());
        return Decision::deny_all(requested, reasons);
    }
    if !verdict.allow {
        let mut reasons = verdict.reasons.clone();
        if reasons.is_empty() {
            reasons.push("denied by policy".to_string());
        }
        let mut decision = Decision::deny_all(requested, reasons);
        for denied in &mut decision.denied_scopes {
            if let Some(why) = verdict.scope_reasons.get(&denied.scope) {
                denied.reason = why.clone();
            }
        }
        return decision;
    }

    let approved = ApprovedScopes::intersect(&requested, &verdict.scopes);
    if approved.is_empty() {
        let mut reasons = vec!["no requested scope was approved".to_string()];
        reasons.extend(verdict.reasons.iter().cloned());
        let mut decision = Decision::deny_all(requested, reasons);
        for denied in &mut decision.denied_scopes {
            denied.reason = scope_reason(&verdict, &denied.scope);
        }
        return decision;
    }
    let ttl_seconds = verdict
        .ttl_seconds
        .unwrap_or(limits.default_ttl_seconds)
        .min(limits.max_ttl_seconds);
    if ttl_seconds == 0 {
        return Decision::deny_all(
            requested,
            vec!["policy gave the grant no lifetime".to_string()],
        );
    }
    let denied_scopes: Vec<DeniedScope> = requested
        .as_slice()
        .iter()
        .filter(|s| !approved.contains(s))
        .map(|s| DeniedScope {
            scope: s.clone(),
            reason: scope_reason(&verdict, s),
        })
        .collect();
    let outcome = if denied_scopes.is_empty() {
        Outcome::Approved
    } else {
        Outcome::Reduced
    };
    Decision {
        outcome,
        allow: true,
        tools: PermittedTools::narrow(verdict.tools, requested_tools),
        requested_scopes: requested,
        approved_scopes: approved,
        denied_scopes,
        ttl_seconds,
        reasons: verdict.reasons,
    }
}

fn scope_reason(verdict: &ConnectionVerdict, scope: &str) -> String {
    verdict
        .scope_reasons
        .get(scope)
        .cloned()
        .unwrap_or_else(|| "not approved by policy".to_string())
}

/// The grant's claims. `client_id` is the identity authentication vouched
/// for: the grant is minted for it, not for whatever the request named.
fn grant_claims_for(
    request: &ConnectionRequest,
    client_id: &str,
    decision: &Decision,
    decision_id: &str,
    session_id: &str,
    now: DateTime<Utc>,
    issuer: &str,
) -> GrantClaims {
    let iat = now.timestamp();
    let ttl = i64::try_from(decision.ttl_seconds).unwrap_or(i64::MAX);
    GrantClaims {
        iss: issuer.to_string(),
        sub: client_id.to_string(),
        aud: request.resource.clone(),
        scope: decision.approved_scopes.to_scope_string(),
        tools: decision.tools.as_slice().to_vec(),
        sid: session_id.to_string(),
        // Time-ordered, so the log's grant postings are appended in order
        // rather than scattered over the index (measured: a few % faster).
        jti: uuid::Uuid::now_v7().to_string(),
        decision_id: decision_id.to_string(),
        iat,
        exp: iat.saturating_add(ttl),
        act: request
            .delegation
            .as_ref()
            .and_then(|d| d.actor.as_ref())
            .and_then(|a| serde_json::to_value(a).ok()),
    }
}
