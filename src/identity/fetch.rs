//! Fetching client identity documents, JWK Sets and metadata without
//! becoming a tool for server-side request forgery.
//!
//! Rules: https only; no redirects; connect and total timeouts; the body is
//! read as a stream and cut off at a size cap; only `200` with a JSON media
//! type counts. Every address a host name resolves to is checked against
//! the special-use ranges (RFC 6890) before any connection is made, and the
//! connection goes to those checked addresses (no second look-up); IP
//! literals are checked the same way. Answers are cached by their HTTP
//! cache headers (RFC 9111: `Cache-Control` max-age / no-store / no-cache,
//! `Expires`, `ETag` revalidation), clamped to configured bounds; errors and
//! invalid documents are never cached.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use reqwest::header::{HeaderMap, CACHE_CONTROL, CONTENT_TYPE, ETAG, EXPIRES, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

pub use crate::config::FetchConfig;
use crate::digest::sha256_hex;
pub use crate::model::{CacheUse, FetchRecord};

/// Most URLs whose forced JWK Set re-fetch is remembered.
const MAX_REFRESHED: usize = 10_000;

/// What is being fetched: decides the size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    ClientDocument,
    Jwks,
    Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: refused: {reason}")]
    Refused { url: String, reason: String },
    #[error("{url}: {message}")]
    Failed { url: String, message: String },
}

#[derive(Debug, Clone)]
pub struct Fetched {
    pub value: Value,
    pub record: FetchRecord,
    /// The bytes as received: what the cache keeps.
    bytes: Arc<[u8]>,
    /// How long a fresh answer may be reused (`None`: no-store, or it came
    /// from the cache already).
    ttl: Option<Duration>,
}

/// The raw bytes, not the parsed JSON: a parsed document takes many times
/// its size, and the bound must be what is actually held.
struct CacheEntry {
    bytes: Arc<[u8]>,
    record: FetchRecord,
    fresh_until: Instant,
}

impl CacheEntry {
    fn cost(url: &str, bytes: &[u8]) -> usize {
        url.len().saturating_add(bytes.len())
    }
}

/// Fetched documents by URL, bounded in bytes.
#[derive(Default)]
struct Cache {
    entries: HashMap<String, CacheEntry>,
    bytes: usize,
}

impl Cache {
    fn get(&self, url: &str) -> Option<&CacheEntry> {
        self.entries.get(url)
    }

    fn remove(&mut self, url: &str) -> Option<CacheEntry> {
        let entry = self.entries.remove(url)?;
        self.bytes = self
            .bytes
            .saturating_sub(CacheEntry::cost(url, &entry.bytes));
        Some(entry)
    }

    /// Inserts, evicting expired entries and then those closest to expiry
    /// until the entry fits; one larger than the whole budget is not kept.
    fn insert(&mut self, url: String, entry: CacheEntry, max_bytes: usize) {
        self.remove(&url);
        let cost = CacheEntry::cost(&url, &entry.bytes);
        if cost > max_bytes {
            return;
        }
        if self.bytes.saturating_add(cost) > max_bytes {
            let now = Instant::now();
            let expired: Vec<String> = self
                .entries
                .iter()
                .filter(|(_, e)| e.fresh_until <= now)
                .map(|(u, _)| u.clone())
                .collect();
            for u in expired {
                self.remove(&u);
            }
        }
        while self.bytes.saturating_add(cost) > max_bytes {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.fresh_until)
                .map(|(u, _)| u.clone());
            match soonest {
                Some(u) => {
                    self.remove(&u);
                }
                None => break,
            }
        }
        self.bytes = self.bytes.saturating_add(cost);
        self.entries.insert(url, entry);
    }
}

pub struct Fetcher {
    client: reqwest::Client,
    config: FetchConfig,
    cache: Mutex<Cache>,
    /// Last forced re-fetch per URL (unknown `kid`).
    refreshed: Mutex<HashMap<String, Instant>>,
    counts: FetchCounts,
}

/// Fetches since start, by kind and how they ended (metrics).
#[derive(Debug, Default)]
pub struct FetchCounts([[std::sync::atomic::AtomicU64; 4]; 3]);

/// How a fetch ended, as [`FetchCounts`] counts it.
pub const FETCH_RESULTS: [&str; 4] = ["hit", "miss", "revalidated", "error"];
/// The kinds [`FetchCounts`] counts, in its order.
pub const FETCH_KINDS: [FetchKind; 3] = [
    FetchKind::ClientDocument,
    FetchKind::Jwks,
    FetchKind::Metadata,
];

