//! Proving the log: checkpoint, entries, inclusion and consistency proofs,
//! and the verifier key. All for the `audit` role.
#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{Audit, Authorized, PathId};
use super::AppState;
use crate::log::proof::{self, ProofError};
use crate::log::query::Filter;
use crate::log::sealed;
use crate::model::ConnectionInput;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

impl From<ProofError> for ApiError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::OutOfRange { field, message } => ApiError::bad_field(field, message),
            ProofError::Log(e) => internal(e),
        }
    }
}

pub async fn checkpoint(
    State(state): State<Arc<AppState>>,
    _: Authorized<Audit>,
) -> Result<Response, ApiError> {
    let note = state.store.latest_checkpoint().map_err(internal)?;
    let note = note.ok_or_else(|| ApiError::not_found("no checkpoint has been signed yet"))?;
    Ok(text(note))
}

pub async fn public_key(
    State(state): State<Arc<AppState>>,
    _: Authorized<Audit>,
) -> Result<Response, ApiError> {
    Ok(text(format!("{}\n", state.log_verifier.vkey())))
}

pub async fn entry(
    State(state): State<Arc<AppState>>,
    _: Authorized<Audit>,
    PathId(seq): PathId,
) -> Result<Response, ApiError> {
    let seq: u64 = seq.parse().map_err(|_| {
        ApiError::bad_field(
            "seq",
            format!("seq must be a non-negative integer, got {seq:?}"),
        )
    })?;
    let value = crate::log::query::entry_document(&state.store, seq).map_err(internal)?;
    let mut value = value.ok_or_else(|| ApiError::not_found(format!("no entry {seq}")))?;
    // What a third party hashes and checks (LOG-FORMAT.md): the committed
    // bytes, and the disclosures still held.
    let stored = state
        .store
        .entry(seq)
        .map_err(internal)?
        .unwrap_or_default();
    if !sealed::is_expired(&stored) {
        value["commitment"] = String::from_utf8_lossy(sealed::commitment(&stored))
            .into_owned()
            .into();
        value["disclosures"] = sealed::disclosures(&stored).map_err(internal)?.into();
    }
    Ok(Json(value).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    seq: u64,
    tree_size: Option<u64>,
}

pub async fn inclusion(
    State(state): State<Arc<AppState>>,
    _: Authorized<Audit>,
    query: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_field("query", e.body_text()))?;
    let size = proof::tree_size(&state.store, &state.log_verifier, "tree_size", q.tree_size)?;
    Ok(Json(proof::inclusion(&state.store, q.seq, size)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[serde(default)]
    from_seq: u64,
    limit: Option<usize>,
}

/// `GET /v1/log/entries?from_seq=N&limit=M`: entries in seq order from a
/// running server (a SIEM's pull, an export without stopping the server),
/// each as read back with its leaf hash; `next_from_seq` is null at the
/// log's end.
pub async fn entries(
    State(state): State<Arc<AppState>>,
    _: Authorized<Audit>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_field("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_field(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let size = state.store.next_seq().map_err(internal)?;
    let end = q.from_seq.saturating_add(limit as u64).min(size);
    let entries: Vec<_> = (q.from_seq..end)
        .map(|seq| entry_json(&state, seq))
        .collect::<Result<_, _>>()?;
    let next = (end < size).then_some(end);
    Ok(Json(json!({ "entries": entries, "next_from_seq": next })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[serde(default)]
    from: u64,
    to: Option<u64>,
}

/// `GET /v1/log/export?from=N&to=M`: the verifiable export of `log
/// export` (header, entries as stored, leaf hashes, the latest checkpoint
/// and a consistency proof to it), streamed from a running server, so an
/// export never needs the server stopped. `log verify --export` checks it.
pub async fn export(
    State(state): State<Arc<AppState>>,
    _: Authorized<Audit>,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_field("query", e.body_text()))?;
    if q.to.is_some_and(|to| to < q.from) {
        return Err(ApiError::bad_field("to", "to must not be below from"));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let store = state.store.clone();
    let verifier = state.log_verifier.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx,
            chunk: Vec::with_capacity(CHUNK),
        };
        let exported = crate::log::verify::export(&store, &verifier, q.from, q.to, &mut out)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|_| std::io::Write::flush(&mut out));
        if let Err(e) = exported {
            // Ends the body with an error: the client sees a broken
            // transfer, never a short export that looks whole.
            tracing::error!(error = %e, "log export failed");
            let _ = out.tx.blocking_send(Err(e));
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Bytes sent per chunk of a streamed export.
const CHUNK: usize = 64 * 1024;

/// Hands what the export writes to the response body, a chunk at a time.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<axum::body::Bytes>>,
    chunk: Vec<u8>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.chunk.extend_from_slice(buf);
        if self.chunk.len() >= CHUNK {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk.into()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

pub async fn consistency(
    State(state): State<Arc<AppState>>,
    _: Authorized<Audit>,
    query: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_field("query", e.body_text()))?;
    let to = proof::tree_size(&state.store, &state.log_verifier, "to", q.to)?;
    Ok(Json(proof::consistency(&state.store, q.from, to)?).into_response())
}

/// Largest page a caller may ask for.
const MAX_LIMIT: usize = 1000;
/// Most entries a session trail returns.
pub(crate) const SESSION_LIMIT: usize = 10_000;

/// Reads `GET /v1/decisions` parameters: the page's own (`limit`,
/// `cursor`), and the filter's, every name known, every value checked.
pub(crate) fn parse_search(
    params: &std::collections::HashMap<String, String>,
) -> Result<(Filter, usize, Option<u64>), ApiError> {
    let mut limit = 100usize;
    let mut cursor = None;
    for (name, value) in params {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_field(name, format!("limit must be 1 to {MAX_LIMIT}"))
                    })?
            }
            "cursor" => {
                cursor = Some(
                    URL_SAFE_NO_PAD
                        .decode(value)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|s| s.strip_prefix("before:").and_then(|n| n.parse().ok()))
                        .ok_or_else(|| {
                            ApiError::bad_field(name, "cursor is not one this server issued")
                        })?,
                )
            }
            _ => {}
        }
    }
    let filter = Filter::from_params(
        params
            .iter()
            .filter(|(name, _)| !["limit", "cursor"].contains(&name.as_str()))
            .map(|(name, value)| (name.as_str(), value.as_str())),
    )
    .map_err(|e| ApiError::bad_field(&e.field, e.message))?;
    Ok((filter, limit, cursor))
}

