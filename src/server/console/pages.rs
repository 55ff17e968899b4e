//! The console's pages as maud templates: every string that came from a
//! request or the log goes through maud's escaping (no `PreEscaped` of
//! anything but our own constants).

use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::trail::{self, Content, Shown, Verdict};
use crate::log::entry::Record;
use crate::log::sealed::FieldGroup;
use crate::model::{Actor, Provenance};

/// What every page shares: the log's verifier key the proof check pins.
pub struct Frame<'a> {
    pub title: &'a str,
    pub log_verifier: &'a str,
}

pub fn page(frame: &Frame, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (frame.title) " · trustpath console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body data-log-verifier=(frame.log_verifier) {
                header.top {
                    a.brand href="/console/" { "trustpath" }
                    span.sub { "incident-response console" }
                    button #forget type="button" hidden { "Forget token" }
                }
                main #main data-title=(frame.title) { (main) }
            }
        }
    }
}

/// The page a request without an `audit` token gets: a form that keeps the
/// token in this tab (JavaScript) or sends it with this one request.
pub fn token_form(action: &str, problem: &str) -> Markup {
    html! {
        section.token #token-needed {
            h1 { "Audit token needed" }
            p.problem role="alert" { (problem) }
            form #token-form method="post" action=(action) {
                label for="token" { "Audit token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                button type="submit" { "Open" }
            }
            p.hint {
                "With JavaScript the token stays in this browser tab (sessionStorage) until the tab closes; "
                "without it, the form sends it with this one request. It is never put in a cookie or a URL."
            }
        }
    }
}

pub fn problem(heading: &str, message: &str) -> Markup {
    html! {
        section.problem-page {
            h1 { (heading) }
            p.problem role="alert" { (message) }
            p { a href="/console/" { "Back to search" } }
        }
    }
}

/// The search form's fields, as given.
pub struct SearchForm<'a> {
    pub params: &'a [(String, String)],
    /// A parameter the API refused, and why.
    pub error: Option<(&'a str, &'a str)>,
}

impl SearchForm<'_> {
    fn value(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

const TEXT_FILTERS: [(&str, &str, &str); 7] = [
    ("session_id", "Session", "sess-…"),
    ("client_id", "Client", "https://agent.example/client.json"),
    ("subject", "Subject", "alice@example.com"),
    ("issuer", "Issuer", "https://as.example"),
    ("scope", "Scope", "files:read"),
    ("since", "Since (RFC 3339)", "2026-11-28T00:00:00Z"),
    ("until", "Until (RFC 3339)", "2026-11-29T00:00:00Z"),
];

fn select(form: &SearchForm, name: &str, label: &str, options: &[&str]) -> Markup {
    let chosen = form.value(name);
    html! {
        div.field {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                option value="" selected[chosen.is_empty()] { "any" }
                @for option in options {
                    option value=(option) selected[chosen == *option] { (option) }
                }
            }
        }
    }
}

pub fn search(form: &SearchForm, rows: &[Shown], next: Option<String>) -> Markup {
    html! {
        h1 { "Decision log" }
        form.search #search method="get" action="/console/" {
            div.fields {
                @for (name, label, example) in TEXT_FILTERS {
                    div.field {
                        label for=(name) { (label) }
                        input id=(name) name=(name) type="text" value=(form.value(name))
                            placeholder=(example) autocomplete="off"
                            aria-invalid=[form.error.filter(|(f, _)| *f == name).map(|_| "true")];
                    }
                }
                (select(form, "scope_state", "Scope was", &["requested", "approved", "denied"]))
                (select(form, "outcome", "Outcome", &["approved", "reduced", "denied", "allowed"]))
                (select(form, "kind", "Kind", &crate::log::entry::KINDS))
            }
            @if let Some((field, message)) = form.error {
                p.problem role="alert" { "The " code { (field) } " filter: " (message) }
            }
            div.actions {
                button type="submit" { "Search" }
                label.follow #follow-label hidden {
                    input #follow type="checkbox";
                    " Follow new entries"
                }
                output #follow-status role="status" {}
            }
        }
        table.results #results {
            caption.visually-hidden { "Entries, newest first" }
            thead {
                tr {
                    th scope="col" { "Seq" }
                    th scope="col" { "Time" }
                    th scope="col" { "Entry" }
                    th scope="col" { "Outcome" }
                    th scope="col" { "Session" }
                    th scope="col" { "Client" }
                    th scope="col" { "Scopes" }
                }
            }
            tbody #rows {
                @for shown in rows { (row(shown)) }
            }
        }
        @if rows.is_empty() {
            p.empty #no-results { "No entries match." }
        }
        @if let Some(next) = next {
            nav.pager aria-label="More results" {
                a #older href=(next) { "Older entries →" }
            }
        }
    }
}

