//! HTTP API: routes, caller authentication and error mapping.

pub(crate) mod authzen;
pub(crate) mod callers;
pub(crate) mod connections;
pub mod console;
pub(crate) mod enforcement;
pub(crate) mod erasure_routes;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod log_routes;
pub mod metrics;
pub(crate) mod revocation_routes;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::decide::{DecideError, Decider};
use crate::grant::status::GrantChecker;
use crate::grant::GrantSigner;
use crate::lifecycle::PolicyRecorder;
use crate::log::checkpoint::NoteVerifier;
use crate::log::writer::LogHealth;
use crate::log::LogStore;
use crate::model::ConnectionRequest;
use crate::revocation::Revoker;
use crate::text::Printable;
use crate::tool_call::ToolCallChecker;
use crate::trace_context::TraceContext;
use callers::Callers;
use error::ApiError;
use extract::{Audit, Authorized, Decide, JsonBody, PathId};

pub struct AppState {
    pub decider: Decider,
    /// Puts reloaded policies in force, each logged first.
    pub policy_recorder: PolicyRecorder,
    pub tool_calls: ToolCallChecker,
    pub grants: Arc<GrantChecker>,
    pub revoker: Revoker,
    pub signer: Arc<GrantSigner>,
    pub store: LogStore,
    pub log_verifier: NoteVerifier,
    /// Redactions and expiries: the background task and erasure requests.
    pub retainer: Arc<crate::retention::Retainer>,
    pub callers: Callers,
    /// Decisions and tool-call checks in progress; none waits for a permit.
    pub in_flight: Semaphore,
    /// Whether the log takes entries: readiness.
    pub log_health: LogHealth,
    /// Where the data directory is, and the free space it must keep.
    pub data_dir: std::path::PathBuf,
    pub min_free_disk_bytes: u64,
    pub metrics: Arc<metrics::Metrics>,
    /// The log writer: its queue depth (metrics).
    pub log: crate::log::LogWriter,
    /// The running decision-log sinks: their lag (metrics).
    pub sinks: Vec<crate::sinks::SinkHandle>,
    /// OTLP span export, when configured.
    pub spans: Option<Arc<crate::telemetry::SpanExport>>,
    /// The grants' `iss`: the base of the URLs the discovery documents list.
    pub issuer: String,
    /// The console's settings; `None` when `[console] enabled = false`.
    pub console: Option<console::ConsoleSettings>,
    /// How far the log is durable (the console's live view follows it).
    pub durable: crate::sinks::DurableLog,
    /// How often a policy bundle is checked for a new one.
    pub bundle_poll: std::time::Duration,
}

impl AppState {
    /// Where trustpath is reached, as the discovery documents say: its
    /// issuer, without a trailing slash.
    pub fn public_url(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }

    /// The policy revision in force.
    pub fn revision(&self) -> String {
        self.decider
            .policies()
            .current()
            .revision()
            .as_str()
            .to_string()
    }

    /// The log's size as stored, read off the async workers.
    pub async fn log_size(&self) -> Result<u64, crate::log::LogError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.next_seq())
            .await
            .map_err(|e| crate::log::LogError::Storage(e.to_string()))?
    }

    /// A permit for one decision or tool-call check, or a 503 at once when
    /// `limits.max_in_flight_decisions` are in progress: an overloaded PDP
    /// answers "not now" quickly, and the AS denies, rather than queueing
    /// without bound.
    ///
    /// While the log's storage is failing nothing can be logged, so no
    /// decision can be answered: it is refused at once, before any work
    /// (or any wait on the failing store).
    pub fn admit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        if let Some(problem) = self.log_health.problem() {
            return Err(ApiError::unavailable(format!("{problem}; retry shortly")));
        }
        self.in_flight.try_acquire().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many decisions in progress; retry shortly",
            )
        })
    }
}

