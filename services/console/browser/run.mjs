// Walks each role's main path through the care console in headless Chromium
// (Debian's /usr/bin/chromium), against a careloop the e2e test started
// (tests/tests/e2e/console.rs). Configuration comes as JSON in CONSOLE_TEST; the
// result is one JSON line on stdout: {"ok": true, "figures": {...}} or
// {"ok": false, "error": "..."}. Every wait is on a condition with a deadline.
//
// With "screenshots": "<dir>" in the configuration, it also saves a picture of each
// main screen there (docs/console/ in the repository).

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const cfg = JSON.parse(process.env.CONSOLE_TEST || '{}');
const base = cfg.base;
const WAIT = 20000;
const figures = { axe_pages: [] };
const started = Date.now();

/// Waits until `fn(arg)`, evaluated in the page, is true (polled through the DevTools
/// protocol: the page's CSP forbids the eval Playwright's own polling needs).
async function until(page, fn, arg, { timeout = WAIT, what = 'a condition' } = {}) {
  step(`waiting for ${what}`);
  const deadline = Date.now() + timeout;
  for (;;) {
    let ok = false;
    try {
      ok = await page.evaluate(fn, arg);
    } catch (e) {
      if (!/context was destroyed|navigation/i.test(String(e))) throw e;
    }
    if (ok) return;
    if (Date.now() > deadline) {
      // What the page says (notices, refusals next to fields), so a failure tells
      // a refused request from a page that never redrew.
      const said = await page.evaluate(() => [...document.querySelectorAll('.notice, .error, [role="alert"]')]
        .map((e) => e.textContent.trim()).filter(Boolean).join(' | ')).catch(() => '');
      throw new Error(`timed out after ${timeout} ms waiting for ${what}: ${fn.toString().slice(0, 160)}; the page says: ${said || 'nothing'}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

async function shot(page, name) {
  if (!cfg.screenshots) return;
  fs.mkdirSync(cfg.screenshots, { recursive: true });
  await page.screenshot({ path: path.join(cfg.screenshots, `${name}.png`), fullPage: true });
}

/// axe-core on the page as it stands: no serious or critical violation.
async function axe(page, name) {
  step(`axe-core on ${name}`);
  // Evaluated through the DevTools protocol: the page's CSP (no inline script) stays on.
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.evaluate(axeSource);
  const bad = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
  });
  check(bad.length === 0, `axe-core on ${name}: ${bad.join('; ')}`);
  figures.axe_pages.push(name);
}

/// Progress on stderr (the test shows it when the walk fails).
function step(what) {
  process.stderr.write(`${((Date.now() - started) / 1000).toFixed(1)} s: ${what}\n`);
}

async function h1(page, text) {
  step(`heading ${text}`);
  await until(page, (t) => document.querySelector('main h1')?.textContent.includes(t), text, { what: `the heading ${text}` });
}

async function live(page) {
  await until(page, () => document.getElementById('live')?.textContent === 'Live', null);
}

async function signIn(browser, sub, viewport, home) {
  const context = await browser.newContext({ acceptDownloads: true, viewport, timezoneId: 'UTC', locale: 'en-US', ...(viewport.width < 500 ? { isMobile: true, hasTouch: true } : {}) });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(`${base}/`);
  await h1(page, 'Sign in');
  await page.click(`button[data-sub="${sub}"]`);
  await h1(page, home);
  await live(page);
  return { context, page, errors };
}

/// The page's width fits the viewport: nothing scrolls sideways.
async function fits(page, name) {
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  const vw = page.viewportSize().width;
  check(w <= vw, `${name} is ${w} px wide on a ${vw} px screen`);
}

const local = (iso) => iso.slice(0, 16); // datetime-local in UTC (the context's zone)

async function main() {
  const browser = await chromium.launch({ executablePath: cfg.chromium || '/usr/bin/chromium', args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  try {
    const desktop = { width: 1280, height: 900 };
    const phone = { width: 360, height: 740 };

    // --- the sign-in page ---
    {
      const context = await browser.newContext({ viewport: phone });
      context.setDefaultTimeout(WAIT);
      const page = await context.newPage();
      await page.goto(`${base}/`);
      await h1(page, 'Sign in');
      await axe(page, 'sign-in');
      await fits(page, 'sign-in');
      await shot(page, 'sign-in');
      const csp = (await page.request.get(`${base}/`)).headers()['content-security-policy'] || '';
      check(csp.includes("script-src 'self'") && !csp.includes('unsafe-inline'), `CSP allows inline script: ${csp}`);
      await context.close();
    }

    // --- coordinator: the referral arrives live ---
    const coord = await signIn(browser, cfg.coordinator, desktop, 'Inbound referrals');
    const cp = coord.page;
    await axe(cp, 'inbound queue');
    await cp.evaluate(() => (window.__noReload = true));
    const sent = Date.now();
    const res = await fetch(`${base}/v1/referrals`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${cfg.hospital_token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(cfg.referral),
    });
    check(res.status === 201, `the hospital's referral answered ${res.status}`);
    const { referral_id: id } = await res.json();
    await cp.waitForSelector(`[data-referral="${id}"]`);
    figures.referral_visible_ms = Date.now() - sent;
    check(await cp.evaluate(() => window.__noReload === true), 'the queue reloaded instead of updating');
    await until(cp, (id) => !document.querySelector(`[data-referral="${id}"]`)?.textContent.includes('not assigned yet'), id);
    // Finding a person by name narrows the queue.
    await cp.getByLabel(/Find a person/).fill('zzz-nobody');
    check(await cp.$eval(`[data-referral="${id}"]`, (li) => li.hidden), 'the name filter did not hide the referral');
    await cp.getByLabel(/Find a person/).fill(cfg.person_name.split(' ')[0]);
    check(!(await cp.$eval(`[data-referral="${id}"]`, (li) => li.hidden)), 'the name filter hid the person looked for');
    await cp.getByLabel(/Find a person/).fill('');
    await shot(cp, 'coordinator-inbound');

    // --- coordinator: overrides the match ---
    await cp.click(`[data-referral="${id}"] h2 a`);
    await cp.waitForSelector('.candidate');
    await cp.waitForSelector('.candidate .badge.ok');
    await axe(cp, 'referral page');
    const target = await cp.evaluate((ours) => {
      const li = [...document.querySelectorAll('.candidate')].find((c) => !c.querySelector('.badge.ok') && ours.includes(c.dataset.peer));
      return li && { peer: li.dataset.peer, name: li.querySelector('h3').textContent.trim() };
    }, Object.keys(cfg.peers));
    check(target, 'no other peer of ours among the candidates');
    const card = cp.locator(`.candidate[data-peer="${target.peer}"]`);
    await card.getByRole('button', { name: /Assign instead/ }).click();
    const why = 'Shares the language and lives nearby; continuity with the family.';
    await card.getByLabel(/Why assign/).fill(why);
    await card.getByRole('button', { name: `Assign ${target.name}`, exact: true }).click();
    await until(cp, (n) => document.getElementById('assigned-peer')?.textContent === n, target.name);
    await until(cp, (w) => [...document.querySelectorAll('#timeline li')].some((li) => li.textContent.includes(w) && li.textContent.includes('Casey Morgan')), why,
      { what: 'the override, its reason and who made it on the timeline' });
    await shot(cp, 'coordinator-referral');
    // Each status action asks for the reason: refused without one, then done.
    const hold = 'The person asked to wait until after a family visit.';
    await cp.locator('#status-form').getByLabel('Put on hold').check();
    await cp.locator('#status-form').getByRole('button', { name: 'Change status' }).click();
    await until(cp, () => document.querySelector('#status-form [data-field="reason"] .error')?.textContent.includes('reason'), null);
    await cp.locator('#status-form').getByLabel(/^Why/).fill(hold);
    await cp.locator('#status-form').getByRole('button', { name: 'Change status' }).click();
    await until(cp, () => document.getElementById('referral-head')?.textContent.includes('On hold'), null, { what: 'on hold' });
    await until(cp, (r) => document.getElementById('timeline')?.textContent.includes(r), hold, { what: 'the reason on the timeline' });
    await until(cp, () => !!document.querySelector('#status-form input[value="resume"]'), null);
    await cp.locator('#status-form').getByLabel('Resume').check();
    await cp.locator('#status-form').getByLabel(/^Why/).fill('The family visit is over.');
    await cp.locator('#status-form').getByRole('button', { name: 'Change status' }).click();
    await until(cp, () => document.getElementById('referral-head')?.textContent.includes('Accepted, peer assigned'), null, { what: 'resumed' });
    for (const [hash, title, name] of [['#/overdue', 'Overdue', 'coordinator-overdue'], ['#/waitlist', 'Waitlist', 'coordinator-waitlist'], ['#/roster', 'Roster', 'coordinator-roster'], ['#/documentation', 'Documentation', 'coordinator-documentation']]) {
      await cp.goto(`${base}/${hash}`);
      await h1(cp, title);
      await cp.waitForSelector(`#${hash.slice(2)} > *`);
      await axe(cp, name);
      await shot(cp, name);
    }
    // The roster: add a peer, then send them on leave with a return date.
    await cp.goto(`${base}/#/roster/new`);
    await h1(cp, 'Add a peer');
    await axe(cp, 'add a peer');
    await cp.getByLabel('Name').fill('Morgan Ellis');
    await cp.getByLabel('Languages').fill('en, es');
    await cp.getByLabel('Most people at once').fill('8');
    // A certification ending in ten days: the roster says it is due for renewal.
    await cp.getByLabel('Certified by').fill('Nebraska CPSS board');
    await cp.getByLabel('Certificate number').fill('CPSS-2044');
    await cp.getByLabel('Certified until').fill(new Date(Date.now() + 10 * 86400000).toISOString().slice(0, 10));
    await cp.getByRole('button', { name: 'Add to the roster' }).click();
    await h1(cp, 'Roster');
    await until(cp, () => document.getElementById('roster')?.textContent.includes('Morgan Ellis'), null, { what: 'the new peer on the roster' });
    await until(cp, () => [...document.querySelectorAll('#certifications li')].some((li) => li.textContent.includes('Morgan Ellis') && /ends .*\(in (9|10) days\)/.test(li.textContent)), null, { what: 'the certification due for renewal' });
    await cp.locator('#roster').getByRole('link', { name: 'Morgan Ellis' }).click();
    await h1(cp, 'Edit Morgan Ellis');
    await axe(cp, 'edit a peer');
    await cp.getByLabel('On leave').check();
    await cp.getByLabel('Back on').fill(new Date(Date.now() + 14 * 86400000).toISOString().slice(0, 10));
    await cp.getByRole('button', { name: 'Save availability' }).click();
    await h1(cp, 'Roster');
    await until(cp, () => [...document.querySelectorAll('#roster li')].some((li) => li.textContent.includes('Morgan Ellis') && li.textContent.includes('On leave')), null, { what: 'the peer on leave' });

    // --- administrator: the 7-day numerator before ---
    const adm = await signIn(browser, cfg.admin, desktop, 'Continuity of care');
    const ap = adm.page;
    await ap.waitForSelector('[data-measure="n7"] .num');
    const n7 = async () => Number(await ap.textContent('[data-measure="n7"] .num'));
    const d7 = async () => Number(await ap.textContent('[data-measure="n7"] .den'));
    await until(ap, () => Number(document.querySelector('[data-measure="n7"] .den')?.textContent) >= 1, null);
    await until(ap, () => document.getElementById('impact-h')?.textContent === 'Program impact' && !!document.querySelector('#impact-table table'), null,
      { what: 'the Program impact section' });
    const before = await n7();
    figures.n7_before = before;
    figures.d7 = await d7();
    await axe(ap, 'continuity of care');
    // The CSV download carries the same numbers.
    const [download] = await Promise.all([ap.waitForEvent('download', { timeout: WAIT }), ap.click('#csv')]);
    const csv = fs.readFileSync(await download.path(), 'utf8');
    check(csv.startsWith('scope,facility,week_start,followup_7d_discharges'), `the CSV starts ${csv.slice(0, 60)}`);
    figures.csv_lines = csv.trim().split('\n').length;
    const [impactDownload] = await Promise.all([ap.waitForEvent('download', { timeout: WAIT }), ap.click('#impact-csv')]);
    const impactCsv = fs.readFileSync(await impactDownload.path(), 'utf8');
    check(impactCsv.startsWith('group,people,person_years,measure,period,count,per_person_year,ci95_lower,ci95_upper'), `the impact CSV starts ${impactCsv.slice(0, 60)}`);
    check(/^careloop-impact-\d{4}-\d{2}-\d{2}\.csv$/.test(impactDownload.suggestedFilename()), `the impact CSV is named ${impactDownload.suggestedFilename()}`);
    for (const [hash, title, name] of [['#/health', 'Backbone health', 'admin-health'], ['#/webhooks', 'Webhooks', 'admin-webhooks']]) {
      const page = await adm.context.newPage();
      await page.goto(`${base}/${hash}`);
      await h1(page, title);
      await page.waitForSelector(`#${hash.slice(2)} > *`);
      await axe(page, name);
      await shot(page, name);
      await page.close();
    }

    // --- the peer, on a phone: only their own caseload; logs a reached contact ---
    figures.peer_sub = cfg.peers[target.peer];
    const peer = await signIn(browser, cfg.peers[target.peer], phone, 'Today');
    const pp = peer.page;
    await pp.waitForSelector(`[data-referral="${id}"]`);
    const shown = await pp.$$eval('#caseload [data-referral]', (els) => els.map((e) => e.dataset.referral));
    check(shown.length === 1 && shown[0] === id, `the peer's Today shows ${JSON.stringify(shown)}, expected only ${id}`);
    check(!(await pp.textContent('main')).includes(cfg.other_person), "another peer's person shows on Today");
    await axe(pp, 'peer today');
    await fits(pp, 'peer today');
    await shot(pp, 'peer-today');
    await pp.goto(`${base}/#/person/${cfg.other_referral}`);
    await pp.waitForSelector('main .notice.bad');
    check((await pp.textContent('main')).includes('not in your caseload'), "another peer's person is readable");
    check(!(await pp.textContent('main')).includes(cfg.other_person), "another peer's person's name shows");

    await pp.goto(`${base}/#/person/${id}`);
    await pp.getByRole('button', { name: /Show phone/ }).click();
    await pp.waitForSelector('#contact-card');
    check((await pp.textContent('#contact-card')).includes(cfg.referral.person.phone), 'the contact card shows no phone');
    await axe(pp, 'person page');
    await fits(pp, 'person page');
    await shot(pp, 'peer-person');

    // Log a contact: at most three steps (open the form, fill it, save).
    await pp.getByRole('link', { name: 'Log a contact' }).first().click();
    await pp.waitForSelector('#contact-form');
    await axe(pp, 'log a contact');
    await fits(pp, 'log a contact');
    const discharged = new Date(cfg.referral.discharge.discharged_at);
    const notes = 'Talked about the week ahead; wants to join the Tuesday group.';
    await pp.fill('[data-field="occurred_at"] input', local(new Date(discharged.getTime() - 86400000).toISOString()));
    await pp.getByLabel('Reached the person').check();
    await pp.getByLabel('Emotional').check();
    await pp.getByLabel(/Minutes/).fill('25');
    await pp.getByLabel(/Notes/).fill(notes);
    await pp.getByRole('button', { name: 'Save contact' }).click();
    // The server refuses a contact before the discharge: said next to the field, nothing typed is lost.
    await until(pp, () => document.querySelector('[data-field="occurred_at"] .error')?.textContent.length > 0, null);
    figures.error_before_discharge = await pp.textContent('[data-field="occurred_at"] .error');
    check(await pp.inputValue('textarea[name="notes"]') === notes, 'the notes were lost after an error');
    check(await pp.getByLabel('Reached the person').isChecked(), 'the outcome was lost after an error');
    check(await pp.inputValue('input[name="duration_minutes"]') === '25', 'the minutes were lost after an error');
    check(await pp.getAttribute('[data-field="occurred_at"] input', 'aria-invalid') === 'true', 'the field is not marked invalid');
    await shot(pp, 'peer-log-contact-error');
    // A future time is refused next to the field too.
    await pp.fill('[data-field="occurred_at"] input', local(new Date(Date.now() + 2 * 86400000).toISOString()));
    await pp.getByRole('button', { name: 'Save contact' }).click();
    await until(pp, () => document.querySelector('[data-field="occurred_at"] .error')?.textContent.includes('future'), null);
    check(await pp.inputValue('textarea[name="notes"]') === notes, 'the notes were lost after a future time');
    // Back-entry: a day after the discharge.
    await pp.fill('[data-field="occurred_at"] input', local(new Date(discharged.getTime() + 86400000).toISOString()));
    const logged = Date.now();
    await pp.getByRole('button', { name: 'Save contact' }).click();
    await until(pp, (id) => location.hash === `#/person/${id}`, id);
    await until(pp, () => document.getElementById('contacts')?.textContent.includes('Reached the person'), null);
    await fits(pp, 'person page after the contact');

    // --- administrator: the 7-day numerator moves, live ---
    await until(ap, (b) => Number(document.querySelector('[data-measure="n7"] .num')?.textContent) === b + 1, before);
    figures.n7_after = await n7();
    figures.n7_visible_ms = Date.now() - logged;
    await shot(ap, 'admin-continuity');

    // --- the peer sets a goal in the person's own words; it shows on their page ---
    const goal = 'I want to keep my apartment and see my sister on Sundays.';
    await until(pp, () => !!document.getElementById('goal-form'), null, { what: 'the goal form' });
    await pp.locator('#goal-form').getByLabel(/as they say it/).fill(goal);
    await pp.locator('#goal-form').getByLabel('Practical (instrumental)').check();
    await pp.locator('#goal-form').getByRole('button', { name: 'Add the goal' }).click();
    await until(pp, (g) => document.getElementById('goals')?.textContent.includes(g) && document.getElementById('goals').textContent.includes('Working on it'), goal,
      { what: 'the goal, in their words, on the person page' });
    await axe(pp, 'person page with a goal');
    await fits(pp, 'person page with a goal');
    await shot(pp, 'peer-person-goal');

    // --- the peer's open Today shows a person newly assigned to them, live ---
    await pp.goto(`${base}/#/today`);
    await h1(pp, 'Today');
    await pp.waitForSelector(`[data-referral="${id}"]`, { timeout: WAIT });
    const api = (method, url, body, token) => fetch(`${base}${url}`, {
      method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: body && JSON.stringify(body),
    });
    const second = await (await api('POST', '/v1/referrals', cfg.second_referral, cfg.hospital_token)).json();
    let holder = null;
    for (const deadline = Date.now() + WAIT; !holder; ) {
      check(Date.now() < deadline, 'the second referral was never assigned');
      holder = (await (await api('GET', `/v1/referrals/${second.referral_id}`, undefined, cfg.coordinator_token)).json()).assigned_peer_id;
      if (!holder) await new Promise((r) => setTimeout(r, 100));
    }
    const assignedAt = Date.now();
    if (holder !== target.peer) {
      const r = await api('PUT', `/v1/referrals/${second.referral_id}/assignment`, { peer_id: target.peer, reason: 'Same neighbourhood.' }, cfg.coordinator_token);
      check(r.ok, `the second override answered ${r.status}`);
    }
    await pp.waitForSelector(`[data-referral="${second.referral_id}"]`, { timeout: WAIT });
    figures.peer_today_new_person_ms = Date.now() - assignedAt;

    // --- hospital liaisons: their own facility only ---
    const other = await signIn(browser, cfg.other_liaison, phone, ':');
    const op = other.page;
    await op.waitForSelector('#facility table');
    const otherText = await op.textContent('main');
    check(!otherText.includes(cfg.person_name) && !otherText.includes(cfg.other_person), "another facility's liaison sees the referral");
    const otherRows = await op.$$eval('#facility [data-referral]', (rows) => rows.length);
    check(otherRows === 0 && !!(await op.$('#no-referrals')), `another facility's liaison sees ${otherRows} referrals`);
    await axe(op, 'liaison (other facility)');
    await fits(op, 'liaison');
    const own = await signIn(browser, cfg.liaison, phone, ':');
    await until(own.page, (n) => document.querySelector('#facility')?.textContent.includes(n), cfg.person_name);
    await axe(own.page, 'liaison');
    await shot(own.page, 'liaison-facility');

    // --- a peer hands a referral back, with the reason ---
    const pat = await signIn(browser, cfg.other_peer, phone, 'Today');
    await pat.page.waitForSelector(`[data-referral="${cfg.other_referral}"]`, { timeout: WAIT });
    await pat.page.click(`[data-referral="${cfg.other_referral}"] h2 a`);
    await h1(pat.page, cfg.other_person);
    await pat.page.getByRole('button', { name: 'Hand back to the coordinator' }).click();
    await until(pat.page, () => document.querySelector('[data-field="reason"] .error')?.textContent.length > 0, null, { what: 'a reason asked for' });
    await pat.page.getByLabel('Why are you handing this back?').fill('Going on leave next week; the person needs someone steady.');
    await pat.page.getByRole('button', { name: 'Hand back to the coordinator' }).click();
    await h1(pat.page, 'Today');
    await until(pat.page, (id) => !document.querySelector(`[data-referral="${id}"]`) && !!document.getElementById('caseload')?.children.length, cfg.other_referral, { what: 'the handed-back person gone from Today' });

    // --- page weight: compressed script and style the peer's Today loaded ---
    const weight = await pp.evaluate(() => performance.getEntriesByType('resource')
      .filter((r) => /\.(js|css)$/.test(new URL(r.name).pathname))
      .reduce((n, r) => n + r.encodedBodySize, 0));
    figures.script_style_bytes_compressed = weight;
    check(weight > 0 && weight < 150 * 1024, `script and style weigh ${weight} bytes compressed`);

    // --- the coordinator's and administrator's screens on a phone too ---
    const cPhone = await signIn(browser, cfg.coordinator, phone, 'Inbound referrals');
    const aPhone = await signIn(browser, cfg.admin, phone, 'Continuity of care');
    for (const [s, hash, title, box] of [
      [cPhone, '#/queue', 'Inbound referrals', '#queue'],
      [cPhone, `#/referral/${id}`, cfg.person_name, '#timeline'],
      [cPhone, '#/overdue', 'Overdue', '#overdue'],
      [cPhone, '#/waitlist', 'Waitlist', '#waitlist'],
      [cPhone, '#/roster', 'Roster', '#roster'],
      [aPhone, '#/continuity', 'Continuity of care', '#continuity'],
      [aPhone, '#/health', 'Backbone health', '#health'],
      [aPhone, '#/webhooks', 'Webhooks', '#webhooks'],
    ]) {
      await s.page.goto(`${base}/${hash}`);
      await h1(s.page, title);
      await s.page.waitForSelector(`${box} > *`, { timeout: WAIT });
      await fits(s.page, `${hash} at 360 px`);
    }
    figures.phone_pages = 13;

    const errors = [coord, adm, peer, other, own, pat, cPhone, aPhone].flatMap((s) => s.errors).filter((e) => !/401|403|404|422/.test(e));
    check(errors.length === 0, `errors in the browser console: ${errors.join(' | ')}`);
  } finally {
    await browser.close();
  }
}

/// `perf`: the peer's Today with a big caseload; server time of its API calls.
async function perf() {
  const browser = await chromium.launch({ executablePath: cfg.chromium || '/usr/bin/chromium', args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  try {
    const peer = await signIn(browser, cfg.peer, { width: 360, height: 740 }, 'Today');
    const pp = peer.page;
    await until(pp, (n) => document.querySelectorAll('#caseload [data-referral]').length === n, cfg.caseload);
    const runs = [];
    for (let i = 0; i < 7; i++) {
      await pp.evaluate(() => performance.clearResourceTimings());
      const t = Date.now();
      await pp.reload();
      await until(pp, (n) => document.querySelectorAll('#caseload [data-referral]').length === n, cfg.caseload);
      const entries = await pp.evaluate(() => [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')].map((r) => ({
        name: new URL(r.name).pathname, server: r.responseStart - r.requestStart, encoded: r.encodedBodySize,
      })));
      // Everything but the static files: the page, the session, the token, the caseload, the people.
      const api = entries.filter((e) => !e.name.startsWith('/assets/') && e.name !== '/session/stream');
      if (i === 0) figures.today_requests = api.map((e) => `${e.name} ${Math.round(e.server)} ms`);
      runs.push({
        api_server_ms: api.reduce((n, e) => n + e.server, 0),
        page_ready_ms: Date.now() - t,
        script_style_bytes: entries.filter((e) => /\.(js|css)$/.test(e.name)).reduce((n, e) => n + e.encoded, 0),
      });
    }
    runs.sort((a, b) => a.api_server_ms - b.api_server_ms);
    const med = runs[Math.floor(runs.length / 2)];
    figures.caseload = cfg.caseload;
    figures.today_api_server_ms_median = Math.round(med.api_server_ms);
    figures.today_api_server_ms_fastest = Math.round(runs[0].api_server_ms);
    figures.today_api_server_ms_all = runs.map((r) => Math.round(r.api_server_ms));
    figures.today_ready_ms_median = med.page_ready_ms;
    figures.script_style_bytes_compressed = Math.max(...runs.map((r) => r.script_style_bytes));
  } finally {
    await browser.close();
  }
}

/// `idle`: a session unused for the idle time ends; what was typed stays on the page.
async function idle() {
  const browser = await chromium.launch({ executablePath: cfg.chromium || '/usr/bin/chromium', args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  try {
    const c = await signIn(browser, cfg.coordinator, { width: 1280, height: 900 }, 'Inbound referrals');
    const p = c.page;
    await p.goto(`${base}/#/roster/new`);
    await h1(p, 'Add a peer');
    await p.getByLabel('Name').fill('Quinn Avery');
    await p.getByLabel('Languages').fill('en, fr');
    const t = Date.now();
    await until(p, async () => !(await (await fetch('/session', { cache: 'no-store' })).json()).signed_in, null,
      { timeout: cfg.idle_secs * 1000 + WAIT, what: 'the idle session to end' });
    figures.session_ended_after_ms = Date.now() - t;
    await p.getByRole('button', { name: 'Add to the roster' }).click();
    await until(p, () => document.getElementById('banner')?.textContent.includes('session ended'), null, { what: 'the session-ended message' });
    figures.idle_message = await p.textContent('#banner');
    check(await p.inputValue('[data-field="name"] input') === 'Quinn Avery', 'the name typed was lost when the session ended');
    check(await p.inputValue('[data-field="languages"] input') === 'en, fr', 'the languages typed were lost when the session ended');
    check((await p.textContent('form .form-error')).includes('session ended'), 'the form does not say the session ended');
    figures.saved_while_ended = await (await fetch(`${base}/v1/peers`, { headers: { Authorization: `Bearer ${cfg.coordinator_token}` } })).text().then((t) => t.includes('Quinn Avery'));
    // Signed in again in another tab, the same form saves what was typed.
    const tab = await c.context.newPage();
    await tab.goto(`${base}/`);
    await h1(tab, 'Sign in');
    await tab.click(`button[data-sub="${cfg.coordinator}"]`);
    await h1(tab, 'Inbound referrals');
    await p.getByRole('button', { name: 'Add to the roster' }).click();
    await h1(p, 'Roster');
    await until(p, () => document.getElementById('roster')?.textContent.includes('Quinn Avery'), null, { what: 'the peer saved after signing in again' });
  } finally {
    await browser.close();
  }
}

try {
  const mode = process.argv[2];
  await (mode === 'perf' ? perf() : mode === 'idle' ? idle() : main());
  figures.wall_ms = Date.now() - started;
  console.log(JSON.stringify({ ok: true, figures }));
} catch (e) {
  figures.wall_ms = Date.now() - started;
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e), figures }));
  process.exitCode = 1;
}
