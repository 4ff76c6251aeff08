#!/usr/bin/env node
// A real OpenID Connect provider (panva/oidc-provider) for careloop's integration tests.
//
//   node provider.mjs --port 0 --client-id careloop-console --client-secret S \
//        --redirect-uri http://127.0.0.1:PORT/session/callback [--redirect-uri ...] \
//        [--accounts accounts.json] [other options, see README.md or --help]
//
// stdout carries exactly one line, a JSON object, once the server listens:
//   {"issuer":"http://127.0.0.1:NNNN","port":NNNN, ...}
// Everything else (oidc-provider notices, request log) goes to stderr.
// The process exits on SIGTERM/SIGINT, when its stdin (if a pipe) reaches EOF, or when its
// parent process goes away.

// oidc-provider prints notices with console.info (stdout). Keep stdout for the one JSON line.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

import * as fs from 'node:fs';
import * as http from 'node:http';
import * as crypto from 'node:crypto';
import { parseArgs } from 'node:util';

import { Provider, errors } from 'oidc-provider';
import * as jose from 'jose';

const USAGE = `usage: node provider.mjs [options]
  --port N                      port to listen on, 0 = any free port (default 0)
  --host H                      address to bind (default 127.0.0.1); the issuer is http://H:PORT
  --issuer URL                  override the issuer (default http://HOST:PORT)
  --client-id ID                interactive confidential client (default careloop-console)
  --client-secret S             its secret (default careloop-console-secret)
  --redirect-uri URI            registered redirect URI, repeatable (at least one required)
  --post-logout-redirect-uri U  registered post_logout_redirect_uri, repeatable
                                (default: "<origin>/" of every --redirect-uri)
  --any-loopback-port           register the client as application_type "native" so that any
                                port of a http://127.0.0.1 / http://[::1] redirect URI matches
  --accounts FILE               JSON {"<sub>": {claims...}}; any login not in it still logs in
  --script-client-id ID         client_credentials client (default careloop-script)
  --script-client-secret S      its secret (default careloop-script-secret)
  --smart-client-id ID          also register a SMART Backend Services client (client_credentials,
                                private_key_jwt) whose public keys are fetched from --smart-jwks-uri
  --smart-jwks-uri URL          (e.g. the URL printed by \`smart-client.mjs serve-jwks\`)
  --smart-scope S               scopes granted to it, repeatable (default system/Task.read
                                system/Task.write system/ServiceRequest.read system/ServiceRequest.write)
  --resource URI                resource indicator of the API (default urn:careloop-api)
  --audience AUD                "aud" of JWT access tokens for that resource (default careloop-api)
  --api-scope S                 scope(s) of that resource server, repeatable (default careloop)
  --careloop-claims-scope S     scope releasing careloop_* claims (default careloop; "openid"
                                releases them to every openid request)
  --access-token-ttl SECONDS    (default 3600)
  --id-token-ttl SECONDS        (default 3600)
  --keys FILE                   private JWKS to sign with (default: fresh RS256 key per run)
  --cookie-prefix P             prefix of the provider's cookie names (default op_: op_session,
                                op_interaction, op_interaction_resume; each also has a .sig and
                                a .legacy variant). Cookies ignore ports, so these must not clash
                                with careloop's own cookie names on 127.0.0.1.
  --quiet                       no request log on stderr
  --help`;

