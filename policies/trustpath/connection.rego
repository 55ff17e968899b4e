# Connection policy: may this MCP client connect, and with which scopes?
#
# Entry point: data.trustpath.connection.decision (see README, "Policy").
# trustpath intersects `scopes` with the requested scopes and caps
# `ttl_seconds`, so this policy can only narrow what was asked for.
#
# Shape: nothing is allowed by the absence of a denial. `allow` and each
# approved scope need positive checks that held (a rule that reads an
# undefined value or errors leaves its check unproven, so it denies), and
# `deny_reasons` only explains. trustpath also evaluates with strict builtin
# errors: an error anywhere ends the evaluation in a logged denial.
package trustpath.connection

settings := data.trustpath.settings

# How much each authentication result proves, for per-scope minimums.
auth_rank := {"failed": 0, "none": 0, "document_only": 1, "verified": 2}

delegated if input.delegation != null

issuer := input.metadata_source.authorization_server.issuer

# The host of a CIMD client_id, as trustpath's URL parser read it (present
# only when the client_id is a canonical https URL). Never parsed here from
# the client_id text: a policy and a URL parser may disagree on it.
default client_host := ""

client_host := input.client.host if input.metadata_source.kind == "cimd"

# ------------------------------------------------------------ positive checks

issuer_trusted if issuer in settings.trusted_authorization_servers

source_accepted if input.metadata_source.kind in settings.allowed_metadata_sources

client_host_allowed if input.metadata_source.kind != "cimd"

client_host_allowed if {
	input.metadata_source.kind == "cimd"
	client_host in settings.allowed_client_hosts
}

authenticated if input.authentication.result in {"verified", "document_only"}

# Every reason the metadata chain gave is a denial; with none it holds.
# (Read by name, not as `object.get(input.authentication, ...)`: a rule
# that reads the whole authentication, proof claims and all, makes every
# request's input different, and trustpath can keep no result for it.)
default metadata_chain := {"reasons": []}

metadata_chain := input.authentication.metadata_chain

metadata_chain_holds if count(metadata_chain.reasons) == 0

default allow := false

allow if {
	issuer_trusted
	source_accepted
	client_host_allowed
	authenticated
	metadata_chain_holds
	count(deny_reasons) == 0
}

# ------------------------------------------------------------ why not

deny_reasons contains msg if {
	not issuer_trusted
	msg := sprintf("authorization server %q is not trusted", [issuer])
}

deny_reasons contains msg if {
	not source_accepted
	msg := sprintf("metadata source %q is not accepted", [input.metadata_source.kind])
}

deny_reasons contains msg if {
	not client_host_allowed
	msg := sprintf("client host %q is not allowed", [client_host])
}

deny_reasons contains "client authentication failed" if input.authentication.result == "failed"

# The metadata chain (protected resource -> authorization server) must hold
# wherever trustpath could check it.
deny_reasons contains sprintf("metadata chain: %s", [reason]) if {
	some reason in input.authentication.metadata_chain.reasons
}

deny_reasons contains "client is not authenticated" if input.authentication.result == "none"

# ------------------------------------------------------------ per-scope rules

unsupported_scopes := {s | some s in input.authentication.metadata_chain.unsupported_scopes}

# A scope is approved only when each of its checks held.
scope_allowed(scope) if {
	rule := settings.scopes[scope]
	auth_rank[input.authentication.result] >= auth_rank[rule.min_authentication]
	delegation_permits(scope, rule)
	not scope in unsupported_scopes
}

delegation_permits(_, _) if not delegated

delegation_permits(scope, rule) if {
	delegated
	rule.delegable == true
	human_approved(scope)
}

human_approved(_) if not input.delegation.scopes

human_approved(scope) if scope in input.delegation.scopes

# A set of [scope, reason] pairs: a scope may fail several rules.
scope_problems contains [scope, "unknown scope"] if {
	some scope in input.scopes
	not settings.scopes[scope]
}

scope_problems contains [scope, msg] if {
	some scope in input.scopes
	rule := settings.scopes[scope]
	auth_rank[input.authentication.result] < auth_rank[rule.min_authentication]
	msg := sprintf("requires %s authentication", [rule.min_authentication])
}

scope_problems contains [scope, "not available to delegated agents"] if {
	delegated
	some scope in input.scopes
	settings.scopes[scope].delegable != true
}

scope_problems contains [scope, "not in the resource's scopes_supported"] if {
	some scope in unsupported_scopes
}

scope_problems contains [scope, "not in the human approval"] if {
	delegated
	input.delegation.scopes
	some scope in input.scopes
	not scope in input.delegation.scopes
}

scope_reasons[scope] := concat("; ", sort([r | some [s, r] in scope_problems; s == scope])) if {
	some [scope, _] in scope_problems
}

approved contains scope if {
	some scope in input.scopes
	scope_allowed(scope)
	not scope_reasons[scope]
}

tools contains tool if {
	some scope in approved
	some tool in settings.scopes[scope].tools
}

# ------------------------------------------------------------ lifetime

# A client whose identity document changed since its last decision gets a
# short grant: new keys or redirect URIs deserve a second look soon.
ttl := settings.ttl.changed_document_seconds if {
	input.authentication.document.changed
} else := settings.ttl.delegated_seconds if {
	delegated
} else := settings.ttl.document_only_seconds if {
	input.authentication.result == "document_only"
} else := settings.ttl.default_seconds

# ------------------------------------------------------------ the decision

decision := {
	"allow": allow,
	"scopes": sort([s | some s in approved]),
	"tools": sort([t | some t in tools]),
	"ttl_seconds": ttl,
	"reasons": sort([r | some r in deny_reasons]),
	"scope_reasons": scope_reasons,
}
