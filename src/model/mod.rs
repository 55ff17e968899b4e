//! The domain types: what the authorization server asks, what authentication
//! found, what the policy decided, the grant, and the log entry that ties them.
#![deny(clippy::arithmetic_side_effects)]

mod policy_input;
pub use policy_input::{to_document, ClientInput, ConnectionInput, GrantLimits, ToolCallInput};

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Longest scope accepted: far above any real one, small enough that a
/// request cannot fill the log through its scopes.
pub const MAX_SCOPE_BYTES: usize = 256;

/// Whether `scope` is an RFC 6749 §3.3 scope-token
/// (`1*( %x21 / %x23-5B / %x5D-7E )`): no space, quote or backslash, so a
/// scope can never become several once grants join them with spaces.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= MAX_SCOPE_BYTES
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// Why `scope` is not a scope-token, in words for a 400 or a deny reason.
pub fn scope_token_error(scope: &str) -> Option<String> {
    (!is_scope_token(scope)).then(|| {
        format!(
            "{scope:?} is not a scope-token (RFC 6749 3.3: 1 to {MAX_SCOPE_BYTES} printable \
             ASCII characters, no space, '\"' or '\\')"
        )
    })
}

/// One scope as it arrives in a request: refused unless it is a scope-token.
struct ScopeToken(String);

impl<'de> Deserialize<'de> for ScopeToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let scope = String::deserialize(deserializer)?;
        match scope_token_error(&scope) {
            None => Ok(Self(scope)),
            Some(message) => Err(serde::de::Error::custom(message)),
        }
    }
}

/// A request's list of scopes, each a scope-token; the error names the
/// element at fault (`scopes[2]`).
fn scope_tokens<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let tokens = Vec::<ScopeToken>::deserialize(deserializer)?;
    Ok(tokens.into_iter().map(|t| t.0).collect())
}

fn requested_scope_tokens<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<RequestedScopes, D::Error> {
    scope_tokens(deserializer).map(RequestedScopes::from)
}

fn optional_scope_tokens<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    scope_tokens(deserializer).map(Some)
}

/// How the authorization server learned who the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataSourceKind {
    Cimd,
    Dcr,
    Preregistered,
    IdJag,
    Wif,
}

/// The authorization server's own metadata (RFC 8414); `issuer` is required.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizationServer {
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// Any further RFC 8414 fields, passed to policy unchanged.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataSource {
    pub kind: MetadataSourceKind,
    pub authorization_server: AuthorizationServer,
    /// RFC 9728 protected resource metadata, as the AS saw it...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_resource_metadata: Option<Value>,
    /// ...or where trustpath fetches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_resource_metadata_url: Option<String>,
    /// Where trustpath fetches the AS's RFC 8414 metadata, to check that its
    /// `issuer` is the one named here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_server_metadata_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRequest {
    #[serde(deserialize_with = "crate::text::identifier")]
    pub client_id: String,
    #[serde(default)]
    pub document: Option<Value>,
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// A raw JWT. Never logged: only its header, claims and SHA-256 are kept.
    #[serde(default)]
    pub assertion: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::text::optional_identifier"
    )]
    pub iss: Option<String>,
    #[serde(deserialize_with = "crate::text::identifier")]
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Value>,
}

/// An RFC 8693 §4.1 actor: who acts, and in a nested `act`, the actor it
/// acts for. One shape only: a policy reading `act.sub` must never meet a
/// string where it expects an object (its rules would read undefined).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    #[serde(deserialize_with = "crate::text::identifier")]
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

/// An RFC 3339 time as sent; refused unless it parses (chrono keeps it in
/// range), so no later reader meets a time it cannot order.
fn rfc3339_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    chrono::DateTime::parse_from_rfc3339(&text)
        .map_err(|e| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time: {e}")))?;
    Ok(text)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    #[serde(deserialize_with = "crate::text::identifier")]
    pub approval_id: String,
    #[serde(deserialize_with = "crate::text::identifier")]
    pub approved_by: String,
    #[serde(deserialize_with = "rfc3339_time")]
    pub approved_at: String,
    /// RFC 8693 actor claim, possibly nested (`{"sub": ..., "act": {...}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// Scopes the human approved for the workflow, when the AS knows them.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_scope_tokens"
    )]
    pub scopes: Option<Vec<String>>,
}