function fail(msg) {
  process.stderr.write(`provider.mjs: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      issuer: { type: 'string' },
      'client-id': { type: 'string', default: 'careloop-console' },
      'client-secret': { type: 'string', default: 'careloop-console-secret' },
      'redirect-uri': { type: 'string', multiple: true, default: [] },
      'post-logout-redirect-uri': { type: 'string', multiple: true, default: [] },
      'any-loopback-port': { type: 'boolean', default: false },
      accounts: { type: 'string' },
      'script-client-id': { type: 'string', default: 'careloop-script' },
      'script-client-secret': { type: 'string', default: 'careloop-script-secret' },
      'smart-client-id': { type: 'string' },
      'smart-jwks-uri': { type: 'string' },
      'smart-scope': { type: 'string', multiple: true, default: [] },
      resource: { type: 'string', default: 'urn:careloop-api' },
      audience: { type: 'string', default: 'careloop-api' },
      'api-scope': { type: 'string', multiple: true, default: [] },
      'careloop-claims-scope': { type: 'string', default: 'careloop' },
      'access-token-ttl': { type: 'string', default: '3600' },
      'id-token-ttl': { type: 'string', default: '3600' },
      keys: { type: 'string' },
      'cookie-prefix': { type: 'string', default: 'op_' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  fail(err.message);
}
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (args['redirect-uri'].length === 0) fail('at least one --redirect-uri is required');

const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad --port ${args.port}`);
const accessTokenTtl = Number.parseInt(args['access-token-ttl'], 10);
const idTokenTtl = Number.parseInt(args['id-token-ttl'], 10);
if (!(accessTokenTtl > 0) || !(idTokenTtl > 0)) fail('TTLs must be positive integers');
const apiScopes = args['api-scope'].length
  ? args['api-scope'].flatMap((s) => s.split(' ')).filter(Boolean)
  : ['careloop'];
const smartScopes = args['smart-scope'].length
  ? args['smart-scope'].flatMap((s) => s.split(' ')).filter(Boolean)
  : ['system/Task.read', 'system/Task.write', 'system/ServiceRequest.read', 'system/ServiceRequest.write'];
if (Boolean(args['smart-client-id']) !== Boolean(args['smart-jwks-uri'])) {
  fail('--smart-client-id and --smart-jwks-uri go together');
}

// ---------------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------------
let accounts = {};
if (args.accounts) {
  try {
    accounts = JSON.parse(fs.readFileSync(args.accounts, 'utf8'));
  } catch (err) {
    fail(`cannot read --accounts ${args.accounts}: ${err.message}`);
  }
  if (accounts === null || typeof accounts !== 'object' || Array.isArray(accounts)) {
    fail('--accounts must hold a JSON object {"<sub>": {claims}}');
  }
}
const accountClaims = (sub) => (Object.hasOwn(accounts, sub) ? accounts[sub] ?? {} : undefined);

const CARELOOP_CLAIMS = ['careloop_role', 'careloop_facility', 'careloop_peer_id'];
const PROFILE_CLAIMS = ['name', 'family_name', 'given_name', 'middle_name', 'nickname',
  'preferred_username', 'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo',
  'locale', 'updated_at'];
const EMAIL_CLAIMS = ['email', 'email_verified'];
const RESERVED = new Set(['sub', 'iss', 'aud', 'exp', 'iat', 'nbf', 'jti', 'auth_time', 'nonce',
  'acr', 'amr', 'azp', 'sid', 'at_hash', 'c_hash', 'scope', 'client_id']);

// Every other claim key found in the accounts file is released together with the careloop_* ones.
const extraClaimNames = new Set(CARELOOP_CLAIMS);
for (const claims of Object.values(accounts)) {
  for (const key of Object.keys(claims ?? {})) {
    if (!PROFILE_CLAIMS.includes(key) && !EMAIL_CLAIMS.includes(key) && !RESERVED.has(key)) {
      extraClaimNames.add(key);
    }
  }
}

const claimsScope = args['careloop-claims-scope'];
const claimsConfig = {
  acr: null,
  sid: null,
  auth_time: null,
  iss: null,
  openid: ['sub'],
  profile: PROFILE_CLAIMS,
  email: EMAIL_CLAIMS,
};
if (claimsScope === 'openid') {
  claimsConfig.openid = ['sub', ...extraClaimNames];
} else {
  claimsConfig[claimsScope] = [...extraClaimNames];
}

// Claims put into JWT access tokens (user tokens and client_credentials tokens alike).
function tokenClaimsFor(sub) {
  const claims = accountClaims(sub);
  if (!claims) return undefined;
  const out = {};
  for (const [key, value] of Object.entries(claims)) {
    if (!RESERVED.has(key)) out[key] = value;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Signing keys
// ---------------------------------------------------------------------------------------------
let jwks;
if (args.keys) {
  try {
    jwks = JSON.parse(fs.readFileSync(args.keys, 'utf8'));
  } catch (err) {
    fail(`cannot read --keys ${args.keys}: ${err.message}`);
  }
} else {
  const { privateKey } = await jose.generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  jwk.kid = await jose.calculateJwkThumbprint(jwk);
  jwk.alg = 'RS256';
  jwk.use = 'sig';
  jwks = { keys: [jwk] };
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------
const redirectUris = args['redirect-uri'];
const postLogoutRedirectUris = args['post-logout-redirect-uri'].length
  ? args['post-logout-redirect-uri']
  : [...new Set(redirectUris.map((u) => `${new URL(u).origin}/`))];

const clients = [
  {
    client_id: args['client-id'],
    client_secret: args['client-secret'],
    application_type: args['any-loopback-port'] ? 'native' : 'web',
    redirect_uris: redirectUris,
    post_logout_redirect_uris: postLogoutRedirectUris,
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    // client_secret_post is accepted as well: oidc-provider treats basic/post as equivalent.
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  },
  {
    client_id: args['script-client-id'],
    client_secret: args['script-client-secret'],
    redirect_uris: [],
    response_types: [],
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
  },
];
if (args['smart-client-id']) {
  clients.push({
    client_id: args['smart-client-id'],
    redirect_uris: [],
    response_types: [],
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks_uri: args['smart-jwks-uri'],
  });
}

// ---------------------------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------------------------
const resourceIndicator = args.resource;
try {
  // eslint-disable-next-line no-new
  new URL(resourceIndicator);
} catch {
  fail(`--resource must be an absolute URI (RFC 8707), got ${resourceIndicator}`);
}

const configuration = {
  clients,
  jwks,
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
    names: {
      session: `${args['cookie-prefix']}session`,
      interaction: `${args['cookie-prefix']}interaction`,
      resume: `${args['cookie-prefix']}interaction_resume`,
    },
  },
  claims: claimsConfig,
  scopes: ['openid', 'offline_access', 'profile', 'email', claimsScope, ...apiScopes],
  conformIdTokenClaims: false,
  pkce: { methods: ['S256'], required: () => true }, // every authorization code request must carry S256 PKCE
  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
    IdToken: idTokenTtl,
  },
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { ...(accountClaims(sub) ?? {}), sub };
      },
    };
  },
  // Consent is granted automatically: whatever the client asks for (OIDC scopes, claims,
  // resource scopes) is added to the grant, so the consent prompt never shows.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    let grant;
    if (grantId) grant = await oidc.provider.Grant.find(grantId);
    if (!grant) {
      grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
    }
    const oidcScopes = [...(oidc.requestParamOIDCScopes ?? [])];
    if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
    const claims = [...(oidc.requestParamClaims ?? [])];
    if (claims.length) grant.addOIDCClaims(claims);
    for (const [indicator, rs] of Object.entries(oidc.resourceServers ?? {})) {
      if (rs.scope) grant.addResourceScope(indicator, rs.scope);
    }
    await grant.save();
    return grant;
  },
  extraTokenClaims(_ctx, token) {
    // user tokens carry the account id; client_credentials tokens only the client id
    return tokenClaimsFor(token.accountId ?? token.clientId);
  },
  enabledJWA: {
    clientAuthSigningAlgValues: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'HS256'],
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // client_credentials without a resource parameter gets the careloop API token anyway
      async defaultResource(ctx, _client, oneOf) {
        if (oneOf) return oneOf;
        if (ctx.oidc.route === 'token' && ctx.oidc.params.grant_type === 'client_credentials') {
          return resourceIndicator;
        }
        return undefined;
      },
      // the token endpoint may omit the resource parameter if it was sent to /auth
      useGrantedResource: async () => true,
      async getResourceServerInfo(_ctx, indicator) {
        if (indicator !== resourceIndicator) {
          throw new errors.InvalidTarget(`unknown resource indicator ${indicator}, this provider serves ${resourceIndicator}`);
        }
        return {
          scope: [...new Set([...apiScopes, ...smartScopes])].join(' '),
          audience: args.audience,
          accessTokenTTL: accessTokenTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
};

let provider;
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, args.host, resolve);
});
const actualPort = server.address().port;
const hostForUrl = args.host.includes(':') ? `[${args.host}]` : args.host;
const issuer = args.issuer ?? `http://${hostForUrl}:${actualPort}`;

