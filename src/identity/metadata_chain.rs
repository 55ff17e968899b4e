//! The metadata chain: the protected resource's metadata (RFC 9728) must
//! name the authorization server and the resource the request is for, and
//! the AS's own metadata (RFC 8414) must carry the issuer the request names.
//! Every check is a recorded field; failures are reasons, never errors.

use serde_json::Value;

use super::retrieval::Retrieved;
use crate::digest::sha256_hex;
use crate::model::{ConnectionRequest, MetadataChain, Provenance, SourceRecord};

/// `None` when the request gives no metadata to check.
pub fn check(request: &ConnectionRequest, retrieved: &Retrieved) -> Option<MetadataChain> {
    let source = &request.metadata_source;
    let mut chain = MetadataChain::default();

    let prm = match (
        &source.protected_resource_metadata,
        &retrieved.protected_resource_metadata,
    ) {
        (Some(inline), _) => {
            chain.protected_resource_metadata = Some(SourceRecord {
                source: Provenance::Inline,
                sha256: sha256_hex(&serde_json::to_vec(inline).unwrap_or_default()),
                fetch: None,
            });
            Some(inline)
        }
        (None, Some(Ok(fetched))) => {
            chain.protected_resource_metadata = Some(SourceRecord {
                source: Provenance::Fetched,
                sha256: fetched.record.sha256.clone(),
                fetch: Some(fetched.record.clone()),
            });
            Some(&fetched.value)
        }
        (None, Some(Err(reason))) => {
            chain.reasons.push(reason.clone());
            None
        }
        (None, None) => None,
    };
    let issuer = &source.authorization_server.issuer;
    if let Some(prm) = prm {
        check_protected_resource(&mut chain, prm, request, issuer);
    }

    match &retrieved.authorization_server_metadata {
        Some(Ok(fetched)) => {
            let named = fetched.value.get("issuer").and_then(Value::as_str);
            let matches = named == Some(issuer.as_str());
            if !matches {
                chain.reasons.push(format!(
                    "authorization server metadata names issuer {named:?}, not {issuer:?}"
                ));
            }
            chain.authorization_server_issuer_matches = Some(matches);
            chain.authorization_server_metadata = Some(SourceRecord {
                source: Provenance::Fetched,
                sha256: fetched.record.sha256.clone(),
                fetch: Some(fetched.record.clone()),
            });
        }
        Some(Err(reason)) => chain.reasons.push(reason.clone()),
        None => {}
    }

    let nothing = chain.protected_resource_metadata.is_none()
        && chain.authorization_server_metadata.is_none()
        && chain.reasons.is_empty();
    (!nothing).then_some(chain)
}

fn check_protected_resource(
    chain: &mut MetadataChain,
    prm: &Value,
    request: &ConnectionRequest,
    issuer: &str,
) {
    let named = prm.get("resource").and_then(Value::as_str);
    if let (Some(named), Some(requested)) = (named, request.resource.as_deref()) {
        let matches = named == requested;
        if !matches {
            chain.reasons.push(format!(
                "protected resource metadata is for {named:?}, not the requested resource {requested:?}"
            ));
        }
        chain.resource_matches = Some(matches);
    } else if named.is_none() {
        chain
            .reasons
            .push("protected resource metadata has no resource".to_string());
        chain.resource_matches = Some(false);
    }

    let servers: Option<Vec<&str>> = prm
        .get("authorization_servers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let listed = servers.as_ref().is_some_and(|s| s.contains(&issuer));
    if !listed {
        chain.reasons.push(format!(
            "authorization server {issuer:?} is not in the protected resource's authorization_servers"
        ));
    }
    chain.issuer_listed = Some(listed);

    if let Some(supported) = prm.get("scopes_supported").and_then(Value::as_array) {
        let supported: Vec<&str> = supported.iter().filter_map(Value::as_str).collect();
        chain.unsupported_scopes = Some(
            request
                .scopes
                .as_slice()
                .iter()
                .filter(|s| !supported.contains(&s.as_str()))
                .cloned()
                .collect(),
        );
    }
}