/// `POST /v1/decisions` body, as sent by the authorization server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRequest {
    #[serde(default, deserialize_with = "crate::text::optional_identifier")]
    pub session_id: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    /// Every one a scope-token; checked here, at the edge. (Logged decisions
    /// read back through `Decision` are not re-judged.)
    #[serde(deserialize_with = "requested_scope_tokens")]
    pub scopes: RequestedScopes,
    #[serde(default, deserialize_with = "crate::text::optional_identifiers")]
    pub tools: Option<Vec<String>>,
    pub metadata_source: MetadataSource,
    pub client: ClientRequest,
    #[serde(default)]
    pub subject: Option<Subject>,
    #[serde(default)]
    pub delegation: Option<Delegation>,
}

/// Scopes the client asked for, deduplicated, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<String>")]
pub struct RequestedScopes(Vec<String>);

impl From<Vec<String>> for RequestedScopes {
    fn from(scopes: Vec<String>) -> Self {
        let mut seen = BTreeSet::new();
        Self(
            scopes
                .into_iter()
                .filter(|s| seen.insert(s.clone()))
                .collect(),
        )
    }
}

impl RequestedScopes {
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Scopes the PDP approved: always a subset of the requested ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovedScopes(Vec<String>);

impl ApprovedScopes {
    /// The only way to build approved scopes: what the policy offered,
    /// narrowed to what was requested, in request order. A policy cannot widen.
    pub fn intersect(requested: &RequestedScopes, offered: &BTreeSet<String>) -> Self {
        Self(
            requested
                .as_slice()
                .iter()
                .filter(|s| offered.contains(*s))
                .cloned()
                .collect(),
        )
    }
    pub fn none() -> Self {
        Self(Vec::new())
    }
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The OAuth `scope` string: space separated.
    pub fn to_scope_string(&self) -> String {
        self.0.join(" ")
    }
}

/// A requested scope that was not approved, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedScope {
    pub scope: String,
    pub reason: String,
}

/// Tools the grant permits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermittedTools(Vec<String>);

impl PermittedTools {
    /// The policy's tools, narrowed to the requested ones when the request names tools.
    pub fn narrow(offered: Vec<String>, requested: Option<&[String]>) -> Self {
        let mut seen = BTreeSet::new();
        Self(
            offered
                .into_iter()
                .filter(|t| requested.is_none_or(|r| r.contains(t)))
                .filter(|t| seen.insert(t.clone()))
                .collect(),
        )
    }
    pub fn none() -> Self {
        Self(Vec::new())
    }
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

// ---------------------------------------------------------------- authentication

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticationStatus {
    /// A cryptographic proof checked out.
    Verified,
    /// A valid client identity document, no key proof (public client).
    DocumentOnly,
    /// Something presented did not check out. Always denied.
    Failed,
    /// Nothing was presented that could be checked.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProofMethod {
    PrivateKeyJwt,
    WorkloadJwt,
    None,
}

/// What was kept of a presented JWT: never the token itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProofRecord {
    pub header: Value,
    pub claims: Value,
    pub sha256: String,
}

/// Where a document came from, so a reviewer can tell what trustpath saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Sent by the AS in the request.
    Inline,
    /// Fetched by trustpath (see `fetch`).
    Fetched,
    /// From trustpath's own configuration.
    Config,
}

/// Where the client identity document came from and what it hashed to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentRecord {
    pub source: Provenance,
    /// SHA-256 of the document: of the bytes as fetched, or of the inline
    /// JSON as serialised.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchRecord>,
    /// The document hash of this client's previous decision, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_sha256: Option<String>,
    /// Whether the document differs from the one at the previous decision.
    #[serde(default)]
    pub changed: bool,
}

/// Where the keys that checked a JWT came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeysRecord {
    pub source: Provenance,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchRecord>,
    /// The cached set lacked the assertion's `kid`, so it was fetched again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refreshed: bool,
}