/// One search result: also what the live view sends for a new entry.
pub fn row(shown: &Shown) -> Markup {
    let verdict = Verdict::of(shown);
    let entry = shown.entry();
    let record = entry.map(|e| &e.record);
    html! {
        tr.(verdict.class()) data-seq=(shown.seq) {
            td.num { (shown.seq) }
            td { @if let Some(e) = entry { time datetime=(e.time) { (e.time) } } }
            td { (record.map(trail::kind_title).unwrap_or("Expired entry")) }
            td { (badge(verdict)) }
            td.id {
                @if let Some(session) = record.and_then(Record::session_id) {
                    a href=(session_href(session)) { (session) }
                }
            }
            td.id { (record.and_then(Record::client_id).unwrap_or("")) }
            td { @if let Some(record) = record { (scopes_summary(record)) } }
        }
    }
}

pub fn session_href(session: &str) -> String {
    format!(
        "/console/sessions/{}",
        url::form_urlencoded::byte_serialize(session.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    )
}

fn badge(verdict: Verdict) -> Markup {
    html! {
        span.badge.(verdict.class()) {
            span aria-hidden="true" { (verdict.symbol()) } " " (verdict.label())
        }
    }
}

fn scopes_summary(record: &Record) -> Markup {
    match record {
        Record::ConnectionDecision(r) => html! {
            span { (r.decision.requested_scopes.as_slice().join(" ")) }
            @if r.decision.allow {
                " → " span { (r.decision.approved_scopes.as_slice().join(" ")) }
            }
        },
        Record::ToolCall(r) => html! { "tool " code { (r.tool) } },
        Record::GrantIssued(r) => html! { (r.grant.scope) },
        _ => html! {},
    }
}

/// A session's trust path, oldest first.
pub fn session(session_id: &str, entries: &[Shown], truncated: bool) -> Markup {
    let clients: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter_map(|s| s.entry().and_then(|e| e.record.client_id()))
        .collect();
    let revoked = entries.iter().any(|s| Verdict::of(s) == Verdict::Revoked);
    let first = entries
        .iter()
        .find_map(|s| s.entry().map(|e| e.time.as_str()));
    let last = entries
        .iter()
        .rev()
        .find_map(|s| s.entry().map(|e| e.time.as_str()));
    html! {
        nav.back { a href="/console/" { "← Search" } }
        h1 {
            "Session " code #session-id { (session_id) }
            " " (copy_button(session_id, "session id"))
        }
        dl.summary {
            dt { "Clients" } dd { @for c in &clients { code { (c) } " " } }
            dt { "First entry" } dd { (first.unwrap_or("")) }
            dt { "Last entry" } dd { (last.unwrap_or("")) }
            dt { "Entries" } dd { (entries.len()) @if truncated { " (the first shown only)" } }
            dt { "Status" } dd {
                @if revoked { (badge(Verdict::Revoked)) } @else { "not revoked" }
            }
        }
        ol.timeline #timeline {
            @for shown in entries { (step(shown)) }
        }
    }
}