/// The API. Everything but `/health`, `/ready`, the grant JWKS and the entry schema needs an
/// authenticated caller, checked before the route's path, query or body
/// is looked at; unknown paths and methods get the same JSON errors.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let public = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/schemas/log-entry/v2.json", get(entry_schema))
        .route(
            "/.well-known/trustpath-configuration",
            get(discovery_document),
        )
        .route(
            "/.well-known/authzen-configuration",
            get(authzen::configuration),
        )
        .route_layer(middleware::from_fn(metrics::tag_route));
    let api = Router::new()
        .route(
            "/v1/decisions",
            post(create_decision).get(log_routes::search),
        )
        .route("/v1/sessions/{session_id}", get(log_routes::session))
        .route(
            "/v1/sessions/{session_id}/revoke",
            post(revocation_routes::revoke_session),
        )
        .route(
            "/v1/grants/{jti}/revoke",
            post(revocation_routes::revoke_grant),
        )
        .route("/v1/tool-calls", post(enforcement::tool_call))
        .route("/access/v1/evaluation", post(authzen::evaluation))
        .route("/access/v1/evaluations", post(authzen::evaluations))
        .route("/v1/introspect", post(enforcement::introspect))
        .route("/v1/decisions/{decision_id}", get(read_decision))
        .route("/v1/erasures", post(erasure_routes::erase))
        .route("/v1/log/checkpoint", get(log_routes::checkpoint))
        .route("/v1/log/public-key", get(log_routes::public_key))
        .route("/v1/log/entries", get(log_routes::entries))
        .route("/v1/log/export", get(log_routes::export))
        .route("/v1/log/entries/{seq}", get(log_routes::entry))
        .route("/v1/log/proof/inclusion", get(log_routes::inclusion))
        .route("/v1/log/proof/consistency", get(log_routes::consistency))
        .route("/metrics", get(metrics::scrape))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::record_request,
        ))
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    public
        .merge(console::router())
        .merge(api)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            open_mode_guard,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), trace_context))
        .with_state(state)
}

/// W3C Trace Context on every request: the caller's trace continued (or a
/// new one started), its id recorded in the log entries the request writes
/// and in the server's log lines, and `traceparent` sent back with
/// trustpath's span.
async fn trace_context(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let sent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let context = TraceContext::continue_or_start(sent);
    let header = header::HeaderValue::from_str(&context.to_string());
    let span = tracing::info_span!("request", trace_id = %context.trace_id);
    let method = request.method().clone();
    let start = std::time::SystemTime::now();
    let mut response = context
        .clone()
        .scope(tracing::Instrument::instrument(next.run(request), span))
        .await;
    if let Some(spans) = &state.spans {
        let route = response
            .extensions()
            .get::<metrics::RouteTemplate>()
            .map_or("unmatched", |r| r.0.as_str());
        spans.record(crate::telemetry::RequestSpan {
            context: &context,
            name: format!("{method} {route}"),
            method: method.as_str(),
            route,
            status: response.status().as_u16(),
            start,
            end: std::time::SystemTime::now(),
        });
    }
    if let Ok(value) = header {
        response.headers_mut().insert("traceparent", value);
    }
    response
}

/// Authenticates the caller (401 without a valid token) and hands it to
/// the handlers' role checks.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = state.callers.authenticate(request.headers())?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// In the open mode, even `/health` and the JWKS are served only to a
/// loopback `Host` and never cross-site.
async fn open_mode_guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.callers.is_open() {
        callers::local_only(request.headers())?;
    }
    Ok(next.run(request).await)
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", Printable(uri.path())))
}

async fn no_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", Printable(uri.path())),
    )
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let bundle = state.decider.policies().current();
    Json(json!({ "status": "ok", "policy_revision": bundle.revision().as_str() }))
}

/// Readiness: whether decisions can be made durable now. A failing log
/// (a full disk) makes the server not ready until it recovers by itself;
/// `/health` (liveness) stays ok meanwhile.
/// Readiness: every check with its result; 503 naming the first that
/// fails (for a load balancer or a Kubernetes readiness probe).
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let mut problems: Vec<String> = Vec::new();
    let mut check = |name: &str, problem: Option<String>, detail: Value| {
        let mut result = json!({ "ok": problem.is_none() });
        if let Some(p) = &problem {
            result["reason"] = json!(p);
            problems.push(p.clone());
        }
        if let (Value::Object(r), Value::Object(d)) = (&mut result, detail) {
            r.extend(d);
        }
        (name.to_string(), result)
    };
    let mut checks = serde_json::Map::new();
    let (name, result) = check("log_writer", state.log_health.problem(), json!({}));
    checks.insert(name, result);
    let store_problem = state
        .log_size()
        .await
        .err()
        .map(|e| format!("the log's store cannot be read: {e}"));
    let (name, result) = check("store", store_problem, json!({}));
    checks.insert(name, result);
    // A refused policy set leaves the one in force serving: still ready,
    // but the check says what was refused, when and why.
    let policies = state.decider.policies();
    let mut detail = json!({
        "revision": state.revision(),
        "source": policies.source().to_string(),
    });
    if let Some(bundle) = policies.current().bundle() {
        detail["bundle_sha256"] = json!(bundle.sha256);
        detail["signed_by"] = json!(bundle.signed_by);
    }
    if let Some(rejection) = policies.rejection() {
        detail["rejected"] = json!({
            "error": rejection.error,
            "at": rejection.at,
            "sha256": rejection.fingerprint,
        });
    }
    let (name, result) = check("policies", None, detail);
    checks.insert(name, result);
    let (name, result) = check(
        "signing_keys",
        None,
        json!({ "grant_kid": state.signer.kid() }),
    );
    checks.insert(name, result);
    if state.min_free_disk_bytes > 0 {
        let (problem, free) = match crate::disk::free_bytes(&state.data_dir) {
            Ok(free) if free < state.min_free_disk_bytes => (
                Some(format!(
                    "the data directory's disk has {} MB free, below the reserve of {} MB",
                    free / 1_000_000,
                    state.min_free_disk_bytes / 1_000_000
                )),
                Some(free),
            ),
            Ok(free) => (None, Some(free)),
            Err(e) => (
                Some(format!("the data directory's free space is unknown: {e}")),
                None,
            ),
        };
        let detail = json!({ "free_bytes": free, "reserve_bytes": state.min_free_disk_bytes });
        let (name, result) = check("disk", problem, detail);
        checks.insert(name, result);
    }
    match problems.first() {
        None => Json(json!({ "status": "ready", "checks": checks })).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reason": reason, "checks": checks })),
        )
            .into_response(),
    }
}