/// The metadata chain: protected resource -> authorization server. Each
/// check is `None` when what it needs was not given.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetadataChain {
    /// The protected resource metadata's `resource` is the request's `resource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_matches: Option<bool>,
    /// The AS `issuer` is in the metadata's `authorization_servers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_listed: Option<bool>,
    /// Requested scopes missing from `scopes_supported` (policy decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported_scopes: Option<Vec<String>>,
    /// Fetched AS metadata names the same `issuer` (RFC 8414 §3.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_server_issuer_matches: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_resource_metadata: Option<SourceRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_server_metadata: Option<SourceRecord>,
    /// What did not check out or could not be fetched.
    pub reasons: Vec<String>,
}

/// Provenance and hash of a metadata document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRecord {
    pub source: Provenance,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchRecord>,
}

/// The authentication result, recorded apart from the policy decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Authentication {
    pub result: AuthenticationStatus,
    pub method: ProofMethod,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub key_id: Option<String>,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeysRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_chain: Option<Box<MetadataChain>>,
}

// ---------------------------------------------------------------- decision

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed with every requested scope.
    Approved,
    /// Allowed with fewer scopes than requested.
    Reduced,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Reduced => "reduced",
            Outcome::Denied => "denied",
        }
    }
}

/// The PDP's decision, after intersecting the policy's answer with the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub allow: bool,
    pub requested_scopes: RequestedScopes,
    pub approved_scopes: ApprovedScopes,
    pub denied_scopes: Vec<DeniedScope>,
    pub tools: PermittedTools,
    pub ttl_seconds: u64,
    #[serde(default)]
    pub reasons: Vec<String>,
}

impl Decision {
    /// A denial of everything requested, with one reason for all of it.
    /// This decision denied for `reason` whatever it was: a revocation
    /// logged before it covers its session.
    pub fn overruled(self, reason: &str) -> Self {
        if !self.allow {
            return self;
        }
        Self::deny_all(self.requested_scopes, vec![reason.to_string()])
    }

    pub fn deny_all(requested: RequestedScopes, reasons: Vec<String>) -> Self {
        let scope_reason = reasons.first().cloned().unwrap_or_default();
        Self {
            outcome: Outcome::Denied,
            allow: false,
            denied_scopes: requested
                .as_slice()
                .iter()
                .map(|s| DeniedScope {
                    scope: s.clone(),
                    reason: scope_reason.clone(),
                })
                .collect(),
            requested_scopes: requested,
            approved_scopes: ApprovedScopes::none(),
            tools: PermittedTools::none(),
            ttl_seconds: 0,
            reasons,
        }
    }
}

// ---------------------------------------------------------------- grant

/// The claims of a grant JWT. The log keeps these, never the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantClaims {
    pub iss: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    pub scope: String,
    pub tools: Vec<String>,
    pub sid: String,
    pub jti: String,
    pub decision_id: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Value>,
}

/// The grant as returned to the authorization server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub token: String,
    /// What the log keeps of the token.
    pub token_sha256: String,
    pub jti: String,
    pub expires_at: String,
    pub scope: String,
}

// ---------------------------------------------------------------- tool calls

/// `POST /v1/tool-calls` body, as sent by the MCP server or gateway (the
/// enforcement point) before it runs a tool call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallRequest {
    /// The grant token. Never logged: only its claims and SHA-256.
    #[serde(default)]
    pub grant: Option<String>,
    /// Instead of a token: the grant's id (`jti`), as an AS carries it in
    /// its own access token.
    #[serde(default, deserialize_with = "crate::text::optional_identifier")]
    pub grant_id: Option<String>,
    /// Instead of a token: the session, whose newest grant is checked.
    /// With a token or grant id, it must be that grant's session.
    #[serde(default, deserialize_with = "crate::text::optional_identifier")]
    pub session_id: Option<String>,
    #[serde(deserialize_with = "crate::text::identifier")]
    pub tool: String,
    /// The MCP method: `tools/call`, `resources/read`, `prompts/get`, ...
    #[serde(deserialize_with = "crate::text::identifier")]
    pub method: String,
    /// The call's arguments. Logged as names and a SHA-256, values only
    /// where the configuration allows.
    #[serde(default)]
    pub arguments: Option<Map<String, Value>>,
    /// The acting agent (the `sub` of the current actor).
    #[serde(default, deserialize_with = "crate::text::optional_identifier")]
    pub actor: Option<String>,
    /// The MCP server (resource) the call goes to: when given, it must be
    /// the grant's audience.
    #[serde(default, deserialize_with = "crate::text::optional_identifier")]
    pub resource: Option<String>,
    /// The client the enforcement point believes it serves: when given, it
    /// must be the client the grant was issued to.
    #[serde(default, deserialize_with = "crate::text::optional_identifier")]
    pub client_id: Option<String>,
}

