#!/usr/bin/env node
// SMART Backend Services client (SMART App Launch 2.x, client-confidential-asymmetric) for
// careloop's integration tests, built on the `jose` library only.
//
// Subcommands (each prints one JSON document on stdout; see README.md):
//   keys        --alg RS384|ES384 --kid KID
//   assert      --key FILE_OR_JSON --client-id ID --aud TOKEN_URL [options]
//   token       --token-url URL --key FILE_OR_JSON --client-id ID --scope "..." [options]
//   serve-jwks  --port 0 --jwks FILE_OR_JSON
//   verify      --jwks-url URL --token JWT --issuer ISS [--audience AUD]
//
// Exit codes: 0 when the JSON result was printed (also for an HTTP error status from `token` and
// for {"valid":false} from `verify`), 2 for usage errors, 1 for unexpected failures.

import * as fs from 'node:fs';
import * as http from 'node:http';
import * as crypto from 'node:crypto';
import { parseArgs } from 'node:util';

import * as jose from 'jose';

const USAGE = `usage: node smart-client.mjs <command> [options]

  keys --alg RS384|ES384 [--kid KID]
      -> {"private": JWK, "public": JWK, "jwks": {"keys": [public JWK]}}

  assert --key FILE_OR_JSON --client-id ID --aud TOKEN_URL
         [--exp-in SECONDS (240)] [--iat-offset SECONDS (0)] [--jti ID (random)]
         [--kid KID] [--jku URL] [--alg ALG|none] [--typ TYP]
         [--iss ISS] [--sub SUB] [--omit NAME ...]
      -> {"assertion": "<compact JWS>", "header": {...}, "payload": {...}}

  token --token-url URL --client-id ID --scope "system/Task.read ..."
        (--key FILE_OR_JSON [assert options] | --assertion JWT)
      -> {"status": 200, "body": {...} | "text", "assertion": "<JWS sent>"}

  serve-jwks [--port 0] --jwks FILE_OR_JSON [--cache-control VALUE]
      -> {"url": "http://127.0.0.1:NNNN/jwks.json"}   (then serves until stdin closes / SIGTERM)
         GET any path: the JWKS; POST /set: replace the JWKS; GET /__stats: {"requests": N, ...}

  verify --jwks-url URL --token JWT --issuer ISS [--audience AUD] [--typ TYP]
         [--alg ALG ...] [--clock-tolerance SECONDS]
      -> {"valid": true, "payload": {...}, "protectedHeader": {...}}
       | {"valid": false, "error": "...", "code": "ERR_..."}

FILE_OR_JSON: inline JSON (starting with "{") or a path to a JSON file. A key argument may be a
JWK, the whole output of \`keys\` (its "private" member is used), or a JWKS (its first key).`;

class UsageError extends Error {}

