// The care console: a hash-routed single-page application. Each screen is a function
// that draws into <main> and may return a `refresh` the live stream calls.

import { h, clear, notice, clock } from './ui.js';
import { session, loadSession, live, stopLive, signOut } from './api.js';
import { signIn } from './views/signin.js';
import * as peer from './views/peer.js';
import * as coord from './views/coordinator.js';
import * as admin from './views/admin.js';
import * as liaison from './views/liaison.js';
import { documentation } from './views/documentation.js';

const HOME = { peer: '#/today', coordinator: '#/queue', admin: '#/continuity', hospital: '#/facility' };

const NAV = {
  peer: [['#/today', 'Today']],
  coordinator: [['#/queue', 'Inbound'], ['#/overdue', 'Overdue'], ['#/waitlist', 'Waitlist'], ['#/roster', 'Roster'], ['#/documentation', 'Documentation'], ['#/continuity', 'Continuity']],
  admin: [['#/continuity', 'Continuity of care'], ['#/health', 'Backbone health'], ['#/webhooks', 'Webhooks'], ['#/queue', 'Referrals'], ['#/roster', 'Roster'], ['#/documentation', 'Documentation']],
  hospital: [['#/facility', 'Our referrals']],
};

const ROUTES = [
  [/^\/today$/, ['peer'], peer.today],
  [/^\/person\/([^/]+)$/, ['peer', 'coordinator'], peer.person],
  [/^\/person\/([^/]+)\/contact$/, ['peer', 'coordinator'], peer.logContact],
  [/^\/queue$/, ['coordinator', 'admin'], coord.queue],
  [/^\/overdue$/, ['coordinator', 'admin'], coord.overdue],
  [/^\/referral\/([^/]+)$/, ['coordinator', 'admin'], coord.referral],
  [/^\/waitlist$/, ['coordinator', 'admin'], coord.waitlist],
  [/^\/roster$/, ['coordinator', 'admin'], coord.roster],
  [/^\/roster\/([^/]+)$/, ['coordinator', 'admin'], coord.peerForm],
  [/^\/documentation$/, ['coordinator', 'admin'], documentation],
  [/^\/continuity$/, ['admin', 'coordinator'], admin.continuity],
  [/^\/health$/, ['admin'], admin.health],
  [/^\/webhooks$/, ['admin'], admin.webhooks],
  [/^\/facility$/, ['hospital'], liaison.facility],
];

const main = document.getElementById('main');
const top = document.getElementById('top');
const banner = document.getElementById('banner');
let refresh = null;
let timer = null;
let routeSeq = 0;

document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

function header(liveState = 'connecting') {
  const u = session.user;
  const here = location.hash.split('?')[0];
  clear(top,
    h('a', { class: 'brand', href: u ? HOME[u.role] : '#/sign-in' }, 'careloop'),
    u && h('nav', { 'aria-label': 'Main' },
      h('ul', {}, (NAV[u.role] || []).map(([href, text]) =>
        h('li', {}, h('a', { href, 'aria-current': here === href ? 'page' : null }, text))))),
    u && h('div', { class: 'who' },
      h('span', { class: `live ${liveState}`, id: 'live', title: 'Live updates' },
        liveState === 'live' ? 'Live' : 'Reconnecting…'),
      h('span', { class: 'name' }, u.name || u.sub),
      h('button', { type: 'button', class: 'link', onclick: doSignOut }, 'Sign out')));
}

function setLive(state) {
  const el = document.getElementById('live');
  if (el) {
    el.className = `live ${state}`;
    el.textContent = state === 'live' ? 'Live' : 'Reconnecting…';
  }
}

async function doSignOut() {
  await signOut();
  stopLive();
  location.hash = '#/sign-in';
  header();
}

