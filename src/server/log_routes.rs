//! Proving the log: checkpoint, entries, inclusion and consistency proofs,
//! and the verifier key. All for the `audit` role.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::AppState;
use crate::config::Role;
use crate::log::merkle::{self, Hash};

fn b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

fn bad_param(field: &str, message: String) -> ApiError {
    let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message);
    err.field = Some(field.to_string());
    err
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The tree size proofs default to: the latest signed checkpoint's.
fn checkpoint_size(state: &AppState) -> Result<u64, ApiError> {
    let note = state.store.latest_checkpoint().map_err(internal)?;
    match note {
        Some(note) => Ok(state.log_verifier.open(&note).map_err(internal)?.size),
        None => Ok(0),
    }
}

pub async fn checkpoint(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.callers.authorize(&headers, Role::Audit)?;
    let note = state.store.latest_checkpoint().map_err(internal)?;
    let note = note.ok_or_else(|| ApiError::not_found("no checkpoint has been signed yet"))?;
    Ok(text(note))
}

pub async fn public_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.callers.authorize(&headers, Role::Audit)?;
    Ok(text(format!("{}\n", state.log_verifier.vkey())))
}

pub async fn entry(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    state.callers.authorize(&headers, Role::Audit)?;
    let seq: u64 = seq.parse().map_err(|_| {
        bad_param(
            "seq",
            format!("seq must be a non-negative integer, got {seq:?}"),
        )
    })?;
    let bytes = state.store.entry(seq).map_err(internal)?;
    let bytes = bytes.ok_or_else(|| ApiError::not_found(format!("no entry {seq}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes.to_vec()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    seq: u64,
    tree_size: Option<u64>,
}

pub async fn inclusion(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    state.callers.authorize(&headers, Role::Audit)?;
    let Query(q) = query.map_err(|e| bad_param("query", e.body_text()))?;
    let tree_size = match q.tree_size {
        Some(size) => size,
        None => checkpoint_size(&state)?,
    };
    let size = state.store.next_seq().map_err(internal)?;
    if tree_size > size {
        return Err(bad_param(
            "tree_size",
            format!("tree_size {tree_size} is beyond the log's {size} entries"),
        ));
    }
    if q.seq >= tree_size {
        return Err(bad_param(
            "seq",
            format!("seq {} is not in a tree of size {tree_size}", q.seq),
        ));
    }
    let store = &state.store;
    let proof = merkle::inclusion_proof(store, q.seq, tree_size).map_err(internal)?;
    let leaf = store.subtree_hash(0, q.seq).map_err(internal)?;
    let root = merkle::root(store, tree_size).map_err(internal)?;
    Ok(Json(json!({
        "seq": q.seq,
        "tree_size": tree_size,
        "leaf_hash": STANDARD.encode(leaf),
        "root_hash": STANDARD.encode(root),
        "proof": b64(&proof),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

pub async fn consistency(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    state.callers.authorize(&headers, Role::Audit)?;
    let Query(q) = query.map_err(|e| bad_param("query", e.body_text()))?;
    let to = match q.to {
        Some(to) => to,
        None => checkpoint_size(&state)?,
    };
    let size = state.store.next_seq().map_err(internal)?;
    if to > size {
        return Err(bad_param(
            "to",
            format!("to {to} is beyond the log's {size} entries"),
        ));
    }
    if q.from == 0 || q.from > to {
        return Err(bad_param(
            "from",
            format!("from must be between 1 and to ({to})"),
        ));
    }
    let store = &state.store;
    let proof = merkle::consistency_proof(store, q.from, to).map_err(internal)?;
    Ok(Json(json!({
        "from": q.from,
        "to": to,
        "from_root": STANDARD.encode(merkle::root(store, q.from).map_err(internal)?),
        "to_root": STANDARD.encode(merkle::root(store, to).map_err(internal)?),
        "proof": b64(&proof),
    }))
    .into_response())
}
