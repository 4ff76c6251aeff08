// The session (cookie, CSRF token) and the API (a short-lived bearer token asked
// from the session), and the live stream of read-model changes.

export class ApiError extends Error {
  constructor(status, problem) {
    const text = (problem && (problem.detail || problem.title)) || `The server answered ${status}.`;
    super(text);
    this.status = status;
    this.problem = problem || {};
    this.field = this.problem.field || null;
  }
}

export const session = { user: null, csrf: null, idle: 1800, ended: null };

let token = null;
let tokenExpires = 0;
let active = false;
let pendingToken = null;

let lastActivity = Date.now();
let idleEnded = false;
// Activity keeps the session alive; after the idle time without any, the token in
// hand is dropped too, so the server decides (and ends an idle session).
['pointerdown', 'keydown'].forEach((e) => document.addEventListener(e, () => {
  const now = Date.now();
  if (now - lastActivity > session.idle * 1000) idleEnded = true;
  lastActivity = now;
  active = true;
}, { passive: true, capture: true }));

export async function loadSession() {
  const r = await fetch('/session', { credentials: 'same-origin', cache: 'no-store' });
  const s = await r.json();
  session.user = s.signed_in ? s.user : null;
  session.csrf = s.csrf_token || null;
  session.idle = s.idle_timeout_secs || 1800;
  session.ways = s.sign_in || {};
  return s;
}

async function freshToken(retried = false) {
  const r = await fetch('/session/token', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf || '' },
    body: JSON.stringify({ active }),
  });
  if ((r.status === 401 || r.status === 403) && !retried) {
    // Signed in again in another tab: a new session, a new CSRF token.
    const before = session.csrf;
    await loadSession().catch(() => {});
    if (session.user && session.csrf !== before) {
      session.resumed?.();
      return freshToken(true);
    }
  }
  active = false;
  if (r.status === 401) {
    session.ended?.();
    throw new ApiError(401, { title: 'Your session ended: sign in again. What you typed on this page is kept.' });
  }
  if (!r.ok) throw new ApiError(r.status, await problem(r));
  const t = await r.json();
  token = t.access_token;
  tokenExpires = Date.now() + (t.expires_in || 300) * 1000;
  return token;
}

async function bearer() {
  if (idleEnded) {
    idleEnded = false;
    token = null;
  }
  if (token && Date.now() < tokenExpires - 30000) return token;
  pendingToken = pendingToken || freshToken().finally(() => (pendingToken = null));
  return pendingToken;
}

/// Keeps the session alive while the person uses the page (no token asked otherwise).
setInterval(() => {
  if (active && session.user) freshToken().catch(() => {});
}, 60000);

async function problem(r) {
  try {
    return await r.json();
  } catch {
    return { title: r.status >= 500 ? 'careloop could not answer just now. Nothing was lost: try again.' : `The server answered ${r.status}.` };
  }
}

export async function api(method, path, body, { accept = 'application/json', headers = {} } = {}) {
  let r;
  try {
    r = await fetch(path, {
      method,
      headers: {
        Authorization: `Bearer ${await bearer()}`,
        Accept: accept,
        ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
        ...headers,
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
      cache: 'no-store',
    });
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError(0, { title: 'careloop cannot be reached. Check the connection; nothing you typed was lost.' });
  }
  if (!r.ok) {
    const p = await problem(r);
    if (r.status >= 500 && !p.detail) p.detail = 'careloop could not do this just now. Nothing was lost: try again in a moment.';
    throw new ApiError(r.status, p);
  }
  if (accept !== 'application/json') return r.text();
  return r.status === 204 ? null : r.json();
}

export const get = (path) => api('GET', path);

// Every page of a list (`{items, next_cursor}`), up to `pages` pages: a roster or a
// caseload longer than one page is shown whole.
export async function getAll(path, pages = 50) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < pages; i += 1) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await get(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...(page.items || []));
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return { items };
}
export const post = (path, body) => api('POST', path, body ?? {});
export const put = (path, body) => api('PUT', path, body ?? {});

/// Reads with `read` until `ok` holds of what it read, or `timeout` ms have passed
/// (a read model applies a change a moment after the command): the last read.
export async function poll(read, ok, { timeout = 8000 } = {}) {
  const deadline = Date.now() + timeout;
  for (let wait = 150; ; wait = Math.min(wait * 2, 1000)) {
    const v = await read();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, wait));
  }
}

/// Who was already read in this page (each read is audited once, not on every
/// live refresh); forgotten at sign-out.
const known = new Map();

/// The people behind referral ids (name, language, contact modes), 100 at a time.
export async function people(ids) {
  const out = new Map();
  const unique = [...new Set(ids)];
  const missing = unique.filter((id) => !known.has(id));
  for (let i = 0; i < missing.length; i += 100) {
    const r = await post('/v1/referrals/people', { referral_ids: missing.slice(i, i + 100) });
    for (const p of r.items) known.set(p.referral_id, p);
  }
  for (const id of unique) if (known.has(id)) out.set(id, known.get(id));
  return out;
}

export async function signOut() {
  await fetch('/session/logout', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'X-CSRF-Token': session.csrf || '' },
  });
  token = null;
  known.clear();
  session.user = null;
}

// ---- live updates ----

let source = null;
let retry = 1000;

/// Calls `onChange` for each change the read models announce (and once after each
/// reconnection, when changes may have been missed); reconnects by itself.
export function live(onChange, onState) {
  if (source) source.close();
  const connect = () => {
    source = new EventSource('/session/stream');
    source.addEventListener('open', () => {
      retry = 1000;
      onState('live');
      onChange({ read_model: null });
    });
    source.addEventListener('change', (e) => {
      let data = {};
      try {
        data = JSON.parse(e.data);
      } catch {}
      onChange(data);
    });
    source.addEventListener('error', () => {
      onState('reconnecting');
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(() => session.user && connect(), retry);
        retry = Math.min(retry * 2, 15000);
      }
    });
  };
  connect();
}

export function stopLive() {
  if (source) source.close();
  source = null;
}
