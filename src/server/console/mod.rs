//! The incident-response console: read-only pages for `audit` callers at
//! `/console/`, rendered here (maud escapes every string), with a little
//! plain JavaScript that keeps the token in the tab's sessionStorage,
//! checks proofs with WebCrypto and follows new entries.
//!
//! Without JavaScript search and trails still work: a page asked for
//! without a token answers with a form that posts the token with that one
//! request. The token is never set in a cookie or put in a URL.

mod assets;
mod live;
mod pages;
mod trail;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use maud::Markup;

use super::callers::Caller;
use super::error::ApiError;
use super::log_routes::{parse_search, SESSION_LIMIT};
use super::AppState;
use crate::config::Role;
use crate::log::query::{self, Filter};
use pages::{Frame, SearchForm};
use trail::Shown;

/// What the console needs beyond the API's state.
pub struct ConsoleSettings {
    /// The signed-note verifier key the browser checks checkpoints with.
    pub log_verifier: String,
    /// Live views open at once: each holds a task reading the log.
    pub followers: Arc<tokio::sync::Semaphore>,
}

impl ConsoleSettings {
    /// Most live views open at once; one more is refused (503).
    pub const MAX_FOLLOWERS: usize = 64;

    pub fn new(log_verifier: String) -> Self {
        Self {
            log_verifier,
            followers: Arc::new(tokio::sync::Semaphore::new(Self::MAX_FOLLOWERS)),
        }
    }
}

/// Search results per page, unless the query names a `limit`.
const PAGE: usize = 50;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(search).post(search_with_token))
        .route(
            "/console/sessions/{session_id}",
            get(session).post(session_with_token),
        )
        .route("/console/live", get(live::follow))
        .route("/console/assets/{name}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
}

/// No script but our own file, no other origin, no framing, nothing kept.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A page with the console's frame.
fn html(state: &AppState, status: StatusCode, title: &str, main: Markup) -> Response {
    let log_verifier = state
        .console
        .as_ref()
        .map(|c| c.log_verifier.as_str())
        .unwrap_or("");
    let body = pages::page(
        &Frame {
            title,
            log_verifier,
        },
        main,
    );
    (status, body).into_response()
}

/// `None` for an `audit` caller; anyone else gets the token form (401)
/// or a refusal naming the role (403).
fn refusal(state: &AppState, caller: Result<Caller, ApiError>, here: &str) -> Option<Response> {
    match caller {
        Ok(caller) if caller.role.permits(Role::Audit) => None,
        Ok(caller) => Some(html(
            state,
            StatusCode::FORBIDDEN,
            "Not allowed",
            pages::token_form(
                here,
                &format!(
                    "The caller {:?} lacks the audit role; enter an audit token.",
                    caller.name
                ),
            ),
        )),
        Err(e) => {
            let problem = if e.status == StatusCode::UNAUTHORIZED {
                "This page needs an audit caller's bearer token."
            } else {
                e.message.as_str()
            };
            Some(html(
                state,
                e.status,
                "Audit token needed",
                pages::token_form(here, problem),
            ))
        }
    }
}

fn disabled() -> Response {
    ApiError::not_found("the console is disabled ([console] enabled = false)").into_response()
}

