// The administrator's screens: continuity of care, backbone health, webhooks.

import { h, clear, badge, when, day, pct, seconds, table, bars, notice, field, formError, showError, clearErrors, statusWords } from '../ui.js';
import { get, api } from '../api.js';
import { facilityNames } from './coordinator.js';

const dateInput = (v) => h('input', { type: 'date', value: v || '' });
const iso = (d, end) => (d ? new Date(`${d}T${end ? '23:59:59' : '00:00:00'}Z`).toISOString() : null);
const ratioText = (n, d) => `${n} of ${d} (${pct(d ? n / d : null)})`;

export async function continuity(main, _p, query) {
  main.append(h('h1', {}, 'Continuity of care'),
    h('p', { class: 'hint' }, 'Whether people discharged from inpatient care are reached by a peer, counted per discharge. ' +
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
  main.append(form, box);
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
  const draw = async () => {
    let r;
    try {
      r = await get(`/v1/reports/continuity?${params()}`);
    } catch (e) {
      showError(form, e.field, e.message);
      return;
    }
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

function tile(title, n, d, key) {
  return h('div', { class: 'tile', 'data-measure': key },
    h('h2', {}, title),
    h('p', { class: 'big' }, pct(d ? n / d : null)),
    h('p', {}, h('span', { class: 'num' }, String(n)), ' of ', h('span', { class: 'den' }, String(d)), ' discharges'));
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
