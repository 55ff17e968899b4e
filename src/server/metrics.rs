//! `GET /metrics`: Prometheus text format (prometheus-client), behind the
//! `audit` role on the API port. Every label value comes from a fixed set
//! (an outcome, an authentication result, a route template, a status
//! code) or from trustpath's own state (the policy revision), never from a
//! request.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
use crate::decide::DenialCause;
use crate::identity::fetch::{FETCH_KINDS, FETCH_RESULTS};
use crate::log::WriteObserver;
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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    cause: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    kind: &'static str,
    result: &'static str,
}

/// A sink's name comes from the config, never from a request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

/// The log writer's batches, flushes, checkpoints and storage failures,
/// observed on its thread.
#[derive(Clone)]
pub struct WriterMetrics {
    batch_entries: Histogram,
    write_seconds: Histogram,
    flush_seconds: Histogram,
    checkpoint_size: Gauge,
    checkpoint_time: Gauge,
    storage_errors: Counter,
}

impl WriteObserver for WriterMetrics {
    fn batch(&self, entries: usize, write: Duration, flush: Duration) {
        self.batch_entries.observe(entries as f64);
        self.write_seconds.observe(write.as_secs_f64());
        self.flush_seconds.observe(flush.as_secs_f64());
    }

    fn checkpoint(&self, size: u64) {
        self.checkpoint_size
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        self.checkpoint_time.set(chrono::Utc::now().timestamp());
    }

    fn storage_error(&self) {
        self.storage_errors.inc();
    }
}

/// Grants issued by this process that have not expired yet: counts by
/// expiry second, so memory stays bounded by the longest grant lifetime.
#[derive(Default)]
struct ActiveGrants(Mutex<std::collections::BTreeMap<i64, u64>>);

impl ActiveGrants {
    fn issued(&self, expires_at: i64) {
        let mut by_second = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *by_second.entry(expires_at).or_default() += 1;
    }

    fn active(&self, now: i64) -> u64 {
        let mut by_second = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *by_second = by_second.split_off(&(now + 1));
        by_second.values().sum()
    }
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
    denials: Family<DenialLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    reload_ok: Gauge,
    fetches: Family<FetchLabels, Counter>,
    queue_depth: Gauge,
    pub writer: WriterMetrics,
    sink_lag: Family<SinkLabels, Gauge>,
    sink_delivered: Family<SinkLabels, Counter>,
    sink_failures: Family<SinkLabels, Counter>,
    grants_issued: Counter,
    grants_active: Gauge,
    revocations: Family<ResultLabels, Counter>,
    active_grants: ActiveGrants,
}