fn step(shown: &Shown) -> Markup {
    let verdict = Verdict::of(shown);
    html! {
        li.step.(verdict.class()) id={ "seq-" (shown.seq) } data-seq=(shown.seq) {
            div.step-head {
                h2 {
                    (match &shown.content {
                        Content::Read { entry, .. } => trail::kind_title(&entry.record),
                        Content::Expired => "Expired entry",
                        Content::Unreadable(_) => "Unreadable entry",
                    })
                }
                (badge(verdict))
                span.meta {
                    "seq " (shown.seq)
                    @if let Some(e) = shown.entry() {
                        " · " time datetime=(e.time) { (e.time) }
                        " · policy " code { (e.policy_revision) }
                    }
                }
            }
            @match &shown.content {
                Content::Read { entry, .. } => { (record_body(shown, &entry.record)) }
                Content::Expired => { p { "Retention expired this entry: its bytes are gone, its leaf hash still proves its place in the log." } }
                Content::Unreadable(why) => { p.problem { "The stored entry does not open: " (why) } }
            }
            div.step-foot {
                button.verify type="button" data-seq=(shown.seq) { "Verify" }
                output.verify-result role="status" data-seq=(shown.seq) {}
                details.stored {
                    summary { "Stored JSON" }
                    (copy_button(&shown.stored, "stored JSON"))
                    pre.stored-json { (shown.stored) }
                }
            }
        }
    }
}

fn copy_button(text: &str, what: &str) -> Markup {
    html! {
        button.copy type="button" data-copy=(text) aria-label={ "Copy " (what) } hidden { "Copy" }
    }
}

fn id_line(label: &str, value: &str) -> Markup {
    html! {
        div.kv { dt { (label) } dd { code { (value) } " " (copy_button(value, label)) } }
    }
}

fn provenance(source: Provenance) -> &'static str {
    match source {
        Provenance::Inline => "sent inline by the authorization server",
        Provenance::Fetched => "fetched by trustpath",
        _ => "trustpath's configuration",
    }
}

fn yes_no(ok: bool) -> &'static str {
    if ok {
        "✓ yes"
    } else {
        "✕ no"
    }
}

/// Where a metadata document came from, and its hash.
fn source_record(label: &str, record: &crate::model::SourceRecord) -> Markup {
    html! {
        (kv(label, html! {
            (provenance(record.source))
            @if let Some(fetch) = &record.fetch { ": " code { (fetch.url) } }
            br;
            "SHA-256 " code.hash { (record.sha256) }
        }))
    }
}

fn kv(label: &str, value: impl maud::Render) -> Markup {
    html! { div.kv { dt { (label) } dd { (value) } } }
}

fn redacted(shown: &Shown, group: FieldGroup) -> Markup {
    html! {
        @if shown.is_redacted(group) {
            p.redacted { "Redacted by retention (" (group.name()) "): its seal still proves it was there." }
        }
    }
}