impl FetchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FetchKind::ClientDocument => "client_document",
            FetchKind::Jwks => "jwks",
            FetchKind::Metadata => "metadata",
        }
    }
}

impl FetchCounts {
    fn count(&self, kind: FetchKind, result: usize) {
        self.0[kind as usize][result].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Fetches of `kind` that ended as `FETCH_RESULTS[result]`.
    pub fn get(&self, kind: FetchKind, result: usize) -> u64 {
        self.0[kind as usize][result].load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms))
            .dns_resolver(Arc::new(CheckedResolver {
                allow_loopback: config.allow_http_loopback,
            }))
            .no_proxy()
            .user_agent(concat!("trustpath/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            config,
            cache: Mutex::new(Cache::default()),
            refreshed: Mutex::new(HashMap::new()),
            counts: FetchCounts::default(),
        })
    }

    /// Fetches since start, by kind and result.
    pub fn counts(&self) -> &FetchCounts {
        &self.counts
    }

    /// Fetches `url` as JSON, from the cache while fresh.
    pub async fn fetch(&self, url: &str, kind: FetchKind) -> Result<Fetched, FetchError> {
        self.counted(kind, self.fetch_inner(url, kind, false).await)
    }

    fn counted(
        &self,
        kind: FetchKind,
        fetched: Result<Fetched, FetchError>,
    ) -> Result<Fetched, FetchError> {
        let result = match &fetched {
            Ok(f) => match f.record.cache {
                CacheUse::Hit => 0,
                CacheUse::Miss => 1,
                CacheUse::Revalidated => 2,
            },
            Err(_) => 3,
        };
        self.counts.count(kind, result);
        fetched
    }

    /// Re-fetches a JWK Set that lacks a `kid` an assertion names, unless
    /// that was done for this URL within `jwks_refresh_min_seconds`: then the
    /// cached set answers.
    pub async fn refresh_jwks(&self, url: &str) -> Result<Fetched, FetchError> {
        let min = Duration::from_secs(self.config.jwks_refresh_min_seconds);
        let allowed = {
            let mut refreshed = self.refreshed.lock().expect("refresh map");
            if refreshed.len() >= MAX_REFRESHED {
                refreshed.retain(|_, t| t.elapsed() < min);
            }
            let due = refreshed.get(url).is_none_or(|t| t.elapsed() >= min);
            if due {
                refreshed.insert(url.to_string(), Instant::now());
            }
            due
        };
        let fetched = self.fetch_inner(url, FetchKind::Jwks, allowed).await;
        self.counted(FetchKind::Jwks, fetched)
    }

    async fn fetch_inner(
        &self,
        url: &str,
        kind: FetchKind,
        force: bool,
    ) -> Result<Fetched, FetchError> {
        let parsed = self.check_url(url)?;
        // Cached and recorded under the URL as parsed, the one actually
        // fetched, so the log never shows text that names another host.
        let fetched_url = parsed.as_str().to_string();
        let (fresh, stale_etag) = {
            let cache = self.cache.lock().expect("fetch cache");
            match cache.get(&fetched_url) {
                Some(e) if !force && Instant::now() < e.fresh_until => {
                    (Some((e.bytes.clone(), e.record.clone())), None)
                }
                Some(e) => (None, e.record.etag.clone()),
                None => (None, None),
            }
        };
        if let Some((bytes, mut record)) = fresh {
            record.cache = CacheUse::Hit;
            return from_cache(bytes, record);
        }

        let failed = |message: String| FetchError::Failed {
            url: url.to_string(),
            message,
        };
        let mut request = self.client.get(parsed).header("accept", "application/json");
        if let Some(etag) = &stale_etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let mut response = request.send().await.map_err(|e| failed(describe(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        if status == StatusCode::NOT_MODIFIED && stale_etag.is_some() {
            return self.revalidated(&fetched_url, &headers);
        }
        if status != StatusCode::OK {
            return Err(failed(format!("answered {status}; only 200 is accepted")));
        }
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_json(content_type) {
            return Err(failed(format!("content type {content_type:?} is not JSON")));
        }
        let cap = match kind {
            FetchKind::ClientDocument => self.config.max_document_bytes,
            FetchKind::Jwks | FetchKind::Metadata => self.config.max_jwks_bytes,
        };
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(failed(format!("body is larger than {cap} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(describe(&e)))? {
            if body.len() + chunk.len() > cap {
                return Err(failed(format!("body is larger than {cap} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(failed("body is not a JSON object".into()));
        }

        let record = FetchRecord {
            url: fetched_url,
            status: status.as_u16(),
            fetched_at: crate::time::rfc3339(chrono::Utc::now()),
            cache: CacheUse::Miss,
            etag: header_str(&headers, ETAG),
            sha256: sha256_hex(&body),
        };
        Ok(Fetched {
            value,
            record,
            bytes: body.into(),
            ttl: self.lifetime(&headers),
        })
    }

    /// Stores a freshly fetched answer for as long as its headers allow
    /// (clamped). Called only once the caller has checked the document, so
    /// invalid documents are never cached.
    pub fn remember(&self, fetched: &Fetched) {
        let Some(ttl) = fetched.ttl else { return };
        let mut cache = self.cache.lock().expect("fetch cache");
        cache.insert(
            fetched.record.url.clone(),
            CacheEntry {
                bytes: fetched.bytes.clone(),
                record: fetched.record.clone(),
                fresh_until: Instant::now() + ttl,
            },
            self.config.cache_max_bytes,
        );
    }

    /// Bytes the cache holds now.
    pub fn cached_bytes(&self) -> usize {
        self.cache.lock().expect("fetch cache").bytes
    }

    fn revalidated(&self, url: &str, headers: &HeaderMap) -> Result<Fetched, FetchError> {
        let ttl = self.lifetime(headers);
        let (bytes, mut record) = {
            let mut cache = self.cache.lock().expect("fetch cache");
            match (ttl, cache.entries.get_mut(url)) {
                // Still cacheable: fresh again for the new lifetime.
                (Some(ttl), Some(entry)) => {
                    entry.fresh_until = Instant::now() + ttl;
                    (entry.bytes.clone(), entry.record.clone())
                }
                // `no-store` now: answered once more, then forgotten.
                _ => {
                    let entry = cache.remove(url).ok_or_else(|| FetchError::Failed {
                        url: url.to_string(),
                        message: "304 for a document no longer cached".into(),
                    })?;
                    (entry.bytes, entry.record)
                }
            }
        };
        record.cache = CacheUse::Revalidated;
        from_cache(bytes, record)
    }

    /// How long an answer with these headers may be reused; `None` for
    /// `no-store`. Clamped to `cache_min_seconds..=cache_max_seconds`.
    pub fn lifetime(&self, headers: &HeaderMap) -> Option<Duration> {
        let (min, max) = (self.config.cache_min_seconds, self.config.cache_max_seconds);
        let seconds = cache_lifetime(headers)?;
        Some(Duration::from_secs(seconds.clamp(min, max.max(min))))
    }

    /// Only https (or, with the development setting, http) URLs with a host;
    /// an IP-literal host must pass the same address check as a resolved one.
    fn check_url(&self, url: &str) -> Result<Url, FetchError> {
        let refused = |reason: String| FetchError::Refused {
            url: url.to_string(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|e| refused(format!("not a URL: {e}")))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.config.allow_http_loopback => {}
            other => return Err(refused(format!("scheme {other:?} is not https"))),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refused("URLs with credentials are not fetched".into()));
        }
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(refused("no host".into())),
        };
        if let Some(ip) = ip {
            if let Some(why) = forbidden(ip, self.config.allow_http_loopback) {
                return Err(refused(format!("address {ip} is {why}")));
            }
        }
        Ok(parsed)
    }
}

/// Seconds an answer with these headers stays fresh, before clamping;
/// `None` when it must not be stored.
/// A cached answer, parsed again (it was valid JSON when it was stored).
fn from_cache(bytes: Arc<[u8]>, record: FetchRecord) -> Result<Fetched, FetchError> {
    let value = serde_json::from_slice(&bytes).map_err(|e| FetchError::Failed {
        url: record.url.clone(),
        message: format!("cached body no longer parses: {e}"),
    })?;
    Ok(Fetched {
        value,
        record,
        bytes,
        ttl: None,
    })
}

pub fn cache_lifetime(headers: &HeaderMap) -> Option<u64> {
    let cache_control = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect::<Vec<_>>();
    if cache_control.iter().any(|d| d == "no-store") {
        return None;
    }
    if cache_control.iter().any(|d| d == "no-cache") {
        return Some(0);
    }
    if let Some(age) = cache_control
        .iter()
        .find_map(|d| d.strip_prefix("max-age="))
        .and_then(|v| v.trim_matches('"').parse::<u64>().ok())
    {
        return Some(age);
    }
    // `Expires` relative to now (an invalid date means already expired).
    if let Some(expires) = headers.get(EXPIRES).and_then(|v| v.to_str().ok()) {
        return Some(match httpdate::parse_http_date(expires) {
            Ok(at) => at
                .duration_since(SystemTime::now())
                .map_or(0, |d| d.as_secs()),
            Err(_) => 0,
        });
    }
    // No freshness information: the configured minimum applies.
    Some(0)
}

fn header_str(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `application/json` or any `+json` type (e.g. `application/jwk-set+json`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_string();
    }
    // The chain holds the resolver's refusal, if that is what happened.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

/// Special-use ranges never fetched from (RFC 6890 and its registries).
const FORBIDDEN: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified (\"this network\")"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
];

/// Why `ip` must not be fetched from, or `None`. IPv6 forms that embed an
/// IPv4 address (mapped, compatible, NAT64, 6to4) are unwrapped first and
/// judged by it. `allow_loopback` (the development setting) opens exactly
/// `127.0.0.0/8` and `::1` as written: an IPv6 form that embeds a loopback
/// address stays refused.
pub fn forbidden(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    if let IpAddr::V6(v6) = ip {
        if let Some(v4) = embedded_ipv4(&v6) {
            return special_use(IpAddr::V4(v4));
        }
    }
    if allow_loopback && ip.is_loopback() {
        return None;
    }
    special_use(ip)
}

/// The special-use range `ip` is in, if any.
fn special_use(ip: IpAddr) -> Option<&'static str> {
    FORBIDDEN.iter().find_map(|(net, why)| {
        let net: IpNet = net.parse().expect("valid range");
        net.contains(&ip).then_some(*why)
    })
}

fn embedded_ipv4(v6: &std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let tail =
        std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible (deprecated ::a.b.c.d; not :: or ::1) and NAT64 64:ff9b::/96.
    if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
        return Some(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
    if s[0] == 0x2002 {
        return Some(std::net::Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Resolves host names for the fetcher and refuses the name if any address
/// it resolves to is special-use; the connection then goes to exactly the
/// addresses checked here.
struct CheckedResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} does not resolve").into());
            }
            for addr in &addrs {
                if let Some(why) = forbidden(addr.ip(), allow_loopback) {
                    return Err(format!("{host} resolves to {} ({why}): refused", addr.ip()).into());
                }
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_use_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "0.0.0.0",
            "::",
            "192.168.1.1",
            "172.16.5.4",
            "224.0.0.1",
            "fe80::1",
            "fd00::1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "192.0.2.10",
            "2001:db8::1",
            "255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(forbidden(ip, false).is_some(), "{ip} should be refused");
        }
        for ip in [
            "93.184.216.34",
            "2606:4700::1111",
            "8.8.8.8",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden(ip, false), None, "{ip} should be allowed");
        }
        // The development setting opens loopback only, as written.
        assert_eq!(forbidden("127.0.0.1".parse().unwrap(), true), None);
        assert_eq!(forbidden("127.9.9.9".parse().unwrap(), true), None);
        assert_eq!(forbidden("::1".parse().unwrap(), true), None);
        for embedded in [
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
        ] {
            let ip: IpAddr = embedded.parse().unwrap();
            assert_eq!(forbidden(ip, true), Some("loopback"), "{ip}");
        }
        assert!(forbidden("10.0.0.1".parse().unwrap(), true).is_some());
        assert!(forbidden("169.254.169.254".parse().unwrap(), true).is_some());
    }

    #[test]
    fn cache_lifetime_follows_the_headers() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            h
        };
        assert_eq!(
            cache_lifetime(&headers(&[("cache-control", "public, max-age=120")])),
            Some(120)
        );
        assert_eq!(
            cache_lifetime(&headers(&[("cache-control", "no-store")])),
            None
        );
        assert_eq!(
            cache_lifetime(&headers(&[("cache-control", "max-age=60, no-store")])),
            None
        );
        assert_eq!(
            cache_lifetime(&headers(&[("cache-control", "no-cache")])),
            Some(0)
        );
        assert_eq!(cache_lifetime(&headers(&[])), Some(0));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(300));
        let t = cache_lifetime(&headers(&[("expires", &soon)])).unwrap();
        assert!((298..=300).contains(&t), "{t}");
        assert_eq!(cache_lifetime(&headers(&[("expires", "0")])), Some(0));
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/jwk-set+json"));
        assert!(!is_json("text/html"));
        assert!(!is_json(""));
    }
}