/// MCP's method for calling a tool: the one a grant's `tools` list governs.
pub const TOOLS_CALL: &str = "tools/call";

/// Whether a grant can be acted on now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Active,
    Expired,
    Revoked,
    /// Not a grant trustpath signed (forged, malformed, unknown key), or
    /// one whose state could not be read.
    Invalid,
    /// No grant was presented, or the session has none.
    Missing,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::Expired => "expired",
            GrantStatus::Revoked => "revoked",
            GrantStatus::Invalid => "invalid",
            GrantStatus::Missing => "missing",
        }
    }
}

/// What trustpath found about a presented grant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantCheck {
    pub status: GrantStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// SHA-256 of the presented token, when a token was presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// The claims, only from a grant whose signature checked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<GrantClaims>,
    /// The grant's scopes as a list, for policies.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl GrantCheck {
    pub fn failed(status: GrantStatus, reason: String, token_sha256: Option<String>) -> Self {
        Self {
            status,
            reason: Some(reason),
            token_sha256,
            claims: None,
            scopes: Vec::new(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == GrantStatus::Active
    }
}

/// A tool call's arguments as the log may keep them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArgumentsSummary {
    /// SHA-256 of the arguments' RFC 8785 canonical JSON, so the enforcement
    /// point can show which exact arguments were checked.
    pub sha256: String,
    /// Top-level argument names, sorted.
    pub names: Vec<String>,
    /// Values of allow-listed arguments only.
    pub values: Map<String, Value>,
}

/// The PDP's answer to a tool call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolCallDecision {
    pub allow: bool,
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Scopes the call would need and the grant lacks (for step-up).
    pub required_scopes: Vec<String>,
}

impl ToolCallDecision {
    /// This answer denied for `reason`: a revocation logged before it covers
    /// its grant or session.
    pub fn overruled(mut self, reason: &str) -> Self {
        if self.allow {
            self.allow = false;
            self.reasons.insert(0, reason.to_string());
        }
        self
    }
}

/// Whether an answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheUse {
    Hit,
    Miss,
    /// Stale in the cache, confirmed unchanged by the server (`304`).
    Revalidated,
}

/// Where fetched bytes came from, for the decision log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRecord {
    pub url: String,
    pub status: u16,
    /// When the bytes were fetched (RFC 3339).
    pub fetched_at: String,
    pub cache: CacheUse,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// SHA-256 of the bytes as received.
    pub sha256: String,
}

/// One file of a loaded bundle, as the `policy_loaded` log entry lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    /// Relative to the policy directory, `/`-separated.
    pub path: String,
    pub sha256: String,
}

/// The OPA bundle a policy set came in, as the `policy_loaded` entry records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyBundleOrigin {
    /// SHA-256 of the bundle archive.
    pub sha256: String,
    /// `.manifest`'s revision (also the entries' `policy_revision`), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `.manifest`'s roots.
    pub roots: Vec<String>,
    /// The `[bundle]` key that signed it; absent when signatures are not required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// The accepted JWS algorithms are asymmetric only: an HMAC "verified" with
/// a public key as its secret is the classic algorithm-confusion attack.
pub fn parse_algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm;
    let alg = name.parse::<Algorithm>().ok()?;
    (!matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)).then_some(alg)
}