function out(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function readJsonArg(value, what) {
  if (value === undefined) throw new UsageError(`missing --${what}`);
  const text = value.trim().startsWith('{') || value.trim().startsWith('[')
    ? value
    : fs.readFileSync(value, 'utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--${what}: not valid JSON (${err.message})`);
  }
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

function publicOnly(jwk) {
  const copy = { ...jwk };
  for (const m of PRIVATE_MEMBERS) delete copy[m];
  return copy;
}

// Accepts a JWK, the output of `keys`, or a JWKS; returns a private JWK.
function privateJwkFrom(value) {
  let jwk = value;
  if (jwk && typeof jwk === 'object' && jwk.private) jwk = jwk.private;
  if (jwk && Array.isArray(jwk.keys)) jwk = jwk.keys.find((k) => k.d) ?? jwk.keys[0];
  if (!jwk || typeof jwk !== 'object' || !jwk.kty) throw new UsageError('--key: no JWK found');
  if (!jwk.d) throw new UsageError('--key: the JWK has no private part ("d")');
  return jwk;
}

// Accepts a JWKS, a single JWK, an array of JWKs, or the output of `keys`; returns a public JWKS.
function publicJwksFrom(value) {
  let keys;
  if (Array.isArray(value)) keys = value;
  else if (value && Array.isArray(value.keys)) keys = value.keys;
  else if (value && value.public) keys = [value.public];
  else if (value && value.kty) keys = [value];
  else throw new UsageError('--jwks: expected {"keys":[...]}, a JWK, or the output of `keys`');
  return { keys: keys.map(publicOnly) };
}

function defaultAlg(jwk) {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === 'RSA') return 'RS384';
  if (jwk.kty === 'EC') return { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[jwk.crv] ?? 'ES384';
  if (jwk.kty === 'OKP') return 'EdDSA';
  throw new UsageError(`cannot infer alg for kty ${jwk.kty}; pass --alg`);
}

function int(value, name, dflt) {
  if (value === undefined) return dflt;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new UsageError(`--${name} must be an integer, got ${value}`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// keys
// ---------------------------------------------------------------------------------------------
async function cmdKeys(opts) {
  const alg = opts.alg ?? 'RS384';
  if (!['RS384', 'ES384', 'RS256', 'ES256', 'PS384', 'RS512', 'ES512'].includes(alg)) {
    throw new UsageError(`--alg must be RS384 or ES384 (also accepted: RS256 ES256 PS384 RS512 ES512), got ${alg}`);
  }
  const genOpts = { extractable: true };
  if (alg.startsWith('RS') || alg.startsWith('PS')) genOpts.modulusLength = 2048;
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, genOpts);
  const pub = await jose.exportJWK(publicKey);
  const priv = await jose.exportJWK(privateKey);
  const kid = opts.kid ?? await jose.calculateJwkThumbprint(pub);
  Object.assign(pub, { kid, alg, use: 'sig' });
  Object.assign(priv, { kid, alg, use: 'sig' });
  out({ private: priv, public: pub, jwks: { keys: [pub] } });
}

// ---------------------------------------------------------------------------------------------
// assert
// ---------------------------------------------------------------------------------------------
async function buildAssertion(opts, aud) {
  if (!opts['client-id']) throw new UsageError('missing --client-id');
  if (!aud) throw new UsageError('missing --aud');
  const jwk = privateJwkFrom(readJsonArg(opts.key, 'key'));
  const alg = opts.alg ?? defaultAlg(jwk);
  const now = Math.floor(Date.now() / 1000);
  const iat = now + int(opts['iat-offset'], 'iat-offset', 0);
  const exp = now + int(opts['exp-in'], 'exp-in', 240);

  const header = { alg, kid: opts.kid ?? jwk.kid, typ: opts.typ ?? 'JWT' };
  if (opts.jku) header.jku = opts.jku;
  const payload = {
    iss: opts.iss ?? opts['client-id'],
    sub: opts.sub ?? opts['client-id'],
    aud,
    exp,
    iat,
    jti: opts.jti ?? crypto.randomUUID(),
  };
  for (const name of opts.omit ?? []) {
    if (name === 'alg') throw new UsageError('--omit alg is not possible; use --alg none');
    delete header[name];
    delete payload[name];
  }
  if (header.kid === undefined) delete header.kid;

  let assertion;
  if (alg === 'none') {
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    assertion = `${enc(header)}.${enc(payload)}.`;
  } else {
    const keyJwk = { ...jwk };
    if (opts.alg) delete keyJwk.alg; // allow signing with another alg of the same key type
    const key = await jose.importJWK(keyJwk, alg);
    assertion = await new jose.SignJWT(payload).setProtectedHeader(header).sign(key);
  }
  return { assertion, header, payload };
}

async function cmdAssert(opts) {
  out(await buildAssertion(opts, opts.aud));
}

// ---------------------------------------------------------------------------------------------
// token
// ---------------------------------------------------------------------------------------------
async function cmdToken(opts) {
  const tokenUrl = opts['token-url'];
  if (!tokenUrl) throw new UsageError('missing --token-url');
  if (opts.scope === undefined) throw new UsageError('missing --scope');
  let assertion = opts.assertion;
  if (!assertion) {
    ({ assertion } = await buildAssertion(opts, opts.aud ?? tokenUrl));
  }
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    scope: opts.scope,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  });
  const res = await fetch(tokenUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    },
    body: form.toString(),
  });
  const text = await res.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // keep text
  }
  out({ status: res.status, body, assertion });
}

