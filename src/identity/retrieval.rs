//! What the authorization server did not send, fetched under the fetch
//! rules ([`super::fetch`]): the Client ID Metadata Document, the JWK Set its
//! `jwks_uri` names, a trusted workload issuer's JWK Set, and protected
//! resource and AS metadata given by URL. Only what checks out is cached.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::document;
use super::fetch::{FetchConfig, FetchKind, Fetched, Fetcher};
use super::proof::{self, PresentedJwt};
use crate::config::Config;
use crate::model::{ConnectionRequest, MetadataSourceKind};

/// A JWK Set fetched for one assertion.
#[derive(Debug, Clone)]
pub struct FetchedKeys {
    pub fetched: Fetched,
    /// The cached set lacked the assertion's `kid` and was fetched again.
    pub refreshed: bool,
}

/// Each item is `None` when there was nothing to fetch, and `Err` (a reason)
/// when fetching or checking failed.
#[derive(Debug, Clone, Default)]
pub struct Retrieved {
    pub document: Option<Result<Fetched, String>>,
    pub client_keys: Option<Result<FetchedKeys, String>>,
    pub issuer_keys: Option<Result<FetchedKeys, String>>,
    pub protected_resource_metadata: Option<Result<Fetched, String>>,
    pub authorization_server_metadata: Option<Result<Fetched, String>>,
}

pub struct Retriever {
    fetcher: Fetcher,
    allow_http_loopback: bool,
    /// `jwks_uri` of trusted workload issuers configured by URL, by issuer.
    issuer_jwks_uris: HashMap<String, String>,
    /// Clients configured with their own record: their keys are the
    /// configured ones, so a `jwks_uri` a request names for them is never
    /// fetched (it would not be used, and it is the caller's URL).
    configured_clients: HashSet<String>,
}