async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.signer.jwks()),
    )
        .into_response()
}

async fn create_decision(
    State(state): State<Arc<AppState>>,
    who: Authorized<Decide>,
    JsonBody(request): JsonBody<ConnectionRequest>,
) -> Result<Response, ApiError> {
    let _permit = state.admit()?;
    let outcome = state.decider.decide(request).await.map_err(|e| match e {
        // Not durable, so not answered: the AS must treat this as a deny.
        DecideError::Log(e) => ApiError::log(&e),
    })?;
    state
        .metrics
        .decision(outcome.decision.outcome, outcome.authentication.result);
    if let Some(cause) = outcome.denial {
        state.metrics.denial(cause);
    }
    if let Some(expires) = outcome
        .grant
        .as_ref()
        .and_then(|g| chrono::DateTime::parse_from_rfc3339(&g.expires_at).ok())
    {
        state.metrics.grant_issued(expires.timestamp());
    }
    tracing::info!(
        caller = %Printable(&who.caller),
        decision_id = %outcome.decision_id,
        session_id = %Printable(&outcome.session_id),
        outcome = ?outcome.decision.outcome,
        authentication = ?outcome.authentication.result,
        "decision"
    );
    Ok(Json(outcome).into_response())
}

/// `GET /.well-known/trustpath-configuration`: everything an integrator
/// configures, from one URL (after RFC 8414's shape: URLs under the
/// issuer). Public, like the JWKS it points to.
async fn discovery_document(State(state): State<Arc<AppState>>) -> Response {
    let base = state.public_url();
    let url = |path: &str| format!("{base}{path}");
    Json(json!({
        "issuer": state.issuer,
        "jwks_uri": url("/.well-known/jwks.json"),
        "grant_signing_alg_values_supported": ["EdDSA"],
        "decision_endpoint": url("/v1/decisions"),
        "tool_call_endpoint": url("/v1/tool-calls"),
        "introspection_endpoint": url("/v1/introspect"),
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "revocation_endpoints": {
            "grant": url("/v1/grants/{jti}/revoke"),
            "session": url("/v1/sessions/{session_id}/revoke"),
        },
        "authzen_configuration": url("/.well-known/authzen-configuration"),
        "access_evaluation_endpoint": url("/access/v1/evaluation"),
        "access_evaluations_endpoint": url("/access/v1/evaluations"),
        "decision_log": {
            "origin": state.log_verifier.origin(),
            "verifier_key": state.log_verifier.vkey(),
            "checkpoint_endpoint": url("/v1/log/checkpoint"),
            "public_key_endpoint": url("/v1/log/public-key"),
            "entries_endpoint": url("/v1/log/entries"),
            "export_endpoint": url("/v1/log/export"),
            "inclusion_proof_endpoint": url("/v1/log/proof/inclusion"),
            "consistency_proof_endpoint": url("/v1/log/proof/consistency"),
            "entry_schema": url("/schemas/log-entry/v2.json"),
        },
        "metrics_endpoint": url("/metrics"),
    }))
    .into_response()
}

/// The audit schema of log entries, at a stable URL: published, not secret.
async fn entry_schema() -> Response {
    const SCHEMA: &str = include_str!("../../schemas/log-entry.v2.json");
    ([(header::CONTENT_TYPE, "application/schema+json")], SCHEMA).into_response()
}

async fn read_decision(
    State(state): State<Arc<AppState>>,
    _: Authorized<Audit>,
    PathId(decision_id): PathId,
) -> Result<Response, ApiError> {
    let internal = |e: crate::log::LogError| ApiError::internal(e.to_string());
    let not_found = || ApiError::not_found(format!("no decision {}", Printable(&decision_id)));
    let seq = state
        .store
        .seq_of_decision(&decision_id)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    // As read back, with its leaf hash; the inclusion proof carries the
    // committed bytes to hash.
    let entry = crate::log::query::entry_document(&state.store, seq)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    Ok(Json(entry).into_response())
}
