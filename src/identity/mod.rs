//! Authentication of the client: its identity document and its identity
//! proof. The result is recorded apart from the policy decision.

pub mod document;
pub mod fetch;
pub(crate) mod metadata_chain;
pub mod proof;
pub mod replay;
pub mod retrieval;

use std::collections::{BTreeMap, HashMap};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::config::Config;
use crate::digest::sha256_hex;
use crate::model::{
    Authentication, AuthenticationStatus, ConnectionRequest, DocumentRecord, KeysRecord,
    MetadataSourceKind, ProofMethod, Provenance,
};
use proof::{Expectations, PresentedJwt, VerifiedProof};
use replay::ReplayGuard;
use retrieval::{FetchedKeys, Retrieved};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("clients.{client_id}.jwks: {message}")]
    ClientKeys { client_id: String, message: String },
    #[error("trusted_issuers[{issuer}]: {message}")]
    IssuerKeys { issuer: String, message: String },
}

/// A client configured ahead of time (pre-registered or DCR).
struct RegisteredClient {
    redirect_uris: Vec<String>,
    keys: Option<JwkSet>,
}

/// An issuer of workload identity (or ID-JAG) tokens that we trust.
struct TrustedIssuer {
    audience: String,
    /// Configured keys; `None` when they are fetched from a `jwks_uri`.
    keys: Option<JwkSet>,
}

/// The outcome of authentication, plus the redacted document policy may see.
pub struct AuthenticatedClient {
    pub authentication: Authentication,
    pub document: Option<Value>,
    /// The client a grant may be minted for: the identity the proof (or the
    /// document) vouched for, never just the text of the request.
    pub client_id: String,
}

pub struct Authenticator {
    algorithms: Vec<Algorithm>,
    leeway_seconds: u64,
    max_lifetime_seconds: u64,
    clients: BTreeMap<String, RegisteredClient>,
    trusted_issuers: HashMap<String, TrustedIssuer>,
    replay: ReplayGuard,
    /// The development setting `fetch.allow_http_loopback`.
    allow_http_loopback: bool,
}

