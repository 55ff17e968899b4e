# Tool-call policy: may this call run under this grant?
#
# Entry point: data.trustpath.tool_call.decision (see README, "Policy").
# trustpath itself denies, whatever this policy says, when the grant is not
# active (forged, expired, revoked, missing), belongs to another session, or
# does not list the tool for tools/call. This policy adds the rules below.
package trustpath.tool_call

settings := data.trustpath.settings.tool_calls

granted_scopes := {s | some s in input.grant.scopes}

# What the call needs: a tool's entry for tools/call, the method's otherwise.
rule := settings.tools[input.tool] if input.method == "tools/call"

rule := settings.methods[input.method] if input.method != "tools/call"

# ------------------------------------------------------------ denials

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

# Arguments are judged by name: their values are not in the input unless
# the configuration allow-lists them.
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

# A delegated grant is for the agent it was issued to act as.
deny_reasons contains msg if {
	some act in [input.grant.claims.act]
	input.actor != act.sub
	msg := sprintf("actor %q is not the grant's actor %q", [input.actor, act.sub])
}

deny_reasons contains "a delegated grant needs the acting agent (actor)" if {
	input.grant.claims.act
	not input.actor
}

# ------------------------------------------------------------ the decision

decision := {
	"allow": count(deny_reasons) == 0,
	"reasons": sort([r | some r in deny_reasons]),
	"required_scopes": sort([s | some s in missing_scopes]),
}
