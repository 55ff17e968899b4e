//! `GET /console/live`: new entries as server-sent events, on the search
//! page's filters, each a rendered table row. The page reads it with
//! `fetch` (an `EventSource` cannot send the bearer token).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::super::error::ApiError;
use super::super::log_routes::parse_search;
use super::super::AppState;
use super::pages;
use super::trail::Shown;
use crate::config::Role;
use crate::log::query::Filter;

/// Most entries one wake-up reads; a burst beyond it is read on the next.
const BATCH: u64 = 500;

pub async fn follow(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Some(console) = &state.console else {
        return Err(ApiError::not_found("the console is disabled"));
    };
    let caller = state.callers.authenticate(&headers)?;
    if !caller.role.permits(Role::Audit) {
        return Err(ApiError::forbidden(Role::Audit.name()));
    }
    let Query(params) = query.map_err(|e| ApiError::bad_field("query", e.body_text()))?;
    // A live view starts at the log's end: a page's cursor means nothing.
    let params: HashMap<String, String> = super::filled(params)
        .into_iter()
        .filter(|(name, _)| name != "cursor")
        .collect();
    let (filter, _, _) = parse_search(&params)?;
    let permit = console
        .followers
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable("too many live views are open; retry shortly"))?;
    let from = state
        .durable
        .size()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        watch(state, filter, from, tx).await;
        drop(permit);
    });
    let events = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Sends each durable entry from `from` on that matches, until the page
/// goes away.
async fn watch(
    state: Arc<AppState>,
    filter: Filter,
    mut from: u64,
    tx: mpsc::Sender<Result<Event, Infallible>>,
) {
    let mut durable = state.durable.clone();
    let filter = Arc::new(filter);
    while !tx.is_closed() {
        durable.grown().await;
        let Ok(size) = durable.size().await else {
            continue;
        };
        while from < size && !tx.is_closed() {
            let to = size.min(from.saturating_add(BATCH));
            let rows = {
                let state = state.clone();
                let filter = filter.clone();
                tokio::task::spawn_blocking(move || rows(&state, &filter, from, to)).await
            };
            let Ok(rows) = rows else { return };
            for (seq, row) in rows {
                let event = Event::default()
                    .event("entry")
                    .id(seq.to_string())
                    .data(row);
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            from = to;
        }
    }
}

/// The rendered rows of the entries in `[from, to)` that `filter` matches.
fn rows(state: &AppState, filter: &Filter, from: u64, to: u64) -> Vec<(u64, String)> {
    (from..to)
        .filter_map(|seq| {
            let shown = Shown::load(&state.store, seq).ok().flatten()?;
            let matches = match shown.entry() {
                Some(entry) => filter.matches(entry),
                None => filter.is_empty(),
            };
            matches.then(|| (seq, pages::row(&shown).into_string()))
        })
        .collect()
}