impl Authenticator {
    pub fn from_config(config: &Config, replay: ReplayGuard) -> Result<Self, IdentityError> {
        let mut clients = BTreeMap::new();
        for (client_id, c) in &config.clients {
            let keys = c
                .jwks
                .as_ref()
                .map(proof::parse_jwks)
                .transpose()
                .map_err(|message| IdentityError::ClientKeys {
                    client_id: client_id.clone(),
                    message,
                })?;
            let redirect_uris = c.redirect_uris.clone();
            clients.insert(
                client_id.clone(),
                RegisteredClient {
                    redirect_uris,
                    keys,
                },
            );
        }
        let mut trusted_issuers = HashMap::new();
        for t in &config.trusted_issuers {
            let issuer_err = |message: String| IdentityError::IssuerKeys {
                issuer: t.issuer.clone(),
                message,
            };
            let jwks = match (&t.jwks, &t.jwks_file, &t.jwks_uri) {
                (Some(inline), _, _) => Some(inline.clone()),
                (None, Some(path), _) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| issuer_err(format!("{}: {e}", path.display())))?;
                    Some(
                        serde_json::from_str(&text)
                            .map_err(|e| issuer_err(format!("{}: {e}", path.display())))?,
                    )
                }
                (None, None, Some(_)) => None,
                (None, None, None) => return Err(issuer_err("no keys configured".into())),
            };
            let keys = jwks
                .as_ref()
                .map(proof::parse_jwks)
                .transpose()
                .map_err(issuer_err)?;
            let audience = t.audience.clone();
            trusted_issuers.insert(t.issuer.clone(), TrustedIssuer { audience, keys });
        }
        Ok(Self {
            algorithms: config
                .assertions
                .algorithms
                .iter()
                .filter_map(|a| proof::parse_algorithm(a))
                .collect(),
            leeway_seconds: config.assertions.leeway_seconds,
            max_lifetime_seconds: config.assertions.max_lifetime_seconds,
            clients,
            trusted_issuers,
            replay,
            allow_http_loopback: config.fetch.allow_http_loopback,
        })
    }

    /// Forgets spent `jti`s. One leeway of grace on top of what each entry
    /// asks for, so entries written before the leeway was counted in (they
    /// hold the bare `exp`) still outlive their assertion.
    pub fn prune_replay_cache(&self, now: i64) -> Result<usize, replay::ReplayError> {
        let leeway = i64::try_from(self.leeway_seconds).unwrap_or(i64::MAX);
        self.replay.prune(now.saturating_sub(leeway))
    }

    /// Checks the client identity document and the identity proof, using
    /// what was fetched for the request. Never fails: anything that does not
    /// check out becomes a reason.
    pub async fn authenticate(
        &self,
        request: &ConnectionRequest,
        retrieved: &Retrieved,
        now: i64,
    ) -> AuthenticatedClient {
        let kind = request.metadata_source.kind;
        let client = &request.client;
        let client_id = client.client_id.as_str();
        let registered = self.clients.get(client_id);
        let mut reasons = Vec::new();

        if kind == MetadataSourceKind::Cimd {
            reasons.extend(document::check_cimd_client_id(
                client_id,
                self.allow_http_loopback,
            ));
        }

        // The client identity document: inline from the AS, fetched, or our own record.
        let fetched = match &retrieved.document {
            Some(Ok(fetched)) => Some(fetched),
            Some(Err(reason)) => {
                reasons.push(reason.clone());
                None
            }
            None => None,
        };
        let effective = client.document.as_ref().or(fetched.map(|f| &f.value));
        if let (Some(_), Some(doc)) = (registered, &client.document) {
            // A configured client's keys are the configured ones; a request
            // that brings others is not trusted to replace them.
            for field in ["jwks", "jwks_uri"] {
                if doc.get(field).is_some() {
                    reasons.push(format!(
                        "client {client_id:?} is configured: its keys come from the configuration, \
                         and the request's document must not carry {field}"
                    ));
                }
            }
        }
        let mut document_record = None;
        let mut document_valid = false;
        if let Some(doc) = effective {
            let found =
                document::check_document(kind, client_id, doc, client.redirect_uri.as_deref());
            document_valid = found.is_empty();
            reasons.extend(found);
            document_record = Some(match fetched {
                Some(f) => DocumentRecord {
                    source: Provenance::Fetched,
                    sha256: f.record.sha256.clone(),
                    fetch: Some(f.record.clone()),
                    previous_sha256: None,
                    changed: false,
                },
                None => DocumentRecord {
                    source: Provenance::Inline,
                    sha256: sha256_hex(&serde_json::to_vec(doc).unwrap_or_default()),
                    fetch: None,
                    previous_sha256: None,
                    changed: false,
                },
            });
        } else if let Some(reg) = registered {
            if let Some(uri) = client.redirect_uri.as_deref() {
                if !reg.redirect_uris.iter().any(|u| u == uri) {
                    reasons.push(format!(
                        "redirect_uri {uri:?} is not registered for this client"
                    ));
                }
            }
            document_valid = true;
            document_record = Some(DocumentRecord {
                source: Provenance::Config,
                sha256: sha256_hex(client_id.as_bytes()),
                fetch: None,
                previous_sha256: None,
                changed: false,
            });
        } else if kind == MetadataSourceKind::Preregistered {
            reasons.push(format!("client_id {client_id:?} is not pre-registered"));
        }

        // The identity proof.
        let mut method = ProofMethod::None;
        let mut presented = None;
        let mut verified: Option<VerifiedProof> = None;
        let mut keys_record = None;
        if let Some(token) = &client.assertion {
            let jwt = PresentedJwt::inspect(token);
            let result = match kind {
                MetadataSourceKind::Wif | MetadataSourceKind::IdJag => {
                    method = ProofMethod::WorkloadJwt;
                    self.check_workload_jwt(token, &jwt, request, retrieved, &mut keys_record, now)
                }
                _ => {
                    method = ProofMethod::PrivateKeyJwt;
                    match client_keys(effective, registered, retrieved, &mut keys_record) {
                        Ok(keys) => {
                            self.check_client_assertion(token, &jwt, &keys, request, now)
                                .await
                        }
                        Err(reason) => Err(reason),
                    }
                }
            };
            match result {
                Ok(proof) => verified = Some(proof),
                Err(reason) => reasons.push(reason),
            }
            presented = Some(jwt);
        }

        let result = if !reasons.is_empty() {
            AuthenticationStatus::Failed
        } else if verified.is_some() {
            AuthenticationStatus::Verified
        } else if document_valid {
            AuthenticationStatus::DocumentOnly
        } else {
            AuthenticationStatus::None
        };
        let (issuer, subject, key_id) = match &verified {
            Some(p) => (
                Some(p.issuer.clone()),
                Some(p.subject.clone()),
                p.key_id.clone(),
            ),
            None => (
                None,
                document_valid.then(|| client_id.to_string()),
                presented
                    .as_ref()
                    .and_then(|p| p.key_id().map(str::to_string)),
            ),
        };
        AuthenticatedClient {
            authentication: Authentication {
                result,
                method,
                issuer,
                subject,
                key_id,
                reasons,
                document: document_record,
                proof: presented.map(|p| p.record()),
                keys: keys_record,
                metadata_chain: metadata_chain::check(request, retrieved).map(Box::new),
            },
            document: effective.map(document::redact),
            // Every proof is bound to the client_id (checked above), so the
            // verified identity and the request's client_id are one.
            client_id: client_id.to_string(),
        }
    }

    /// RFC 7523 client authentication: `iss` = `sub` = client_id, `aud` names
    /// the AS, short-lived, and each `jti` used once.
    async fn check_client_assertion(
        &self,
        token: &str,
        jwt: &PresentedJwt,
        keys: &JwkSet,
        request: &ConnectionRequest,
        now: i64,
    ) -> Result<VerifiedProof, String> {
        let client_id = request.client.client_id.as_str();
        let server = &request.metadata_source.authorization_server;
        let mut audiences = vec![server.issuer.clone()];
        audiences.extend(server.token_endpoint.clone());
        let expect = Expectations {
            issuer: client_id,
            subject: Some(client_id),
            bound_claim: None,
            audiences,
            leeway_seconds: self.leeway_seconds,
            max_lifetime_seconds: Some(self.max_lifetime_seconds),
            require_jti: true,
            algorithms: &self.algorithms,
        };
        let proof = proof::verify(token, jwt, keys, &expect, now)?;
        let jti = proof.jti.as_deref().unwrap_or_default();
        // The assertion is accepted until `exp + leeway`, so its jti must be
        // remembered at least that long.
        let leeway = i64::try_from(self.leeway_seconds).unwrap_or(i64::MAX);
        let remember_until = proof.exp.saturating_add(leeway);
        match self.replay.first_use(client_id, jti, remember_until).await {
            Ok(true) => Ok(proof),
            Ok(false) => Err(format!("assertion jti {jti:?} was already used (replay)")),
            // Fail closed: an unrecordable jti could be replayed later.
            Err(e) => Err(format!("assertion jti could not be recorded: {e}")),
        }
    }

    /// A workload JWT (e.g. a SPIFFE JWT-SVID) or an ID-JAG from a configured
    /// trusted issuer, bound to the request's client_id: a `wif` JWT's `sub`
    /// is the client, an ID-JAG names the client in its `client_id` claim.
    fn check_workload_jwt(
        &self,
        token: &str,
        jwt: &PresentedJwt,
        request: &ConnectionRequest,
        retrieved: &Retrieved,
        keys_record: &mut Option<KeysRecord>,
        now: i64,
    ) -> Result<VerifiedProof, String> {
        let iss = jwt.claim_str("iss").ok_or("workload token has no iss")?;
        let trusted = self
            .trusted_issuers
            .get(iss)
            .ok_or_else(|| format!("workload token issuer {iss:?} is not a trusted issuer"))?;
        let keys = match &trusted.keys {
            Some(keys) => {
                *keys_record = Some(KeysRecord {
                    source: Provenance::Config,
                    fetch: None,
                    refreshed: false,
                });
                keys.clone()
            }
            None => fetched_keys(retrieved.issuer_keys.as_ref(), keys_record)?,
        };
        let client_id = request.client.client_id.as_str();
        let (subject, bound_claim) = match request.metadata_source.kind {
            MetadataSourceKind::IdJag => (None, Some(("client_id", client_id))),
            _ => (Some(client_id), None),
        };
        let expect = Expectations {
            issuer: iss,
            subject,
            bound_claim,
            audiences: vec![trusted.audience.clone()],
            leeway_seconds: self.leeway_seconds,
            max_lifetime_seconds: Some(self.max_lifetime_seconds),
            require_jti: false,
            algorithms: &self.algorithms,
        };
        proof::verify(token, jwt, &keys, &expect, now)
    }
}

