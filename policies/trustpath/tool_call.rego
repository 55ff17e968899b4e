# Tool-call policy: may this call run under this grant?
#
# Entry point: data.trustpath.tool_call.decision (see README, "Policy").
# trustpath itself denies, whatever this policy says, when the grant is not
# active (forged, expired, revoked, missing), belongs to another session, or
# does not list the tool for tools/call. This policy adds the rules below.
#
# Shape: `allow` needs every positive check below to have held; a check
# whose rule reads an undefined value or errors is unproven, so the call is
# denied. `deny_reasons` only explains. trustpath evaluates with strict
# builtin errors, so an error anywhere ends in a logged denial naming it.
package trustpath.tool_call

settings := data.trustpath.settings.tool_calls

granted_scopes := {s | some s in input.grant.scopes}

# What the call needs: a tool's entry for tools/call, the method's otherwise.
rule := settings.tools[input.tool] if input.method == "tools/call"

rule := settings.methods[input.method] if input.method != "tools/call"

# The grant's actor chain (RFC 8693 `act`), when the grant was delegated.
act := input.grant.claims.act

# ------------------------------------------------------------ positive checks

grant_active if input.grant.status == "active"

call_known if {
	rule
	not input.tool in settings.denied_tools
}

scopes_held if {
	every scope in rule.scopes {
		scope in granted_scopes
	}
}

# Arguments are judged by name: their values are not in the input unless
# the configuration allow-lists them.
argument_accepted(name) if {
	is_string(name)
	not lower(name) in settings.forbidden_argument_names
	not rule.arguments
}

argument_accepted(name) if {
	is_string(name)
	not lower(name) in settings.forbidden_argument_names
	name in rule.arguments
}

arguments_accepted if {
	every name in input.arguments.names {
		argument_accepted(name)
	}
}

# A grant without an actor chain needs no actor; a delegated grant is for
# exactly the agent it was issued to act as, named by a string `sub`.
actor_matches if not input.grant.claims.act

actor_matches if {
	is_string(act.sub)
	is_string(input.actor)
	input.actor == act.sub
}

default allow := false

allow if {
	grant_active
	call_known
	scopes_held
	arguments_accepted
	actor_matches
	count(deny_reasons) == 0
}

# ------------------------------------------------------------ why not

deny_reasons contains msg if {
	input.tool in settings.denied_tools
	msg := sprintf("tool %q is on the deny list", [input.tool])
}

deny_reasons contains msg if {
	input.method == "tools/call"
	not settings.tools[input.tool]
	msg := sprintf("tool %q is not known", [input.tool])
}

deny_reasons contains msg if {
	input.method != "tools/call"
	not settings.methods[input.method]
	msg := sprintf("method %q is not allowed", [input.method])
}

missing_scopes contains scope if {
	some scope in rule.scopes
	not scope in granted_scopes
}

deny_reasons contains msg if {
	count(missing_scopes) > 0
	msg := sprintf("requires scope %s", [concat(" ", sort([s | some s in missing_scopes]))])
}

deny_reasons contains msg if {
	some name in input.arguments.names
	lower(name) in settings.forbidden_argument_names
	msg := sprintf("argument %q must not be passed to tools", [name])
}

deny_reasons contains msg if {
	rule.arguments
	some name in input.arguments.names
	not name in rule.arguments
	msg := sprintf("argument %q is not accepted by %s", [name, input.tool])
}

deny_reasons contains "the grant's actor is not known (its act has no string sub)" if {
	input.grant.claims.act
	not act_sub
}

# The grant's actor, when its `act` names one by a string `sub`. A rule, so
# `not act_sub` means the same in OPA and regorus: OPA makes
# `not is_string(act.sub)` undefined when `act.sub` is (README, "Differences
# from OPA").
act_sub := act.sub if is_string(act.sub)

deny_reasons contains msg if {
	is_string(act.sub)
	is_string(input.actor)
	input.actor != act.sub
	msg := sprintf("actor %q is not the grant's actor %q", [input.actor, act.sub])
}

deny_reasons contains "a delegated grant needs the acting agent (actor)" if {
	input.grant.claims.act
	not input.actor
}

# ------------------------------------------------------------ the decision

decision := {
	"allow": allow,
	"reasons": sort([r | some r in deny_reasons]),
	"required_scopes": sort([s | some s in missing_scopes]),
}
