package trustpath.connection_test

import data.trustpath.connection

base := {
	"scopes": ["files:read", "files:write"],
	"metadata_source": {"kind": "cimd", "authorization_server": {"issuer": "https://auth.example.com"}},
	"client": {"client_id": "https://agents.example.com/client.json", "host": "agents.example.com"},
	"authentication": {"result": "verified"},
}

test_verified_client_gets_all_scopes if {
	d := connection.decision with input as base
	d.allow
	d.scopes == ["files:read", "files:write"]
	d.tools == ["list_files", "read_file", "write_file"]
	d.ttl_seconds == 600
}

test_document_only_client_loses_write if {
	d := connection.decision with input as object.union(base, {"authentication": {"result": "document_only"}})
	d.allow
	d.scopes == ["files:read"]
	d.scope_reasons["files:write"] == "requires verified authentication"
	d.ttl_seconds == 300
}

test_untrusted_authorization_server_denied if {
	req := object.union(base, {"metadata_source": {"authorization_server": {"issuer": "https://evil.example"}}})
	d := connection.decision with input as req
	not d.allow
	d.reasons == ["authorization server \"https://evil.example\" is not trusted"]
}

test_unknown_client_host_denied if {
	d := connection.decision with input as object.union(base, {"client": {"client_id": "https://evil.example/c.json", "host": "evil.example"}})
	not d.allow
	d.reasons == ["client host \"evil.example\" is not allowed"]
}

test_unauthenticated_denied if {
	d := connection.decision with input as object.union(base, {"authentication": {"result": "none"}})
	not d.allow
}

test_unknown_scope_not_approved if {
	d := connection.decision with input as object.union(base, {"scopes": ["files:read", "payroll"]})
	d.scopes == ["files:read"]
	d.scope_reasons.payroll == "unknown scope"
}

test_delegated_agent_gets_narrower_shorter_grant if {
	req := object.union(base, {
		"scopes": ["files:read", "repo:admin"],
		"delegation": {"approval_id": "ap-1", "approved_by": "alice@example.com", "approved_at": "2026-11-23T10:00:00Z"},
	})
	d := connection.decision with input as req
	d.allow
	d.scopes == ["files:read"]
	d.scope_reasons["repo:admin"] == "not available to delegated agents"
	d.ttl_seconds == 120
}

test_delegation_limited_to_human_approval if {
	req := object.union(base, {"delegation": {
		"approval_id": "ap-2", "approved_by": "bob@example.com",
		"approved_at": "2026-11-23T10:00:00Z", "scopes": ["files:read"],
	}})
	d := connection.decision with input as req
	d.scopes == ["files:read"]
	d.scope_reasons["files:write"] == "not in the human approval"
}

test_dcr_clients_not_accepted if {
	d := connection.decision with input as object.union(base, {"metadata_source": {"kind": "dcr"}})
	not d.allow
	d.reasons == ["metadata source \"dcr\" is not accepted"]
}

test_broken_metadata_chain_denied if {
	req := object.union(base, {"authentication": {"metadata_chain": {
		"issuer_listed": false,
		"reasons": ["authorization server \"https://auth.example.com\" is not in the protected resource's authorization_servers"],
	}}})
	d := connection.decision with input as req
	not d.allow
	d.reasons == ["metadata chain: authorization server \"https://auth.example.com\" is not in the protected resource's authorization_servers"]
}

test_scopes_the_resource_does_not_support_are_not_approved if {
	req := object.union(base, {"authentication": {"metadata_chain": {
		"resource_matches": true,
		"issuer_listed": true,
		"unsupported_scopes": ["files:write"],
		"reasons": [],
	}}})
	d := connection.decision with input as req
	d.allow
	d.scopes == ["files:read"]
	d.scope_reasons["files:write"] == "not in the resource's scopes_supported"
}

test_changed_document_gets_a_short_grant if {
	req := object.union(base, {"authentication": {"document": {"changed": true, "previous_sha256": "ab"}}})
	d := connection.decision with input as req
	d.allow
	d.ttl_seconds == 60
}

# The host comes from trustpath's URL parser, never from the client_id
# text: a client_id the parser did not accept has no host and is denied.
test_client_host_is_never_read_from_the_client_id_text if {
	req := {
		"scopes": ["files:read"],
		"metadata_source": base.metadata_source,
		"client": {"client_id": `https:\\evil.example\x://agents.example.com/client.json`},
		"authentication": {"result": "verified"},
	}
	d := connection.decision with input as req
	not d.allow
	d.reasons == ["client host \"\" is not allowed"]
}

# A scope rule without an explicit `delegable: true` is not delegable.
test_scope_not_marked_delegable_is_not_delegated if {
	req := object.union(base, {
		"scopes": ["files:read"],
		"delegation": {"approval_id": "ap-1", "approved_by": "alice@example.com", "approved_at": "2026-11-23T10:00:00Z"},
	})
	d := connection.decision with input as req with data.trustpath.settings.scopes["files:read"].delegable as null
	d.scopes == []
	d.scope_reasons["files:read"] == "not available to delegated agents"
}