/// The search parameters given a value: an empty form field is no filter
/// (the search form sends every field).
fn filled(params: Vec<(String, String)>) -> Vec<(String, String)> {
    params.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// A posted form: the token, and whatever else the page takes.
fn split_token(fields: Vec<(String, String)>) -> (String, Vec<(String, String)>) {
    let mut token = String::new();
    let mut rest = Vec::new();
    for (name, value) in fields {
        if name == "token" {
            token = value;
        } else {
            rest.push((name, value));
        }
    }
    (token, rest)
}

async fn search(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    params: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let caller = state.callers.authenticate(&headers);
    let params = params.map(|Query(p)| p).unwrap_or_default();
    search_page(&state, caller, &here(&uri), params).await
}

async fn search_with_token(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (token, mut params) = split_token(fields);
    params.extend(query.map(|Query(p)| p).unwrap_or_default());
    let caller = state.callers.authenticate_token(&token);
    search_page(&state, caller, &here(&uri), params).await
}

/// The path and query a token form posts back to.
fn here(uri: &Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/console/".to_string())
}

async fn search_page(
    state: &Arc<AppState>,
    caller: Result<Caller, ApiError>,
    here: &str,
    params: Vec<(String, String)>,
) -> Response {
    if state.console.is_none() {
        return disabled();
    }
    if let Some(refusal) = refusal(state, caller, here) {
        return refusal;
    }
    let params = filled(params);
    let map: HashMap<String, String> = params.iter().cloned().collect();
    let (filter, limit, cursor) = match parse_search(&map) {
        Ok(parsed) => parsed,
        Err(e) => {
            let field = e.field.clone().unwrap_or_else(|| "query".into());
            let form = SearchForm {
                params: &params,
                error: Some((&field, &e.message)),
            };
            return html(
                state,
                StatusCode::BAD_REQUEST,
                "Decision log",
                pages::search(&form, &[], None),
            );
        }
    };
    let limit = if map.contains_key("limit") {
        limit
    } else {
        PAGE
    };
    let found = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || results(&state, &filter, limit, cursor)).await
    };
    let (rows, next) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return failure(state, &e.to_string()),
        Err(e) => return failure(state, &e.to_string()),
    };
    let next = next.map(|cursor| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in params.iter().filter(|(n, _)| n != "cursor") {
            query.append_pair(name, value);
        }
        query.append_pair("cursor", &cursor);
        format!("/console/?{}", query.finish())
    });
    let form = SearchForm {
        params: &params,
        error: None,
    };
    html(
        state,
        StatusCode::OK,
        "Decision log",
        pages::search(&form, &rows, next),
    )
}

/// A page of entries matching `filter`, newest first, and the next page's cursor.
fn results(
    state: &AppState,
    filter: &Filter,
    limit: usize,
    cursor: Option<u64>,
) -> Result<(Vec<Shown>, Option<String>), crate::log::LogError> {
    let page = query::query(&state.store, filter, limit, cursor)?;
    let rows = page
        .seqs
        .iter()
        .filter_map(|seq| Shown::load(&state.store, *seq).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rows, page.next_cursor.map(super::log_routes::cursor_text)))
}

fn failure(state: &AppState, message: &str) -> Response {
    tracing::error!(error = %message, "console page failed");
    html(
        state,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Error",
        pages::problem("The log could not be read", message),
    )
}

async fn session(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(session_id): Path<String>,
) -> Response {
    let caller = state.callers.authenticate(&headers);
    session_page(&state, caller, &here(&uri), session_id).await
}

async fn session_with_token(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    Path(session_id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (token, _) = split_token(fields);
    let caller = state.callers.authenticate_token(&token);
    session_page(&state, caller, &here(&uri), session_id).await
}

async fn session_page(
    state: &Arc<AppState>,
    caller: Result<Caller, ApiError>,
    here: &str,
    session_id: String,
) -> Response {
    if state.console.is_none() {
        return disabled();
    }
    if let Some(refusal) = refusal(state, caller, here) {
        return refusal;
    }
    let trail = {
        let state = state.clone();
        let session_id = session_id.clone();
        tokio::task::spawn_blocking(move || {
            let filter = Filter {
                session: Some(session_id),
                ..Filter::default()
            };
            let page = query::query(&state.store, &filter, SESSION_LIMIT, None)?;
            let entries = page
                .seqs
                .iter()
                .rev()
                .filter_map(|seq| Shown::load(&state.store, *seq).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, crate::log::LogError>((entries, page.next_cursor.is_some()))
        })
        .await
    };
    let (entries, truncated) = match trail {
        Ok(Ok(trail)) => trail,
        Ok(Err(e)) => return failure(state, &e.to_string()),
        Err(e) => return failure(state, &e.to_string()),
    };
    if entries.is_empty() {
        return html(
            state,
            StatusCode::NOT_FOUND,
            "No such session",
            pages::problem(
                "No such session",
                &format!("The log has no entries for session {session_id:?}."),
            ),
        );
    }
    html(
        state,
        StatusCode::OK,
        &format!("Session {session_id}"),
        pages::session(&session_id, &entries, truncated),
    )
}
