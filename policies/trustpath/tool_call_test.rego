package trustpath.tool_call_test

import data.trustpath.tool_call

call := {
	"tool": "read_file",
	"method": "tools/call",
	"arguments": {"names": ["path"], "sha256": "00", "values": {}},
	"grant": {
		"status": "active",
		"scopes": ["files:read"],
		"claims": {"sub": "https://agents.example.com/client.json", "tools": ["read_file"]},
	},
}

test_tool_within_the_grant_allowed if {
	d := tool_call.decision with input as call
	d.allow
	d.reasons == []
}

test_tool_needing_another_scope_asks_for_it if {
	d := tool_call.decision with input as object.union(call, {"tool": "write_file", "arguments": {"names": ["path", "content"]}})
	not d.allow
	d.required_scopes == ["files:write"]
	d.reasons == ["requires scope files:write"]
}

test_denied_tool_refused_even_with_its_scope if {
	req := object.union(call, {
		"tool": "delete_repository",
		"arguments": {"names": ["repository"]},
		"grant": {"scopes": ["repo:admin"]},
	})
	d := tool_call.decision with input as req
	not d.allow
	d.reasons == ["tool \"delete_repository\" is on the deny list"]
}

test_unknown_tool_refused if {
	d := tool_call.decision with input as object.union(call, {"tool": "format_disk"})
	not d.allow
	"tool \"format_disk\" is not known" in d.reasons
}

test_secret_argument_name_refused if {
	d := tool_call.decision with input as object.union(call, {"arguments": {"names": ["API_KEY", "path"]}})
	not d.allow
	"argument \"API_KEY\" must not be passed to tools" in d.reasons
}

test_unexpected_argument_refused if {
	d := tool_call.decision with input as object.union(call, {"arguments": {"names": ["path", "mode"]}})
	not d.allow
	d.reasons == ["argument \"mode\" is not accepted by read_file"]
}

test_resource_read_needs_files_read if {
	req := object.union(call, {"method": "resources/read", "tool": "file:///notes.txt", "grant": {"scopes": ["tickets:read"]}})
	d := tool_call.decision with input as req
	not d.allow
	d.required_scopes == ["files:read"]
}

test_unlisted_method_refused if {
	d := tool_call.decision with input as object.union(call, {"method": "sampling/createMessage"})
	not d.allow
	d.reasons == ["method \"sampling/createMessage\" is not allowed"]
}

delegated := object.union(call, {"grant": {"claims": {"act": {"sub": "agent-7", "act": {"sub": "orchestrator"}}}}})

test_delegated_grant_used_by_its_actor if {
	d := tool_call.decision with input as object.union(delegated, {"actor": "agent-7"})
	d.allow
}

test_delegated_grant_used_by_another_actor if {
	d := tool_call.decision with input as object.union(delegated, {"actor": "agent-9"})
	not d.allow
	d.reasons == ["actor \"agent-9\" is not the grant's actor \"agent-7\""]
}

test_delegated_grant_without_actor if {
	d := tool_call.decision with input as delegated
	not d.allow
	d.reasons == ["a delegated grant needs the acting agent (actor)"]
}

# A delegated grant whose actor is not an object with a string `sub` names
# nobody: no actor matches it, and the denial says why.
test_unknown_grant_actor_denied if {
	req := object.union(call, {"actor": "agent-1", "grant": {"claims": {"act": "agent-1"}}})
	d := tool_call.decision with input as req
	not d.allow
	"the grant's actor is not known (its act has no string sub)" in d.reasons
}

test_grant_actor_with_number_sub_denied if {
	req := object.union(call, {"actor": "5", "grant": {"claims": {"act": {"sub": 5}}}})
	d := tool_call.decision with input as req
	not d.allow
}

test_matching_actor_allowed if {
	req := object.union(call, {"actor": "agent-7", "grant": {"claims": {"act": {"sub": "agent-7", "act": {"sub": "o"}}}}})
	d := tool_call.decision with input as req
	d.allow
}

test_inactive_grant_never_allowed_by_policy if {
	d := tool_call.decision with input as object.union(call, {"grant": {"status": "revoked"}})
	not d.allow
}
