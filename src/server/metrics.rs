//! `GET /metrics`: Prometheus text format (prometheus-client), behind the
//! `audit` role on the API port. Every label value comes from a fixed set
//! (an outcome, an authentication result, a route template, a status
//! code) or from trustpath's own state (the policy revision), never from a
//! request.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::error::ApiError;
use super::extract::{Audit, Authorized};
use super::AppState;
use crate::model::{AuthenticationStatus, Outcome};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    outcome: &'static str,
    authentication: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolCallLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route's template (`/v1/sessions/{session_id}`), never the path.
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabels {
    revision: String,
}

/// The server's counters and gauges.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    tool_calls: Family<ToolCallLabels, Counter>,
    requests: Family<RequestLabels, Histogram>,
    tree_size: Gauge,
    log_ready: Gauge,
    policy: Family<RevisionLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("trustpath");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Connection decisions answered, by outcome and authentication result",
            decisions.clone(),
        );
        let tool_calls = Family::<ToolCallLabels, Counter>::default();
        registry.register(
            "tool_calls",
            "Tool-call checks answered, by result",
            tool_calls.clone(),
        );
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 0.25 ms to ~8 s.
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "API request latency by route template, method and status",
            requests.clone(),
        );
        let tree_size = Gauge::default();
        registry.register(
            "log_tree_size",
            "Entries in the decision log",
            tree_size.clone(),
        );
        let log_ready = Gauge::default();
        registry.register(
            "log_ready",
            "1 while the log takes entries, 0 while its storage fails",
            log_ready.clone(),
        );
        let policy = Family::<RevisionLabels, Gauge>::default();
        registry.register(
            "policy_revision",
            "The policy revision in force (value 1)",
            policy.clone(),
        );
        Self {
            registry,
            decisions,
            tool_calls,
            requests,
            tree_size,
            log_ready,
            policy,
        }
    }
}

impl Metrics {
    pub fn decision(&self, outcome: Outcome, authentication: AuthenticationStatus) {
        let authentication = match authentication {
            AuthenticationStatus::Verified => "verified",
            AuthenticationStatus::DocumentOnly => "document_only",
            AuthenticationStatus::Failed => "failed",
            AuthenticationStatus::None => "none",
        };
        self.decisions
            .get_or_create(&DecisionLabels {
                outcome: outcome.as_str(),
                authentication,
            })
            .inc();
    }

    pub fn tool_call(&self, allowed: bool) {
        let result = if allowed { "allowed" } else { "denied" };
        self.tool_calls
            .get_or_create(&ToolCallLabels { result })
            .inc();
    }
}

/// Times every routed request (a route layer, so the template is known).
pub async fn record_request(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RequestLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    state
        .metrics
        .requests
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub async fn scrape(
    State(state): State<Arc<AppState>>,
    _: Authorized<Audit>,
) -> Result<Response, ApiError> {
    let metrics = &state.metrics;
    let size = state
        .log_size()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    metrics
        .tree_size
        .set(i64::try_from(size).unwrap_or(i64::MAX));
    metrics
        .log_ready
        .set(i64::from(state.log_health.problem().is_none()));
    let revision = state.revision();
    metrics.policy.clear();
    metrics
        .policy
        .get_or_create(&RevisionLabels { revision })
        .set(1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
