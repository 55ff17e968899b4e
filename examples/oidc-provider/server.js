// An OAuth authorization server for MCP clients, built on oidc-provider,
// that asks trustpath before it issues any access token.
//
// Hook points (README, "Integrating with your authorization server"):
//   features.clientIdMetadataDocument  clients are CIMD URLs; allowFetch
//                                      limits which hosts are fetched
//   fetch                              keeps the document bytes the AS
//                                      fetched, so trustpath judges the same
//                                      document
//   features.resourceIndicators
//     .getResourceServerInfo           at the token endpoint: the trustpath
//                                      decision; the approved scopes and the
//                                      grant's lifetime become the token's
//   extraTokenClaims                   trustpath's session and grant ids in
//                                      the access token
//
// Login and consent are automatic (one demo account): replace
// /interaction/:uid with your own pages.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

import {
  Trustpath, oauthError, protectedResourceMetadataUrl, resourceScopes,
} from './trustpath.js';

const env = process.env;
const port = Number(env.PORT || 4000);
const issuer = env.ISSUER || `http://127.0.0.1:${port}`;
// The MCP servers (RFC 8707 resource indicators) this AS issues tokens for.
const resources = new Set((env.RESOURCES || '').split(',').filter(Boolean));
// Hosts ("host:port") whose client ID metadata documents may be fetched;
// empty means any public host.
const cimdHosts = new Set((env.CIMD_HOSTS || '').split(',').filter(Boolean));
// Development only: oidc-provider refuses to fetch from special-use
// addresses; a locally served document needs loopback.
const allowLoopbackFetch = env.CIMD_ALLOW_LOOPBACK === '1';
const account = env.ACCOUNT || 'alice@example.com';
const trustpath = new Trustpath({
  url: env.TRUSTPATH_URL || 'http://127.0.0.1:8080',
  token: env.TRUSTPATH_TOKEN,
});

if (resources.size === 0) {
  console.error('RESOURCES must name at least one resource (comma separated)');
  process.exit(2);
}

// ---------------------------------------------------------------- documents

// oidc-provider keeps the parsed document to itself; trustpath should hash
// and judge the bytes the AS actually fetched.
const MAX_DOCUMENT_BYTES = 5120;
const fetchedDocuments = new Map();

async function readCapped(response, limit) {
  const reader = response.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function fetchKeepingDocuments(url, options) {
  if (allowLoopbackFetch) delete options.dispatcher;
  const response = await globalThis.fetch(url, options);
  if (response.status === 200 && response.body) {
    const text = await readCapped(response.clone(), MAX_DOCUMENT_BYTES);
    if (text !== undefined) {
      fetchedDocuments.delete(String(url));
      fetchedDocuments.set(String(url), text);
      // Bounded: the oldest document goes first.
      if (fetchedDocuments.size > 1000) {
        fetchedDocuments.delete(fetchedDocuments.keys().next().value);
      }
    }
  }
  return response;
}

function documentOf(clientId) {
  const text = fetchedDocuments.get(clientId);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------- decisions

// One decision per token request: getResourceServerInfo makes it,
// extraTokenClaims reads it.
const decisions = new WeakMap();

async function decide(ctx, resource, client) {
  const code = ctx.oidc.entities.AuthorizationCode;
  if (!code) {
    // Only the authorization code grant is enabled here; anything else
    // would need its own decision request.
    throw new errors.UnsupportedGrantType();
  }
  const request = {
    // The AS's grant is per user and client and survives a step-up
    // re-authorization: one trustpath session per MCP connection.
    session_id: code.grantId,
    resource,
    scopes: resourceScopes(code.scope),
    metadata_source: {
      kind: client.clientIdMetadataDocument ? 'cimd' : 'preregistered',
      authorization_server: {
        issuer,
        token_endpoint: ctx.oidc.urlFor('token'),
        authorization_endpoint: ctx.oidc.urlFor('authorization'),
      },
      protected_resource_metadata_url: protectedResourceMetadataUrl(resource),
    },
    client: {
      client_id: client.clientId,
      document: documentOf(client.clientId),
      redirect_uri: code.redirectUri,
      // The private_key_jwt assertion, already verified by oidc-provider;
      // trustpath checks it against the document's keys and logs only its
      // claims and SHA-256.
      assertion: ctx.oidc.params.client_assertion,
    },
    subject: { iss: issuer, sub: code.accountId },
  };
  const answer = await trustpath.decide(request);
  console.log(JSON.stringify({
    msg: 'trustpath decision',
    client_id: client.clientId,
    session_id: answer.session_id,
    decision_id: answer.decision_id,
    outcome: answer.decision.outcome,
    approved: answer.decision.approved_scopes,
  }));
  if (!answer.decision.allow) throw oauthError(answer);
  return answer;
}

async function getResourceServerInfo(ctx, resource, client) {
  if (!resources.has(resource)) throw new errors.InvalidTarget();
  if (ctx.oidc.route !== 'token') {
    // Authorization and consent: nothing is issued yet, so let the request's
    // scopes through; trustpath decides at the token endpoint, where the
    // client's proof is presented.
    return { scope: resourceScopes(ctx.oidc.params.scope).join(' ') };
  }
  let answer = decisions.get(ctx);
  if (!answer) {
    answer = await decide(ctx, resource, client);
    decisions.set(ctx, answer);
  }
  return {
    scope: answer.grant.scope,
    audience: resource,
    accessTokenTTL: answer.decision.ttl_seconds,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'ES256' } },
  };
}

function extraTokenClaims(ctx) {
  const answer = ctx && decisions.get(ctx);
  if (!answer) return undefined;
  return {
    trustpath: {
      session_id: answer.session_id,
      grant_id: answer.grant.jti,
      decision_id: answer.decision_id,
    },
  };
}

// ---------------------------------------------------------------- provider

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }), kid: 'as-es256', alg: 'ES256', use: 'sig',
};

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  // The one signing key is ES256; documents rarely say what they want.
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  responseTypes: ['code'],
  pkce: { required: () => true },
  fetch: fetchKeepingDocuments,
  extraTokenClaims,
  // Errors the user agent lands on, as JSON: there is no UI here.
  renderError: (ctx, out) => {
    ctx.type = 'application/json';
    ctx.body = out;
  },
  features: {
    devInteractions: { enabled: false },
    clientIdMetadataDocument: {
      enabled: true,
      ack: 'draft-02',
      allowFetch: (_ctx, clientId) => cimdHosts.size === 0 || cimdHosts.has(new URL(clientId).host),
      cacheDuration: { min: 30, max: 300 },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo,
    },
  },
});

// Auto-login and auto-consent: grant what was asked. trustpath, not this
// page, decides what is approved.
async function autoInteraction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: account } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) {
      grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    }
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
const server = createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    autoInteraction(req, res).catch((err) => {
      console.error('interaction failed:', err.message);
      res.statusCode = 500;
      res.end();
    });
    return;
  }
  callback(req, res);
});
server.listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ msg: 'authorization server listening', issuer, resources: [...resources] }));
});