/// The opaque cursor a search page hands out for the entries below `seq`.
pub(crate) fn cursor_text(seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("before:{seq}"))
}

fn entry_json(state: &AppState, seq: u64) -> Result<serde_json::Value, ApiError> {
    crate::log::query::entry_document(&state.store, seq)
        .map_err(internal)?
        .ok_or_else(|| internal("indexed entry missing"))
}

pub async fn search(
    State(state): State<Arc<AppState>>,
    _: Authorized<Audit>,
    query: Result<
        Query<std::collections::HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::bad_field("query", e.body_text()))?;
    let (filter, limit, cursor) = parse_search(&params)?;
    let page = crate::log::query::query(&state.store, &filter, limit, cursor).map_err(internal)?;
    let entries: Vec<_> = page
        .seqs
        .iter()
        .map(|seq| entry_json(&state, *seq))
        .collect::<Result<_, _>>()?;
    let next = page.next_cursor.map(cursor_text);
    Ok(Json(json!({ "entries": entries, "next_cursor": next })).into_response())
}

/// A session's whole trust path, oldest first; each entry carries its seq
/// and leaf hash so it can be proven against a checkpoint.
pub async fn session(
    State(state): State<Arc<AppState>>,
    _: Authorized<Audit>,
    PathId(session_id): PathId,
) -> Result<Response, ApiError> {
    let filter = Filter {
        session: Some(session_id.clone()),
        ..Filter::default()
    };
    let page =
        crate::log::query::query(&state.store, &filter, SESSION_LIMIT, None).map_err(internal)?;
    if page.seqs.is_empty() {
        return Err(ApiError::not_found(format!(
            "no entries for session {session_id}"
        )));
    }
    let entries: Vec<_> = page
        .seqs
        .iter()
        .rev()
        .map(|seq| entry_json(&state, *seq))
        .collect::<Result<_, _>>()?;
    Ok(Json(json!({
        "session_id": session_id,
        "delegations": delegations(&entries),
        "entries": entries,
        "truncated": page.next_cursor.is_some(),
    }))
    .into_response())
}

/// Each human approval behind a session, once, with the first entry that
/// carried it; the agents' actor chains stay on the entries themselves.
fn delegations(entries: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut seen = std::collections::BTreeSet::new();
    entries
        .iter()
        .filter_map(|e| {
            let delegation = ConnectionInput::logged_delegation(&e["input"])?;
            seen.insert(delegation.approval_id.clone()).then(|| {
                let mut approval = json!(delegation);
                approval["first_seq"] = e["seq"].clone();
                approval
            })
        })
        .collect()
}