// ---------------------------------------------------------------------------------------------
// serve-jwks
// ---------------------------------------------------------------------------------------------
function watchLifetime(onExit) {
  process.on('SIGTERM', onExit);
  process.on('SIGINT', onExit);
  process.on('SIGHUP', onExit);
  try {
    const st = fs.fstatSync(0);
    if (st.isFIFO() || st.isSocket()) {
      process.stdin.on('data', () => {});
      process.stdin.on('end', onExit);
      process.stdin.on('close', onExit);
      process.stdin.on('error', onExit);
      process.stdin.resume();
    }
  } catch {
    // no stdin
  }
  // exit when the parent goes away (process.ppid is cached in Node 20: read /proc)
  const ppid = () => {
    try {
      const stat = fs.readFileSync('/proc/self/stat', 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      return undefined;
    }
  };
  const parentPid = ppid();
  if (parentPid !== undefined) {
    setInterval(() => {
      if (ppid() !== parentPid) onExit();
    }, 500).unref();
  }
}

async function cmdServeJwks(opts) {
  let jwks = publicJwksFrom(readJsonArg(opts.jwks, 'jwks'));
  const port = int(opts.port, 'port', 0);
  const host = opts.host ?? '127.0.0.1';
  const stats = { requests: 0, sets: 0 };

  const server = http.createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const send = (status, obj, extra = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...extra });
      res.end(JSON.stringify(obj));
    };
    if (req.method === 'POST' && path === '/set') {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        try {
          jwks = publicJwksFrom(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          stats.sets += 1;
          process.stderr.write(`[serve-jwks] keys set: ${jwks.keys.map((k) => k.kid).join(',')}\n`);
          send(200, { ok: true, kids: jwks.keys.map((k) => k.kid) });
        } catch (err) {
          send(400, { ok: false, error: err.message });
        }
      });
      return;
    }
    if (req.method === 'GET' && path === '/__stats') {
      send(200, { ...stats, kids: jwks.keys.map((k) => k.kid) });
      return;
    }
    if (req.method === 'GET' || req.method === 'HEAD') {
      stats.requests += 1;
      const extra = opts['cache-control'] ? { 'cache-control': opts['cache-control'] } : {};
      send(200, jwks, extra);
      return;
    }
    send(405, { error: 'method not allowed' });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const hostForUrl = host.includes(':') ? `[${host}]` : host;
  const { port: actual } = server.address();
  out({ url: `http://${hostForUrl}:${actual}/jwks.json`, port: actual });
  watchLifetime(() => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}

// ---------------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------------
async function cmdVerify(opts) {
  if (!opts['jwks-url']) throw new UsageError('missing --jwks-url');
  if (!opts.token) throw new UsageError('missing --token');
  if (!opts.issuer) throw new UsageError('missing --issuer');
  const jwks = jose.createRemoteJWKSet(new URL(opts['jwks-url']));
  const verifyOpts = { issuer: opts.issuer };
  if (opts.audience) verifyOpts.audience = opts.audience;
  if (opts.typ) verifyOpts.typ = opts.typ;
  if (opts.alg?.length) verifyOpts.algorithms = opts.alg;
  if (opts['clock-tolerance']) verifyOpts.clockTolerance = int(opts['clock-tolerance'], 'clock-tolerance', 0);
  try {
    const { payload, protectedHeader } = await jose.jwtVerify(opts.token, jwks, verifyOpts);
    out({ valid: true, payload, protectedHeader });
  } catch (err) {
    out({ valid: false, error: err.message, code: err.code ?? err.name });
  }
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------
const COMMANDS = {
  keys: cmdKeys,
  assert: cmdAssert,
  token: cmdToken,
  'serve-jwks': cmdServeJwks,
  verify: cmdVerify,
};

async function main() {
  const [command, ...rest] = process.argv.slice(2);
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command ? 0 : 2;
  }
  const fn = COMMANDS[command];
  if (!fn) throw new UsageError(`unknown command ${command}`);
  // let numeric options take negative values written as a separate argument: --iat-offset -600
  const argv = [];
  for (let i = 0; i < rest.length; i += 1) {
    if (/^--[a-z-]+$/.test(rest[i]) && /^-\d+$/.test(rest[i + 1] ?? '')) {
      argv.push(`${rest[i]}=${rest[i + 1]}`);
      i += 1;
    } else {
      argv.push(rest[i]);
    }
  }
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      alg: { type: 'string', multiple: command === 'verify' },
      kid: { type: 'string' },
      key: { type: 'string' },
      'client-id': { type: 'string' },
      aud: { type: 'string' },
      'exp-in': { type: 'string' },
      'iat-offset': { type: 'string' },
      jti: { type: 'string' },
      jku: { type: 'string' },
      typ: { type: 'string' },
      iss: { type: 'string' },
      sub: { type: 'string' },
      omit: { type: 'string', multiple: true },
      'token-url': { type: 'string' },
      scope: { type: 'string' },
      assertion: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      jwks: { type: 'string' },
      'cache-control': { type: 'string' },
      'jwks-url': { type: 'string' },
      token: { type: 'string' },
      issuer: { type: 'string' },
      audience: { type: 'string' },
      'clock-tolerance': { type: 'string' },
    },
  });
  await fn(values);
  return 0;
}

main().then(
  (code) => {
    if (code) process.exitCode = code;
  },
  (err) => {
    const usage = err instanceof UsageError || err?.code?.startsWith?.('ERR_PARSE_ARGS');
    process.stderr.write(`smart-client.mjs: ${err.message}\n${usage ? `${USAGE}\n` : err.stack ?? ''}\n`);
    process.exitCode = usage ? 2 : 1;
  },
);