/// Keys for a client assertion: a configured client's configured keys and
/// nothing else; otherwise the document's inline `jwks`, or the set its
/// `jwks_uri` names (fetched).
fn client_keys(
    document: Option<&Value>,
    registered: Option<&RegisteredClient>,
    retrieved: &Retrieved,
    keys_record: &mut Option<KeysRecord>,
) -> Result<JwkSet, String> {
    if let Some(registered) = registered {
        let keys = registered
            .keys
            .clone()
            .ok_or_else(|| "no keys are configured for this client".to_string())?;
        *keys_record = Some(KeysRecord {
            source: Provenance::Config,
            fetch: None,
            refreshed: false,
        });
        return Ok(keys);
    }
    if let Some(doc) = document {
        if let Some(jwks) = doc.get("jwks") {
            *keys_record = Some(KeysRecord {
                source: Provenance::Inline,
                fetch: None,
                refreshed: false,
            });
            return proof::parse_jwks(jwks);
        }
        if doc.get("jwks_uri").is_some() {
            return fetched_keys(retrieved.client_keys.as_ref(), keys_record);
        }
    }
    Err("no keys are known for this client to check its assertion".to_string())
}

/// A JWK Set that was fetched for this request, with its provenance.
fn fetched_keys(
    fetched: Option<&Result<FetchedKeys, String>>,
    keys_record: &mut Option<KeysRecord>,
) -> Result<JwkSet, String> {
    match fetched {
        Some(Ok(keys)) => {
            *keys_record = Some(KeysRecord {
                source: Provenance::Fetched,
                fetch: Some(keys.fetched.record.clone()),
                refreshed: keys.refreshed,
            });
            proof::parse_jwks(&keys.fetched.value)
        }
        Some(Err(reason)) => Err(reason.clone()),
        None => Err("the keys at jwks_uri were not fetched".to_string()),
    }
}