/// Which read models each screen shows (the `read_model` of a change), so a screen
/// refreshes only for its own data (never for the audit log its own reads write).
const MODELS = {
  today: ['followups'],
  person: ['followups', 'referrals'],
  logContact: [],
  queue: ['referrals', 'roster'],
  overdue: ['referrals', 'followups'],
  referral: ['referrals', 'roster'],
  waitlist: ['roster', 'referrals'],
  roster: ['roster'],
  peerForm: [],
  documentation: ['followups'],
  continuity: ['measures'],
  health: ['referrals', 'roster', 'followups', 'measures', 'facilities', 'tasks'],
  webhooks: ['referrals', 'tasks'],
  facility: ['referrals', 'tasks'],
};
let models = [];

// Changes heard while a screen loads: it may have read the data just before them.
let loading = false;
let missed = [];

function onChange(change) {
  if (loading) {
    missed.push(change);
    return;
  }
  if (change && change.read_model && !models.includes(change.read_model)) return;
  clearTimeout(timer);
  timer = setTimeout(async () => {
    if (!refresh) return;
    try {
      await refresh();
    } catch (e) {
      console.warn('refresh failed', e);
    }
  }, 150);
}

async function route() {
  const seq = ++routeSeq;
  const full = location.hash.slice(1) || '/';
  if (!full.startsWith('/')) return; // an in-page anchor
  const [path, qs] = full.split('?');
  const query = new URLSearchParams(qs || '');
  refresh = null;
  loading = false;
  banner.replaceChildren();
  if (!session.user) {
    header();
    clear(main);
    await signIn(main, query);
    return;
  }
  header(document.getElementById('live')?.classList.contains('live') ? 'live' : 'connecting');
  if (path === '/' || path === '/sign-in') {
    location.replace(HOME[session.user.role] || '#/sign-in');
    return;
  }
  const found = ROUTES.find(([re]) => re.test(path));
  clear(main);
  if (!found) {
    main.append(h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: HOME[session.user.role] }, 'Back to the start')));
    return;
  }
  const [re, roles, view] = found;
  if (!roles.includes(session.user.role)) {
    main.append(h('h1', {}, 'Not for your role'), notice('This page is for another role.', 'bad'));
    return;
  }
  const params = re.exec(path).slice(1).map(decodeURIComponent);
  loading = true;
  missed = [];
  try {
    const r = await view(main, params, query);
    if (seq === routeSeq) {
      refresh = r || null;
      models = MODELS[view.name] || [];
    }
  } catch (e) {
    if (seq !== routeSeq) return;
    main.append(notice(e.message || 'Something went wrong.', 'bad'));
  } finally {
    if (seq === routeSeq) {
      loading = false;
      if (missed.some((c) => !c || !c.read_model || models.includes(c.read_model))) onChange(null);
      missed = [];
    }
  }
  if (seq === routeSeq) {
    const h1 = main.querySelector('h1');
    if (h1) {
      document.title = `${h1.textContent} · careloop`;
      h1.setAttribute('tabindex', '-1');
      if (document.activeElement === document.body || !main.contains(document.activeElement)) h1.focus({ preventScroll: true });
    }
  }
}

// Due and overdue clocks move on by themselves.
setInterval(() => {
  for (const el of document.querySelectorAll('[data-due]')) {
    const c = clock(el.dataset.due);
    el.textContent = c.text;
    el.classList.toggle('late', c.overdue);
    el.classList.toggle('due', !c.overdue);
  }
}, 30000);

session.ended = () => {
  stopLive();
  clear(banner, notice('Your session ended after a time without use. Sign in again in another tab; what you typed here is kept.', 'bad'));
};

session.resumed = () => {
  banner.replaceChildren();
  live(onChange, setLive);
};

async function start() {
  try {
    await loadSession();
  } catch {
    clear(main, h('h1', {}, 'careloop'), notice('careloop cannot be reached. Try again shortly.', 'bad'));
    return;
  }
  if (session.user) live(onChange, setLive);
  window.addEventListener('hashchange', route);
  await route();
}

export async function signedIn() {
  await loadSession();
  live(onChange, setLive);
  const home = HOME[session.user.role];
  if (location.hash === home) await route();
  else location.hash = home;
}

start();