/// Raises `counter` to `total` (a count kept elsewhere, read at scrape).
fn catch_up(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
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
        let denials = Family::<DenialLabels, Counter>::default();
        registry.register(
            "denials",
            "Connection denials by cause (revoked, no_scope, policy_error, \
             authentication_failed, policy, signing_failed)",
            denials.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy reloads by result (ok, failed)",
            reloads.clone(),
        );
        let reload_ok = Gauge::default();
        reload_ok.set(1);
        registry.register(
            "policy_last_reload_ok",
            "1 if the last policy reload put its bundle in force (or none was tried), 0 if it failed",
            reload_ok.clone(),
        );
        let fetches = Family::<FetchLabels, Counter>::default();
        registry.register(
            "fetches",
            "Fetches of client documents, JWK Sets and metadata by kind and result \
             (hit, miss, revalidated, error)",
            fetches.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "log_queue_depth",
            "Appends waiting for the log writer",
            queue_depth.clone(),
        );
        let writer = WriterMetrics {
            batch_entries: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            write_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            flush_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            checkpoint_size: Gauge::default(),
            checkpoint_time: Gauge::default(),
            storage_errors: Counter::default(),
        };
        registry.register(
            "log_batch_entries",
            "Entries per log writer batch",
            writer.batch_entries.clone(),
        );
        registry.register(
            "log_batch_write_seconds",
            "Time to encode, hash and store one batch",
            writer.write_seconds.clone(),
        );
        registry.register(
            "log_flush_seconds",
            "Time to make one batch durable (fsync)",
            writer.flush_seconds.clone(),
        );
        registry.register(
            "log_checkpoint_size",
            "Entries covered by the latest checkpoint this server signed",
            writer.checkpoint_size.clone(),
        );
        registry.register(
            "log_checkpoint_timestamp_seconds",
            "When this server last signed a checkpoint (Unix time; age = time() - this)",
            writer.checkpoint_time.clone(),
        );
        registry.register(
            "log_storage_errors",
            "Decision log storage failures (appends, flushes, recoveries)",
            writer.storage_errors.clone(),
        );
        let sink_lag = Family::<SinkLabels, Gauge>::default();
        registry.register(
            "sink_lag_entries",
            "Durable entries a log sink has not delivered yet",
            sink_lag.clone(),
        );
        let sink_delivered = Family::<SinkLabels, Counter>::default();
        registry.register(
            "sink_delivered_entries",
            "Entries a log sink delivered",
            sink_delivered.clone(),
        );
        let sink_failures = Family::<SinkLabels, Counter>::default();
        registry.register(
            "sink_failures",
            "Failed deliveries of a log sink (each retried)",
            sink_failures.clone(),
        );
        let grants_issued = Counter::default();
        registry.register("grants_issued", "Grants signed", grants_issued.clone());
        let grants_active = Gauge::default();
        registry.register(
            "grants_active",
            "Grants this server signed that have not expired (revocations not subtracted)",
            grants_active.clone(),
        );
        let revocations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "revocations",
            "Revocations logged, by what they revoke (grant, session)",
            revocations.clone(),
        );
        Self {
            registry,
            decisions,
            tool_calls,
            requests,
            tree_size,
            log_ready,
            policy,
            denials,
            reloads,
            reload_ok,
            fetches,
            queue_depth,
            writer,
            sink_lag,
            sink_delivered,
            sink_failures,
            grants_issued,
            grants_active,
            revocations,
            active_grants: ActiveGrants::default(),
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

    pub fn denial(&self, cause: DenialCause) {
        self.denials
            .get_or_create(&DenialLabels {
                cause: cause.as_str(),
            })
            .inc();
    }

    /// A grant expiring at `expires_at` (Unix seconds) was signed.
    pub fn grant_issued(&self, expires_at: i64) {
        self.grants_issued.inc();
        self.active_grants.issued(expires_at);
    }

    /// A revocation of a `grant` or a `session` was logged.
    pub fn revocation(&self, what: &'static str) {
        self.revocations
            .get_or_create(&ResultLabels { result: what })
            .inc();
    }

    /// A policy reload put its bundle in force (`ok`) or did not.
    pub fn policy_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.reload_ok.set(i64::from(ok));
    }

    pub fn tool_call(&self, allowed: bool) {
        let result = if allowed { "allowed" } else { "denied" };
        self.tool_calls
            .get_or_create(&ToolCallLabels { result })
            .inc();
    }
}

/// The route template a response answered (`/v1/sessions/{session_id}`),
/// for the layers outside routing (the request's span).
#[derive(Debug, Clone)]
pub struct RouteTemplate(pub String);

/// Tags the response with its route template (the routes not timed).
pub async fn tag_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteTemplate(route));
    }
    response
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
    let mut response = next.run(request).await;
    response
        .extensions_mut()
        .insert(RouteTemplate(route.clone()));
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
    metrics
        .queue_depth
        .set(i64::try_from(state.log.queue_depth()).unwrap_or(i64::MAX));
    let counts = state.decider.retriever().fetch_counts();
    for kind in FETCH_KINDS {
        for (i, result) in FETCH_RESULTS.into_iter().enumerate() {
            let labels = FetchLabels {
                kind: kind.as_str(),
                result,
            };
            catch_up(&metrics.fetches.get_or_create(&labels), counts.get(kind, i));
        }
    }
    for sink in &state.sinks {
        use std::sync::atomic::Ordering::Relaxed;
        let labels = SinkLabels {
            sink: sink.name.clone(),
        };
        let stats = &sink.stats;
        metrics
            .sink_lag
            .get_or_create(&labels)
            .set(i64::try_from(stats.lag()).unwrap_or(i64::MAX));
        catch_up(
            &metrics.sink_delivered.get_or_create(&labels),
            stats.delivered.load(Relaxed),
        );
        catch_up(
            &metrics.sink_failures.get_or_create(&labels),
            stats.failures.load(Relaxed),
        );
    }
    metrics.grants_active.set(
        i64::try_from(metrics.active_grants.active(chrono::Utc::now().timestamp()))
            .unwrap_or(i64::MAX),
    );
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