try {
  provider = new Provider(issuer, configuration);
} catch (err) {
  fail(`oidc-provider configuration error: ${err.stack || err}`);
}

if (!args.quiet) {
  provider.use(async (ctx, next) => {
    const started = Date.now();
    await next();
    process.stderr.write(`[provider] ${ctx.method} ${ctx.originalUrl} -> ${ctx.status} (${Date.now() - started}ms)\n`);
  });
}
provider.on('server_error', (_ctx, err) => {
  process.stderr.write(`[provider] server_error: ${err.stack || err}\n`);
});

server.on('request', provider.callback());

process.stdout.write(`${JSON.stringify({
  issuer,
  port: actualPort,
  discovery: `${issuer}/.well-known/openid-configuration`,
  jwks_uri: `${issuer}/jwks`,
  client_id: args['client-id'],
  script_client_id: args['script-client-id'],
  resource: resourceIndicator,
  audience: args.audience,
})}\n`);

// ---------------------------------------------------------------------------------------------
// Lifetime
// ---------------------------------------------------------------------------------------------
function shutdown(code = 0) {
  server.close();
  server.closeAllConnections?.();
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.on('SIGHUP', () => shutdown(0));

// Exit when stdin (a pipe or socket held by the parent) closes. A stdin that is /dev/null, a file
// or a terminal is ignored, otherwise `cmd </dev/null &` would stop at once.
try {
  const st = fs.fstatSync(0);
  if (st.isFIFO() || st.isSocket()) {
    process.stdin.on('data', () => {});
    process.stdin.on('end', () => shutdown(0));
    process.stdin.on('close', () => shutdown(0));
    process.stdin.on('error', () => shutdown(0));
    process.stdin.resume();
  }
} catch {
  // no stdin at all
}

// Exit when the parent goes away (we get re-parented).
// (process.ppid is a cached value in Node 20, so read it from /proc.)
function currentPpid() {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}
const parentPid = currentPpid();
if (parentPid !== undefined) {
  setInterval(() => {
    if (currentPpid() !== parentPid) shutdown(0);
  }, 500).unref();
}