impl Retriever {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Ok(Self {
            fetcher: Fetcher::new(config.fetch.clone())?,
            allow_http_loopback: config.fetch.allow_http_loopback,
            issuer_jwks_uris: config
                .trusted_issuers
                .iter()
                .filter_map(|t| Some((t.issuer.clone(), t.jwks_uri.clone()?)))
                .collect(),
            configured_clients: config.clients.keys().cloned().collect(),
        })
    }

    /// With the given fetch settings and no configured issuers (tests, tools).
    pub fn new(config: FetchConfig) -> Result<Self, String> {
        Ok(Self {
            allow_http_loopback: config.allow_http_loopback,
            fetcher: Fetcher::new(config)?,
            issuer_jwks_uris: HashMap::new(),
            configured_clients: HashSet::new(),
        })
    }

    pub async fn retrieve(&self, request: &ConnectionRequest) -> Retrieved {
        let source = &request.metadata_source;
        let assertion = request
            .client
            .assertion
            .as_deref()
            .map(PresentedJwt::inspect);
        let kid = assertion
            .as_ref()
            .and_then(|a| a.key_id())
            .map(str::to_string);

        // The document first: its jwks_uri may be next.
        let document = match (&request.client.document, source.kind) {
            (None, MetadataSourceKind::Cimd) => Some(self.client_document(request).await),
            _ => None,
        };
        let effective = request.client.document.as_ref().or(document
            .as_ref()
            .and_then(|d| d.as_ref().ok())
            .map(|f| &f.value));
        let client_keys_uri = effective
            .filter(|d| d.get("jwks").is_none())
            .and_then(|d| d.get("jwks_uri"))
            .and_then(Value::as_str)
            .filter(|_| assertion.is_some() && !is_workload(source.kind))
            .filter(|_| !self.configured_clients.contains(&request.client.client_id));
        let issuer_keys_uri = assertion
            .as_ref()
            .filter(|_| is_workload(source.kind))
            .and_then(|a| a.claim_str("iss"))
            .and_then(|iss| self.issuer_jwks_uris.get(iss));

        let (client_keys, issuer_keys, prm, asm) = tokio::join!(
            optional(client_keys_uri, |uri| self.keys(uri, kid.as_deref())),
            optional(issuer_keys_uri.map(String::as_str), |uri| self
                .keys(uri, kid.as_deref())),
            optional(
                source
                    .protected_resource_metadata_url
                    .as_deref()
                    .filter(|_| source.protected_resource_metadata.is_none()),
                |uri| self.metadata(uri)
            ),
            optional(source.authorization_server_metadata_url.as_deref(), |uri| {
                self.metadata(uri)
            }),
        );
        Retrieved {
            document,
            client_keys,
            issuer_keys,
            protected_resource_metadata: prm,
            authorization_server_metadata: asm,
        }
    }

    /// The CIMD document at the `client_id` URL, cached only when its
    /// `client_id` is that URL and it keeps the document rules.
    async fn client_document(&self, request: &ConnectionRequest) -> Result<Fetched, String> {
        let client_id = &request.client.client_id;
        let problems = document::check_cimd_client_id(client_id, self.allow_http_loopback);
        if !problems.is_empty() {
            return Err(format!(
                "client_id is not fetchable: {}",
                problems.join("; ")
            ));
        }
        let fetched = self
            .fetcher
            .fetch(client_id, FetchKind::ClientDocument)
            .await
            .map_err(|e| format!("client identity document: {e}"))?;
        let problems =
            document::check_document(MetadataSourceKind::Cimd, client_id, &fetched.value, None);
        if !problems.is_empty() {
            return Err(format!(
                "fetched client identity document: {}",
                problems.join("; ")
            ));
        }
        self.fetcher.remember(&fetched);
        Ok(fetched)
    }

    /// A JWK Set, re-fetched once (rate-limited) when it lacks `kid`.
    async fn keys(&self, uri: &str, kid: Option<&str>) -> Result<FetchedKeys, String> {
        let fetch_err = |e: super::fetch::FetchError| format!("jwks_uri: {e}");
        // Parses the set; true if it has `kid`. Not cached here: only once
        // an assertion verified with it ([`Self::keep_keys`]).
        let check = |fetched: &Fetched| -> Result<bool, String> {
            let set =
                proof::parse_jwks(&fetched.value).map_err(|e| format!("jwks_uri {uri}: {e}"))?;
            Ok(kid.is_none_or(|k| set.find(k).is_some()))
        };
        let fetched = self
            .fetcher
            .fetch(uri, FetchKind::Jwks)
            .await
            .map_err(fetch_err)?;
        if check(&fetched)? {
            return Ok(FetchedKeys {
                fetched,
                refreshed: false,
            });
        }
        let fetched = self.fetcher.refresh_jwks(uri).await.map_err(fetch_err)?;
        check(&fetched)?;
        let refreshed = fetched.record.cache != super::fetch::CacheUse::Hit;
        Ok(FetchedKeys { fetched, refreshed })
    }

    /// Caches the JWK Sets an assertion was verified with. A set fetched
    /// for an assertion that failed is not kept: any CIMD client names its
    /// own `jwks_uri`, so keeping those would let anyone fill the cache.
    pub fn keep_keys(&self, retrieved: &Retrieved) {
        for keys in [&retrieved.client_keys, &retrieved.issuer_keys] {
            if let Some(Ok(keys)) = keys {
                self.fetcher.remember(&keys.fetched);
            }
        }
    }

    /// Fetches since start, by kind and result.
    pub fn fetch_counts(&self) -> &super::fetch::FetchCounts {
        self.fetcher.counts()
    }

    /// Bytes the fetch cache holds now.
    pub fn cached_bytes(&self) -> usize {
        self.fetcher.cached_bytes()
    }

    async fn metadata(&self, uri: &str) -> Result<Fetched, String> {
        let fetched = self
            .fetcher
            .fetch(uri, FetchKind::Metadata)
            .await
            .map_err(|e| format!("metadata: {e}"))?;
        self.fetcher.remember(&fetched);
        Ok(fetched)
    }
}

/// Runs `fetch` when there is a URL to fetch.
async fn optional<'a, T, F>(
    uri: Option<&'a str>,
    fetch: impl FnOnce(&'a str) -> F,
) -> Option<Result<T, String>>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    match uri {
        Some(uri) => Some(fetch(uri).await),
        None => None,
    }
}

fn is_workload(kind: MetadataSourceKind) -> bool {
    matches!(kind, MetadataSourceKind::Wif | MetadataSourceKind::IdJag)
}
