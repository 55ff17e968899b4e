// The authorization server's side of trustpath: build the decision request
// from what the token endpoint knows, ask, and turn the answer into either
// the access token's contents or the OAuth error the client expects.

import { errors } from 'oidc-provider';

// Not OAuth scopes of the resource: OpenID Connect's own.
const OIDC_SCOPES = new Set(['openid', 'offline_access', 'profile', 'email', 'address', 'phone']);

// RFC 9728 section 3.1: the protected resource metadata URL of a resource.
export function protectedResourceMetadataUrl(resource) {
  const url = new URL(resource);
  const path = url.pathname === '/' ? '' : url.pathname;
  return `${url.origin}/.well-known/oauth-protected-resource${path}`;
}

export function resourceScopes(scope) {
  return (scope || '').split(' ').filter((s) => s && !OIDC_SCOPES.has(s));
}

export class Trustpath {
  constructor({ url, token, timeoutMs = 5000 }) {
    this.url = url.replace(/\/$/u, '');
    this.token = token;
    this.timeoutMs = timeoutMs;
  }

  // POST /v1/decisions. Anything but a 200 with a decision throws: the
  // caller issues nothing (fail closed).
  async decide(request) {
    const headers = { 'content-type': 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const response = await fetch(`${this.url}/v1/decisions`, {
      method: 'POST',
      headers,
      body: JSON.stringify(request),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    const answer = await response.json().catch(() => ({}));
    if (response.status !== 200 || !answer.decision) {
      // 4xx names the malformed field; 503 means the decision could not be
      // logged. Either way this is our fault, not the client's.
      throw new Error(`trustpath answered ${response.status}: ${JSON.stringify(answer)}`);
    }
    return answer;
  }
}

// The OAuth error for a denial (README, "Integrating with your authorization
// server"): the client's proof failed -> invalid_client; nothing requested
// was approved -> invalid_scope; any other denial -> access_denied.
export function oauthError(answer) {
  const { authentication, decision } = answer;
  if (authentication.result === 'failed') {
    return new errors.InvalidClient(
      `client authentication failed: ${authentication.reasons.join('; ')}`,
    );
  }
  const reasons = decision.reasons.length
    ? decision.reasons
    : decision.denied_scopes.map((d) => `${d.scope}: ${d.reason}`);
  if (decision.reasons.includes('no requested scope was approved')) {
    return new errors.InvalidScope(
      reasons.join('; '),
      decision.requested_scopes.join(' '),
    );
  }
  return new errors.AccessDenied(reasons.join('; '));
}
