// The administrator's screens: continuity of care, backbone health, webhooks.

import { h, clear, badge, when, day, pct, seconds, table, bars, notice, field, formError, showError, clearErrors, statusWords } from '../ui.js';
import { get, api } from '../api.js';
import { facilityNames } from './coordinator.js';

const dateInput = (v) => h('input', { type: 'date', value: v || '' });
const iso = (d, end) => (d ? new Date(`${d}T${end ? '23:59:59' : '00:00:00'}Z`).toISOString() : null);
const ratioText = (n, d) => `${n} of ${d} (${pct(d ? n / d : null)})`;

export async function continuity(main, _p, query) {
  main.append(h('h1', {}, 'Continuity of care'),
    h('p', { class: 'hint' }, 'Whether people discharged from inpatient care are reached by a peer, counted per discharge, ' +
      'and their hospital use before and after (program impact, at the end of the page). ' +
      'A 7-day window counts once it has closed: a discharge from yesterday is in no denominator yet.'));
  const facilities = await facilityNames();
  const asOf = dateInput(query.get('as_of'));
  const from = dateInput(query.get('from'));
  const to = dateInput(query.get('to'));
  const facility = h('select', {}, h('option', { value: '' }, 'All facilities'),
    [...facilities].map(([id, name]) => h('option', { value: id, selected: query.get('facility') === id }, name)));
  const form = h('form', { class: 'card filters', novalidate: true },
    formError(),
    field('As of (end of day, UTC)', asOf, { name: 'as_of', optional: true, hint: 'Empty: now' }),
    field('Discharged from', from, { name: 'from', optional: true }),
    field('Discharged to', to, { name: 'to', optional: true }),
    field('Facility', facility, { name: 'facility' }),
    h('button', { type: 'submit' }, 'Show'),
    ' ',
    h('button', { type: 'button', id: 'csv', onclick: () => download(form) }, 'Download CSV'));
  const box = h('div', { id: 'continuity' });
  // Program impact: its heading and download stay put (focus too) while its figures redraw.
  const impactBox = h('div', { id: 'impact-figures' });
  const impactError = h('p', { class: 'error', id: 'impact-error', role: 'alert' });
  const impact = h('section', { id: 'impact', 'aria-labelledby': 'impact-h' },
    h('h2', { id: 'impact-h' }, 'Program impact'),
    impactBox,
    h('p', { class: 'actions' },
      h('button', { type: 'button', id: 'impact-csv', 'aria-describedby': 'impact-h', onclick: () => downloadImpact() }, 'Download (CSV)')),
    impactError);
  main.append(form, box, impact);
  const params = () => {
    const p = new URLSearchParams();
    if (asOf.value) p.set('as_of', iso(asOf.value, true));
    if (from.value) p.set('from', iso(from.value));
    if (to.value) p.set('to', iso(to.value, true));
    if (facility.value) p.set('facility', facility.value);
    return p;
  };
  async function download(f) {
    clearErrors(f);
    try {
      const csv = await api('GET', `/v1/reports/continuity?${params()}`, undefined, { accept: 'text/csv' });
      const a = h('a', { href: URL.createObjectURL(new Blob([csv], { type: 'text/csv' })), download: 'continuity-of-care.csv' });
      document.body.append(a);
      a.click();
      a.remove();
    } catch (e) {
      showError(f, e.field, e.message);
    }
  }
  async function downloadImpact() {
    clearErrors(form);
    impactError.textContent = '';
    try {
      const csv = await api('GET', `/v1/reports/impact?${params()}`, undefined, { accept: 'text/csv' });
      const date = asOf.value || new Date().toISOString().slice(0, 10);
      const a = h('a', { href: URL.createObjectURL(new Blob([csv], { type: 'text/csv' })), download: `careloop-impact-${date}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (e) {
      if (e.field) showError(form, e.field, e.message);
      else impactError.textContent = e.message;
    }
  }
  const draw = async () => {
    let r;
    let imp;
    try {
      // The impact's own failure leaves the continuity measures shown (and says so).
      [r, imp] = await Promise.all([get(`/v1/reports/continuity?${params()}`), get(`/v1/reports/impact?${params()}`).catch((e) => e)]);
    } catch (e) {
      showError(form, e.field, e.message);
      return;
    }
    clear(impactBox, imp instanceof Error ? notice(`Program impact could not be shown: ${imp.message}`, 'warn') : impactFigures(imp));
    const t = r.total;
    const name = (id) => facilities.get(id) || id;
    clear(box,
      h('p', {}, `As of ${when(r.as_of)}`),
      h('div', { class: 'tiles' },
        tile('Reached within 7 days', t.followup_7d.followed_up, t.followup_7d.discharges, 'n7'),
        tile('Reached within 30 days', t.followup_30d.followed_up, t.followup_30d.discharges, 'n30'),
        tile('Readmitted within 30 days', t.readmission_30d.readmitted, t.readmission_30d.discharges, 'nr'),
        h('div', { class: 'tile' }, h('h2', {}, 'Time to first contact'),
          h('p', { class: 'big' }, seconds(t.first_contact_seconds.p50)),
          h('p', {}, `median of ${t.first_contact_seconds.count} people reached; 90% within ${seconds(t.first_contact_seconds.p90)}`))),
      h('div', { class: 'tile wide' }, h('h2', {}, 'Readmissions: engaged with a peer or not'),
        h('p', {}, `${t.readmission_30d.readmitted_engaged} readmitted after being reached by a peer; ` +
          `${t.readmission_30d.readmitted_not_engaged} readmitted without being reached.`)),
      h('section', { id: 'engagement', 'aria-labelledby': 'engagement-h' },
        h('h2', { id: 'engagement-h' }, 'Engagement after discharge'),
        h('p', { class: 'hint' }, 'A reached contact within 30, 60 or 90 days of the moment of discharge. ' +
          'Each window counts once it has closed.'),
        h('div', { class: 'tiles' },
          tile('Within 30 days', t.followup_30d.followed_up, t.followup_30d.discharges, 'e30', 'h3'),
          tile('Within 60 days', t.engagement_60d.followed_up, t.engagement_60d.discharges, 'e60', 'h3'),
          tile('Within 90 days', t.engagement_90d.followed_up, t.engagement_90d.discharges, 'e90', 'h3'))),
      twoDefinitions(t),
      bars('7-day follow-up by facility', r.facilities.map((f) => ({
        label: name(f.facility), value: f.followup_7d.followed_up, max: f.followup_7d.discharges,
        text: ratioText(f.followup_7d.followed_up, f.followup_7d.discharges),
      }))),
      table('By facility', ['Facility', '7-day', '30-day', 'Readmitted (engaged / not)', 'First contact, median'],
        r.facilities.map((f) => [name(f.facility),
          ratioText(f.followup_7d.followed_up, f.followup_7d.discharges),
          ratioText(f.followup_30d.followed_up, f.followup_30d.discharges),
          `${ratioText(f.readmission_30d.readmitted, f.readmission_30d.discharges)}: ${f.readmission_30d.readmitted_engaged} / ${f.readmission_30d.readmitted_not_engaged}`,
          seconds(f.first_contact_seconds.p50)])),
      table('Engagement and calendar-day follow-up by facility',
        ['Facility', 'Within 30 days', 'Within 60 days', 'Within 90 days', '7-day follow-up, calendar days (FUH-aligned)'],
        r.facilities.map((f) => [name(f.facility),
          ratioText(f.followup_30d.followed_up, f.followup_30d.discharges),
          ratioText(f.engagement_60d.followed_up, f.engagement_60d.discharges),
          ratioText(f.engagement_90d.followed_up, f.engagement_90d.discharges),
          ratioText(f.fuh_7d.followed_up, f.fuh_7d.discharges)])),
      bars('7-day follow-up by discharge week', (r.cohorts || []).map((c) => ({
        label: `Week of ${day(c.week_start)}`, value: c.followup_7d.followed_up, max: c.followup_7d.discharges,
        text: ratioText(c.followup_7d.followed_up, c.followup_7d.discharges),
      }))),
      bars('30-day follow-up by discharge week', (r.cohorts || []).map((c) => ({
        label: `Week of ${day(c.week_start)}`, value: c.followup_30d.followed_up, max: c.followup_30d.discharges,
        text: ratioText(c.followup_30d.followed_up, c.followup_30d.discharges),
      }))),
      table('Weekly cohorts (by discharge week)', ['Week of', '7-day', '30-day', 'Readmitted'],
        (r.cohorts || []).map((c) => [day(c.week_start),
          ratioText(c.followup_7d.followed_up, c.followup_7d.discharges),
          ratioText(c.followup_30d.followed_up, c.followup_30d.discharges),
          ratioText(c.readmission_30d.readmitted, c.readmission_30d.discharges)])));
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearErrors(form);
    const p = params();
    history.replaceState(null, '', `#/continuity?${new URLSearchParams(Object.fromEntries(
      [['as_of', asOf.value], ['from', from.value], ['to', to.value], ['facility', facility.value]].filter(([, v]) => v)))}`);
    void p;
    draw();
  });
  await draw();
  return draw;
}

function tile(title, n, d, key, level = 'h2') {
  return h('div', { class: 'tile', 'data-measure': key },
    h(level, {}, title),
    h('p', { class: 'big' }, pct(d ? n / d : null)),
    h('p', {}, h('span', { class: 'num' }, String(n)), ' of ', h('span', { class: 'den' }, String(d)), ' discharges'));
}

/// The 7- and 30-day follow-up by the exact time and by calendar days (HEDIS FUH-aligned),
/// side by side, each definition in a line under the table.
function twoDefinitions(t) {
  const words = h('div', { id: 'two-definitions-words' },
    h('p', { class: 'hint' }, h('strong', {}, 'Exact time: '), 'a reached contact within 7 × 24 hours (30 × 24 hours) ' +
      'of the moment of discharge; a discharge counts once that time has passed.'),
    h('p', { class: 'hint' }, h('strong', {}, 'Calendar days (FUH-aligned): '), 'a reached contact on one of the 7 (30) ' +
      'calendar days (UTC) after the day of discharge, as HEDIS FUH counts; a contact on the day of discharge itself does not count, ' +
      'and a discharge counts once those days have all passed.'));
  const both = table('7- and 30-day follow-up, two definitions', ['Window', 'Exact time', 'Calendar days (FUH-aligned)'], [
    ['7 days', ratioText(t.followup_7d.followed_up, t.followup_7d.discharges), ratioText(t.fuh_7d.followed_up, t.fuh_7d.discharges)],
    ['30 days', ratioText(t.followup_30d.followed_up, t.followup_30d.discharges), ratioText(t.fuh_30d.followed_up, t.fuh_30d.discharges)],
  ]);
  both.id = 'two-definitions';
  both.querySelector('table').setAttribute('aria-describedby', 'two-definitions-words');
  both.querySelectorAll('tbody tr').forEach((tr, i) => (tr.dataset.window = ['7', '30'][i]));
  return [both, words];
}

// ---- program impact ----

const dec = (digits) => new Intl.NumberFormat('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const one = dec(1);
const two = dec(2);
const upToOne = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
/// A number in the given format; none is "—", nothing at all is "0".
const numIn = (fmt, v) => (v === null || v === undefined ? '—' : v === 0 ? '0' : fmt.format(v));
const countNum = (v) => (v === null || v === undefined ? '—' : upToOne.format(v));
const peopleWords = (n) => `${n} ${n === 1 ? 'person' : 'people'}`;

const IMPACT_GROUPS = [['engaged', 'People engaged by a peer'], ['not_engaged', 'People not engaged'], ['all', 'Everyone counted']];
const IMPACT_MEASURES = [['inpatient_admissions', 'Inpatient admissions'], ['inpatient_days', 'Inpatient days'], ['outpatient_visits', 'Outpatient visits']];

/// "1.25 (0.41–2.90)": the rate per person-year, its 95% interval in smaller text, with
/// two decimals (one from a rate of 10 up, "26.4 (12.0–40.8)").
function rate(r, period) {
  const fmt = Math.abs(r.per_person_year || 0) < 10 ? two : one;
  return h('span', { class: 'rate', 'data-period': period }, numIn(fmt, r.per_person_year),
    r.per_person_year === null || r.per_person_year === undefined ? null
      : h('small', {}, r.ci95 ? ` (${numIn(fmt, r.ci95[0])}–${numIn(fmt, r.ci95[1])})` : ' (—)'));
}

function impactFigures(r) {
  const w = r.window_days;
  const pending = r.pending
    ? `${peopleWords(r.pending)} ${r.pending === 1 ? 'is' : 'are'} still pending: their ${w} days after discharge have not passed yet, so they are not counted.`
    : `No one is pending: everyone’s ${w} days after discharge have passed.`;
  const open = r.stays_without_end
    ? `${r.stays_without_end} hospital ${r.stays_without_end === 1 ? 'stay' : 'stays'} had no known end: ` +
      `${r.stays_without_end === 1 ? 'it counts' : 'each counts'} as an admission but adds no inpatient days.`
    : 'Every hospital stay counted has a known end.';
  const figures = table(`Hospital use per person-year, ${w} days before → ${w} days after the index discharge (95% interval in brackets)`,
    ['Group', 'People', ...IMPACT_MEASURES.map(([, label]) => label)],
    IMPACT_GROUPS.map(([key, label]) => {
      const g = r[key];
      return [label,
        [String(g.people), h('p', { class: 'hint' }, `${numIn(two, g.person_years)} person-years`)],
        ...IMPACT_MEASURES.map(([m]) => h('div', { 'data-measure': m },
          rate(g[m].before, 'before'), ' → ', rate(g[m].after, 'after'),
          h('p', { class: 'hint' }, `Count: ${countNum(g[m].before.count)} → ${countNum(g[m].after.count)}`)))];
    }));
  figures.id = 'impact-table';
  figures.querySelectorAll('tbody tr').forEach((tr, i) => IMPACT_GROUPS[i] && (tr.dataset.group = IMPACT_GROUPS[i][0]));
  return [
    h('p', { class: 'hint' }, `Hospital use in the ${w} days before and the ${w} days after each person’s index discharge: ` +
      'their first discharge in the period and facility chosen above. People engaged by a peer were reached within 30 days of it.'),
    h('p', { class: 'summary', id: 'impact-summary' }, `As of ${when(r.as_of)}: ${peopleWords(r.all.people)} counted, ` +
      `${r.engaged.people} engaged by a peer and ${r.not_engaged.people} not engaged.`),
    h('p', { id: 'impact-pending' }, pending),
    h('p', { id: 'impact-open-stays' }, open),
    figures,
    h('h3', {}, 'How to read this'),
    h('p', { id: 'impact-reading' }, `This compares the same people before and after: each group’s hospital use in the ${w} days ` +
      `before the index discharge with its use in the ${w} days after it (the stay that ended at the index discharge is in neither). ` +
      `Rates are per person-year, each person counting for ${w} days; a wide interval means few people. ` +
      'People engaged by a peer and people not engaged are not randomised groups: people who take up peer support may differ from ' +
      'those who do not, and hospital use often falls after a stay in any case (people are referred just after one). ' +
      'So differences are associations, not proof that peer support caused them.'),
  ];
}

const SERVICES = { intake: 'Intake', referral: 'Referrals', 'peer-assignment': 'Peer assignment', 'follow-up': 'Follow-up' };

export async function health(main) {
  main.append(h('h1', {}, 'Backbone health'),
    h('p', { class: 'hint' }, 'Events waiting to be published, read models behind, and messages that failed for good.'));
  const box = h('div', { id: 'health' });
  main.append(box);
  const draw = async () => {
    const all = await Promise.all(Object.keys(SERVICES).map((s) => get(`/v1/operations/backbone/${s}`).catch((e) => ({ service: s, error: e.message }))));
    clear(box, all.map((s) => h('section', { class: 'card' },
      h('h2', {}, SERVICES[s.service] || s.service),
      s.error ? notice(s.error, 'bad') : [
        h('p', {}, 'Outbox: ', s.outbox.pending ? badge(`${s.outbox.pending} waiting since ${when(s.outbox.oldest_pending_at)}`, 'late') : badge('all published', 'ok')),
        h('p', {}, 'Dead letters: ', s.dead_letters.count ? badge(String(s.dead_letters.count), 'late') : badge('none', 'ok')),
        table(`${SERVICES[s.service]}: read models`, ['Read model', 'Waiting', 'Behind by'], s.projections.map((p) => [
          p.name, String(p.pending), p.lag_seconds ? `${p.lag_seconds.toFixed(1)} s` : 'up to date'])),
        s.dead_letters.latest.length ? table('Latest dead letters', ['Event', 'Consumer', 'Error', 'When'], s.dead_letters.latest.map((d) => [
          d.event_type, d.consumer, d.error, when(d.dead_at)])) : null,
      ])));
  };
  await draw();
  return draw;
}

export function deliveriesTable(items) {
  return table('Webhook deliveries, newest first', ['Status sent', 'State', 'Attempts', 'Created', 'Delivered', 'Last answer'], items.map((d) => {
    const last = (d.attempt_log || [])[d.attempt_log.length - 1];
    return [statusWords(d.status), badge(d.state, d.state === 'delivered' ? 'ok' : d.state === 'failed' ? 'late' : ''), String(d.attempts),
      when(d.created_at), when(d.delivered_at),
      last ? (last.status_code ? `HTTP ${last.status_code}` : last.error || '—') : '—'];
  }));
}

export async function webhooks(main) {
  main.append(h('h1', {}, 'Webhooks'),
    h('p', { class: 'hint' }, 'Each facility hears of every status change of its referrals at its webhook.'));
  const facilities = await facilityNames();
  const box = h('div', { id: 'webhooks' });
  main.append(box);
  const forms = new Map();
  for (const [id, name] of facilities) {
    const url = h('input', { type: 'url', autocomplete: 'off' });
    const secret = h('input', { type: 'password', autocomplete: 'new-password', minlength: 16 });
    const form = h('form', { novalidate: true },
      formError(),
      field('Webhook URL', url, { name: 'url' }),
      field('Signing secret', secret, { name: 'secret', hint: 'At least 16 characters; shared with the facility.' }),
      h('button', { type: 'submit' }, `Save ${name}'s webhook`));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      try {
        await api('PUT', `/v1/facilities/${encodeURIComponent(id)}/webhook`, { url: url.value.trim(), secret: secret.value });
        secret.value = '';
        form.querySelector('.form-error').textContent = 'Saved.';
      } catch (err) {
        showError(form, err.field, err.message);
      }
    });
    forms.set(id, form);
  }
  const draw = async () => {
    const logs = await Promise.all([...facilities.keys()].map((id) => get(`/v1/facilities/${encodeURIComponent(id)}/webhook/deliveries?limit=20`)));
    clear(box, [...facilities].map(([id, name], i) => h('section', { class: 'card' },
      h('h2', {}, name), deliveriesTable(logs[i].items), h('details', {}, h('summary', {}, 'Change the webhook'), forms.get(id)))));
  };
  await draw();
  return draw;
}
