//! Client identity document rules (CIMD draft), and the redaction applied to
//! any document before it is shown to policy or written to the log.
#![deny(clippy::arithmetic_side_effects)]

use serde_json::Value;
use url::Url;

use crate::digest::sha256_hex;
use crate::model::MetadataSourceKind;

/// A Client ID Metadata Document larger than this is refused.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;

/// Auth methods that rest on a shared secret; a CIMD client may not use them.
const SHARED_SECRET_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
];

/// Checks a CIMD `client_id`: an https URL with a path, and no fragment,
/// userinfo or dot segments, written exactly as the URL parser serialises
/// it. Returns the reasons it fails. With the development setting
/// (`fetch.allow_http_loopback`), `http` is accepted for a loopback host.
///
/// The canonical form matters because the policy, the log and the fetcher
/// must all read the same host: a WHATWG parser reads `https:\\evil\x://good/`
/// as host `evil`, while a policy splitting the text on `/` sees `good`.
pub fn check_cimd_client_id(client_id: &str, allow_http_loopback: bool) -> Vec<String> {
    let mut reasons = Vec::new();
    let url = match Url::parse(client_id) {
        Ok(url) => url,
        Err(e) => return vec![format!("client_id is not a URL: {e}")],
    };
    if url.as_str() != client_id {
        reasons.push(format!(
            "client_id is not in canonical URL form: it parses as {:?}",
            url.as_str()
        ));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    let http_ok = allow_http_loopback && loopback && url.scheme() == "http";
    if url.scheme() != "https" && !http_ok {
        reasons.push("client_id must use the https scheme".to_string());
    }
    if url.fragment().is_some() {
        reasons.push("client_id must not have a fragment".to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        reasons.push("client_id must not carry userinfo".to_string());
    }
    // The url crate normalises dot segments and an empty path away, so the
    // raw text is checked: "https://host" and "https://host/" have no path.
    let after_scheme = client_id.split_once("://").map_or("", |(_, rest)| rest);
    let raw_path = after_scheme
        .find('/')
        .map_or("", |i| &after_scheme[i..])
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    if raw_path.len() <= 1 {
        reasons.push("client_id must have a path component".to_string());
    }
    let is_dot = |seg: &str| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    };
    if raw_path.split('/').any(is_dot) {
        reasons.push("client_id must not contain dot segments".to_string());
    }
    reasons
}

/// The host of a CIMD `client_id` as the URL parser (and so the fetcher)
/// reads it: what the policy is given, so that it never parses the text
/// itself. `None` unless the client_id is a URL in canonical form.
pub fn cimd_host(client_id: &str) -> Option<String> {
    let url = Url::parse(client_id).ok()?;
    (url.as_str() == client_id)
        .then(|| url.host_str().map(str::to_string))
        .flatten()
}

/// Checks a client identity document against the request. CIMD documents
/// get the full draft rules; DCR and pre-registered records get the checks
/// that apply to any client record.
pub fn check_document(
    kind: MetadataSourceKind,
    client_id: &str,
    document: &Value,
    redirect_uri: Option<&str>,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let Some(doc) = document.as_object() else {
        return vec!["client identity document must be a JSON object".to_string()];
    };
    let cimd = kind == MetadataSourceKind::Cimd;
    if cimd {
        let size = serde_json::to_vec(document).map_or(usize::MAX, |b| b.len());
        if size > MAX_DOCUMENT_BYTES {
            reasons.push(format!(
                "client identity document is {size} bytes, over the {MAX_DOCUMENT_BYTES} byte limit"
            ));
        }
    }
    match doc.get("client_id").and_then(Value::as_str) {
        Some(id) if id == client_id => {}
        Some(id) => reasons.push(format!(
            "document client_id {id:?} does not equal the client_id URL {client_id:?}"
        )),
        None if cimd => reasons.push("document has no client_id".to_string()),
        None => {}
    }
    if cimd {
        if doc.contains_key("client_secret") {
            reasons.push("document must not contain client_secret".to_string());
        }
        if let Some(method) = doc
            .get("token_endpoint_auth_method")
            .and_then(Value::as_str)
        {
            if SHARED_SECRET_METHODS.contains(&method) {
                reasons.push(format!(
                    "token_endpoint_auth_method {method} relies on a shared secret"
                ));
            }
        }
    }
    if let Some(uri) = redirect_uri {
        let listed = doc
            .get("redirect_uris")
            .and_then(Value::as_array)
            .is_some_and(|uris| uris.iter().any(|u| u.as_str() == Some(uri)));
        if !listed {
            reasons.push(format!(
                "redirect_uri {uri:?} is not in the document's redirect_uris"
            ));
        }
    }
    reasons
}

/// The document as it may be shown and stored: any `client_secret` (a DCR
/// record may carry one) is replaced by its SHA-256.
pub fn redact(document: &Value) -> Value {
    let mut doc = document.clone();
    if let Some(obj) = doc.as_object_mut() {
        if let Some(secret) = obj.remove("client_secret") {
            let text = secret
                .as_str()
                .map_or_else(|| secret.to_string(), str::to_string);
            obj.insert(
                "client_secret_sha256".to_string(),
                Value::String(sha256_hex(text.as_bytes())),
            );
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cimd_client_id_rules() {
        assert!(check_cimd_client_id("https://agent.example.com/client.json", false).is_empty());
        for bad in [
            "http://agent.example.com/client.json",
            "https://agent.example.com",
            "https://agent.example.com/",
            "https://agent.example.com/a#frag",
            "https://user:pw@agent.example.com/a",
            "https://agent.example.com/a/../b",
            "https://agent.example.com/a/%2E/b",
            "not a url",
            // Not canonical: the parser reads another host, case or port.
            "https:\\\\evil.example\\x://agent.example.com/client.json",
            "https:agent.example.com/client.json",
            "https:/agent.example.com/client.json",
            "https://Agent.example.com/client.json",
            "https://agent.example.com:443/client.json",
            "HTTPS://agent.example.com/client.json",
            "https://agent.example.com/a b",
            " https://agent.example.com/client.json",
        ] {
            assert!(
                !check_cimd_client_id(bad, false).is_empty(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn cimd_host_is_the_parsed_host() {
        assert_eq!(
            cimd_host("https://agent.example.com/client.json").as_deref(),
            Some("agent.example.com")
        );
        assert_eq!(
            cimd_host("https:\\\\evil.example\\x://agent.example.com/client.json"),
            None
        );
    }

    #[test]
    fn cimd_document_rules() {
        let id = "https://agent.example.com/client.json";
        let good = json!({"client_id": id, "redirect_uris": ["https://agent.example.com/cb"],
                          "token_endpoint_auth_method": "private_key_jwt"});
        let kind = MetadataSourceKind::Cimd;
        assert!(check_document(kind, id, &good, Some("https://agent.example.com/cb")).is_empty());
        assert_eq!(
            check_document(kind, id, &good, Some("https://agent.example.com/cb/")).len(),
            1
        );
        let other = json!({"client_id": "https://evil.example/client.json"});
        assert_eq!(check_document(kind, id, &other, None).len(), 1);
        let secret = json!({"client_id": id, "client_secret": "s",
                            "token_endpoint_auth_method": "client_secret_post"});
        assert_eq!(check_document(kind, id, &secret, None).len(), 2);
        let big = json!({"client_id": id, "pad": "x".repeat(MAX_DOCUMENT_BYTES)});
        assert_eq!(check_document(kind, id, &big, None).len(), 1);
    }

    #[test]
    fn redaction_hides_secrets() {
        let doc = json!({"client_id": "c", "client_secret": "hunter2"});
        let shown = redact(&doc).to_string();
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("client_secret_sha256"));
    }
}