fn record_body(shown: &Shown, record: &Record) -> Markup {
    match record {
        Record::ConnectionDecision(r) => {
            let input = trail::connection_input(record);
            let auth = &r.authentication;
            let d = &r.decision;
            html! {
                dl.ids { (id_line("Decision", &r.decision_id)) @if let Some(jti) = &r.grant_jti { (id_line("Grant", jti)) } }
                div.cards {
                    section.card.source {
                        h3 { "Metadata source" }
                        @if let Some(input) = &input {
                            dl {
                                (kv("Kind", format!("{:?}", input.metadata_source.kind).to_lowercase()))
                                (kv("Authorization server", html! { code { (input.metadata_source.authorization_server.issuer) } }))
                                @if let Some(ep) = &input.metadata_source.authorization_server.token_endpoint {
                                    (kv("Token endpoint", html! { code { (ep) } }))
                                }
                                @if let Some(resource) = &input.resource { (kv("Resource", html! { code { (resource) } })) }
                            }
                        } @else {
                            p.redacted { "The policy input is not held (redacted or expired by retention)." }
                        }
                        @if let Some(chain) = &auth.metadata_chain {
                            dl {
                                @if let Some(prm) = &chain.protected_resource_metadata {
                                    (source_record("Resource metadata", prm))
                                }
                                @if let Some(asm) = &chain.authorization_server_metadata {
                                    (source_record("AS metadata", asm))
                                }
                                @if let Some(ok) = chain.resource_matches { (kv("Resource matches", yes_no(ok))) }
                                @if let Some(ok) = chain.issuer_listed { (kv("Issuer listed", yes_no(ok))) }
                                @if let Some(ok) = chain.authorization_server_issuer_matches { (kv("AS issuer matches", yes_no(ok))) }
                            }
                            @if !chain.reasons.is_empty() { ul { @for reason in &chain.reasons { li.problem { (reason) } } } }
                        }
                    }
                    section.card.document {
                        h3 { "Client identity document" }
                        dl {
                            (kv("Client", html! { code { (r.client_id) } }))
                            @if let Some(doc) = &auth.document {
                                (kv("Where from", provenance(doc.source)))
                                @if let Some(fetch) = &doc.fetch {
                                    (kv("Fetched from", html! { code { (fetch.url) } " (HTTP " (fetch.status) ", " (fetch.fetched_at) ")" }))
                                }
                                (kv("SHA-256", html! { code.hash { (doc.sha256) } }))
                                @if doc.changed { (kv("Changed", "differs from this client's previous document")) }
                            } @else {
                                p { "No document recorded." }
                            }
                        }
                        (redacted(shown, FieldGroup::ClientDocument))
                    }
                    section.card.proof {
                        h3 { "Identity proof" }
                        dl {
                            (kv("Method", format!("{:?}", auth.method)))
                            (kv("Issuer", html! { code { (auth.issuer.as_deref().unwrap_or("—")) } }))
                            (kv("Subject", html! { code { (auth.subject.as_deref().unwrap_or("—")) } }))
                            (kv("Key id", html! { code { (auth.key_id.as_deref().unwrap_or("—")) } }))
                            @if let Some(proof) = &auth.proof { (kv("Proof SHA-256", html! { code.hash { (proof.sha256) } })) }
                            @if let Some(keys) = auth.keys.as_ref().and_then(|k| k.fetch.as_ref()) {
                                (kv("Keys fetched from", html! { code { (keys.url) } }))
                            }
                        }
                    }
                }
                div.side-by-side {
                    section.card.authentication {
                        h3 { "Authentication result" }
                        p.big { (format!("{:?}", auth.result)) }
                        @if !auth.reasons.is_empty() { ul { @for reason in &auth.reasons { li { (reason) } } } }
                    }
                    section.card.decision {
                        h3 { "Policy decision" }
                        p.big { (badge(Verdict::of_record(record))) }
                        @if !d.reasons.is_empty() { ul { @for reason in &d.reasons { li { (reason) } } } }
                        @if let Some(why) = &r.overruled { p.problem { "Overruled: " (why) } }
                        dl {
                            (kv("Lifetime", format!("{} s", d.ttl_seconds)))
                            (kv("Tools", d.tools.as_slice().join(", ")))
                        }
                    }
                }
                table.scopes {
                    caption { "Scopes" }
                    thead { tr { th scope="col" { "Requested" } th scope="col" { "Approved" } th scope="col" { "Denied, and why" } } }
                    tbody { tr {
                        td { ul { @for s in d.requested_scopes.as_slice() { li { code { (s) } } } } }
                        td { ul { @for s in d.approved_scopes.as_slice() { li { code { (s) } } } } }
                        td { ul { @for s in &d.denied_scopes { li { code { (s.scope) } ": " (s.reason) } } } }
                    } }
                }
                @if let Some(input) = &input {
                    @if let Some(subject) = &input.subject {
                        section.card.subject {
                            h3 { "End user" }
                            dl { (kv("Subject", html! { code { (subject.sub) } })) @if let Some(iss) = &subject.iss { (kv("Issuer", html! { code { (iss) } })) } }
                        }
                    }
                    @if let Some(delegation) = &input.delegation {
                        section.card.delegation {
                            h3 { "Delegation" }
                            dl {
                                (kv("Approved by", html! { code { (delegation.approved_by) } }))
                                (kv("Approval", html! { code { (delegation.approval_id) } }))
                                (kv("Approved at", &delegation.approved_at))
                            }
                            @if let Some(actor) = &delegation.actor { (actor_chain(actor)) }
                        }
                    }
                }
                (redacted(shown, FieldGroup::EndUser))
                (redacted(shown, FieldGroup::Body))
            }
        }
        Record::GrantIssued(r) => {
            let g = &r.grant;
            html! {
                dl.ids { (id_line("Grant", &g.jti)) (id_line("Decision", &r.decision_id)) }
                dl {
                    (kv("Scope", html! { code { (g.scope) } }))
                    (kv("Tools", g.tools.join(", ")))
                    @if let Some(aud) = &g.aud { (kv("Audience", html! { code { (aud) } })) }
                    (kv("Issued", trail::unix_time(g.iat)))
                    (kv("Expires", trail::expiry(g.exp)))
                    (kv("Token SHA-256", html! { code.hash { (r.token_sha256) } }))
                }
                @if let Some(act) = &g.act { (act_claim_chain(act)) }
            }
        }
        Record::ToolCall(r) => html! {
            dl.ids {
                (id_line("Tool call", &r.tool_call_id))
                @if let Some(jti) = &r.grant_jti { (id_line("Grant", jti)) }
            }
            dl {
                (kv("Tool", html! { code { (r.tool) } }))
                (kv("Method", html! { code { (r.method) } }))
                @if !r.decision.required_scopes.is_empty() {
                    (kv("Scopes it needed", r.decision.required_scopes.join(" ")))
                }
            }
            @if let Some(input) = trail::tool_call_input(record) {
                dl {
                    (kv("Arguments", html! {
                        (input.arguments.names.join(", ")) " · SHA-256 " code.hash { (input.arguments.sha256) }
                    }))
                    (kv("Grant check", format!("{:?}", input.grant.status).to_lowercase()))
                    @if let Some(actor) = &input.actor { (kv("Actor", html! { code { (actor) } })) }
                }
            }
            @if !r.decision.reasons.is_empty() { ul { @for reason in &r.decision.reasons { li { (reason) } } } }
            @if let Some(why) = &r.overruled { p.problem { "Overruled: " (why) } }
            (redacted(shown, FieldGroup::ToolArguments))
        },
        Record::GrantRevoked(r) => html! {
            dl.ids { (id_line("Revocation", &r.revocation_id)) (id_line("Grant", &r.grant_jti)) }
            dl { (kv("Reason", &r.reason)) (kv("Revoked by", &r.revoked_by)) }
        },
        Record::SessionRevoked(r) => html! {
            dl.ids { (id_line("Revocation", &r.revocation_id)) }
            dl {
                (kv("Reason", &r.reason))
                (kv("Revoked by", &r.revoked_by))
                (kv("Grants", r.grant_jtis.join(", ")))
            }
        },
        Record::PolicyLoaded(r) => html! {
            dl {
                (kv("Source", &r.directory))
                (kv("Files", r.files.len()))
                @if let Some(bundle) = &r.bundle {
                    (kv("Bundle SHA-256", html! { code { (bundle.sha256) } }))
                    (kv("Signed by", bundle.signed_by.as_deref().unwrap_or("not required")))
                }
            }
        },
        Record::PolicyRejected(r) => html! {
            dl {
                (kv("Source", &r.source))
                (kv("Content SHA-256", html! { code { (r.sha256) } }))
                (kv("Error", &r.error))
            }
        },
        Record::SigningKey(r) => html! {
            dl { (kv("Purpose", format!("{:?}", r.purpose))) (kv("Key id", html! { code { (r.key_id) } })) }
        },
        Record::Retention(r) => html! {
            dl { (kv("Entries changed", r.entries)) }
        },
    }
}

/// An RFC 8693 actor chain: who acts, for whom, outermost first.
fn actor_chain(actor: &Actor) -> Markup {
    let mut chain = vec![actor];
    while let Some(next) = chain.last().and_then(|a| a.act.as_deref()) {
        chain.push(next);
    }
    html! {
        div.act {
            h4 { "Actor chain (act)" }
            ol.actors { @for a in chain { li { code { (a.sub) } } } }
        }
    }
}

/// The same chain as a grant's `act` claim carries it.
fn act_claim_chain(act: &Value) -> Markup {
    let mut subs = Vec::new();
    let mut at = Some(act);
    while let Some(a) = at {
        if let Some(sub) = a.get("sub").and_then(Value::as_str) {
            subs.push(sub);
        }
        at = a.get("act");
    }
    html! {
        div.act {
            h4 { "Actor chain (act)" }
            ol.actors { @for sub in subs { li { code { (sub) } } } }
        }
    }
}
