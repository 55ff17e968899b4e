//! Optional OTLP span export (`[telemetry] otlp_endpoint`): one server span
//! per API request, in the caller's trace (W3C `traceparent`), under the
//! same trace and span ids the response's `traceparent` and the log
//! entries carry. Spans leave in batches on a thread of their own (OTLP
//! over HTTP, JSON encoding); a slow or absent collector drops spans, it
//! never holds a request.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::config::TelemetryConfig;
use crate::trace_context::TraceContext;

#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint: {0}")]
pub struct TelemetryError(String);

/// The span exporter, while one is configured.
pub struct SpanExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// One finished API request, as a span.
pub struct RequestSpan<'a> {
    pub context: &'a TraceContext,
    /// `GET /v1/sessions/{session_id}`: method and route template.
    pub name: String,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub start: SystemTime,
    pub end: SystemTime,
}

impl SpanExport {
    /// The exporter `config` asks for, or `None` when it names no endpoint.
    pub fn start(config: &TelemetryConfig) -> Result<Option<Self>, TelemetryError> {
        let Some(endpoint) = config.otlp_endpoint.clone() else {
            return Ok(None);
        };
        let service = config.service_name.clone();
        let timeout = config.timeout.0;
        // The blocking HTTP client the batch thread uses must be built
        // (and dropped) outside the async runtime.
        std::thread::spawn(move || {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpJson)
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .build()
                .map_err(|e| TelemetryError(e.to_string()))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build();
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            let tracer = provider.tracer("trustpath");
            Ok(Some(Self { provider, tracer }))
        })
        .join()
        .map_err(|_| TelemetryError("the exporter could not be set up".into()))?
    }

    /// Exports `span` (batched). A caller's trace that is not sampled stays
    /// unsampled, as W3C asks.
    pub fn record(&self, span: RequestSpan<'_>) {
        let ids = &span.context;
        let Ok(trace_id) = TraceId::from_hex(&ids.trace_id) else {
            return;
        };
        let Ok(span_id) = SpanId::from_hex(&ids.span_id) else {
            return;
        };
        let parent = match ids.parent_id.as_deref().map(SpanId::from_hex) {
            Some(Ok(parent_id)) => {
                let flags = u8::from_str_radix(&ids.flags, 16).unwrap_or(0);
                Context::new().with_remote_span_context(SpanContext::new(
                    trace_id,
                    parent_id,
                    TraceFlags::new(flags),
                    true,
                    TraceState::default(),
                ))
            }
            _ => Context::new(),
        };
        let attributes = vec![
            KeyValue::new("http.request.method", span.method.to_string()),
            KeyValue::new("http.route", span.route.to_string()),
            KeyValue::new("http.response.status_code", i64::from(span.status)),
        ];
        let mut exported = self
            .tracer
            .span_builder(span.name)
            .with_kind(SpanKind::Server)
            .with_trace_id(trace_id)
            .with_span_id(span_id)
            .with_start_time(span.start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        if span.status >= 500 {
            opentelemetry::trace::Span::set_status(
                &mut exported,
                Status::error(format!("HTTP {}", span.status)),
            );
        }
        opentelemetry::trace::Span::end_with_timestamp(&mut exported, span.end);
    }

    /// Sends what is batched and stops, waiting at most `within`.
    pub fn shutdown(self, within: Duration) {
        let _ = std::thread::spawn(move || {
            // Both dropped here too, off the async runtime.
            let Self { provider, tracer } = self;
            drop(tracer);
            if let Err(e) = provider.shutdown_with_timeout(within) {
                tracing::warn!(error = %e, "OTLP span export did not shut down cleanly");
            }
        })
        .join();
    }
}
