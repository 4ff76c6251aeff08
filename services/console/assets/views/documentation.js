// The supervisor's documentation page: billed contacts waiting for a signature (or
// for the peer to complete them), what is ready to bill, and the billing file.
// People appear by their reference (no names in billing lists), linked to their page.

import { h, clear, badge, day, field, formError, showError, clearErrors, notice, table, localInput } from '../ui.js';
import { get, getAll, post, api, poll, session } from '../api.js';
import { facilityNames } from './coordinator.js';

const ymd = (d) => localInput(d).slice(0, 10);
const serviceDay = (d) => day(`${d}T00:00:00`); // a date of service, not shifted by the time zone

export async function documentation(main, _p, query) {
  const supervisor = session.user.role === 'coordinator';
  main.append(h('h1', {}, 'Documentation'),
    h('p', { class: 'hint' }, 'Billed peer support contacts of a period: sign complete documentation as supervisor; ' +
      'signed, complete contacts go into the billing file.'));
  const now = new Date();
  const facilities = await facilityNames();
  // From the first of last month: early in a month, last month's contacts still wait.
  const from = h('input', { type: 'date', value: query.get('from') || ymd(new Date(now.getFullYear(), now.getMonth() - 1, 1)) });
  const to = h('input', { type: 'date', value: query.get('to') || ymd(now) });
  const facility = h('select', {}, h('option', { value: '' }, 'All facilities'),
    [...facilities].map(([fid, name]) => h('option', { value: fid, selected: query.get('facility') === fid }, name)));
  const form = h('form', { class: 'card filters', novalidate: true, id: 'period' },
    formError(),
    field('From', from, { name: 'from', hint: 'Date of service, first day' }),
    field('To', to, { name: 'to', hint: 'Last day, included' }),
    field('Facility', facility, { name: 'facility' }),
    h('p', { class: 'actions' },
      h('button', { type: 'submit' }, 'Show'),
      h('button', { type: 'button', id: 'billing-csv', onclick: download }, 'Download billing file (CSV)')));
  const said = h('div', { id: 'documentation-said' });
  const box = h('div', { id: 'documentation' });
  main.append(form, said, box);

  const period = () => {
    clearErrors(form);
    if (!from.value) return showError(form, 'from', 'Give the first day.');
    if (!to.value) return showError(form, 'to', 'Give the last day.');
    if (to.value < from.value) return showError(form, 'to', 'The last day is before the first.');
    const p = new URLSearchParams({ from: from.value, to: to.value });
    if (facility.value) p.set('facility', facility.value);
    return p;
  };
  const exceptions = (p) => get(`/v1/billing/exceptions?${p}`).then((r) => r.exceptions);

  async function download() {
    const p = period();
    if (!p) return;
    try {
      const csv = await api('GET', `/v1/billing/contacts?${p}`, undefined, { accept: 'text/csv' });
      const a = h('a', { href: URL.createObjectURL(new Blob([csv], { type: 'text/csv' })), download: `careloop-billing-${from.value}-${to.value}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (e) {
      showError(form, e.field, e.message);
    }
  }

  async function sign(x, button) {
    button.disabled = true;
    const cell = button.parentElement;
    try {
      await post(`/v1/referrals/${encodeURIComponent(x.referral_id)}/contacts/${encodeURIComponent(x.contact_id)}/signature`);
      clear(cell, badge('Signed', 'ok'));
      clear(said, notice(`Signed: ${x.service_code} on ${serviceDay(x.date_of_service)} (${x.person_ref}).`, 'good'));
      const p = period();
      const fresh = p && await poll(() => exceptions(p), (list) => !list.some((e) => e.contact_id === x.contact_id));
      await draw(fresh, true);
    } catch (e) {
      button.disabled = false;
      cell.querySelector('.error')?.remove();
      cell.append(h('p', { class: 'error', role: 'alert' }, e.message));
    }
  }

  const draw = async (fresh, refocus = false) => {
    const p = period();
    if (!p) return;
    let list;
    let billable;
    try {
      [list, billable] = await Promise.all([fresh || exceptions(p), get(`/v1/billing/contacts?${p}`)]);
    } catch (e) {
      showError(form, e.field, e.message);
      return;
    }
    const { items } = await getAll('/v1/peers?limit=500').catch(() => ({ items: [] }));
    const peers = new Map(items.map((x) => [x.peer_id, x.name]));
    const others = (x) => x.reasons.filter((r) => r.field !== 'signature');
    list.sort((a, b) => (others(a).length > 0) - (others(b).length > 0) || a.date_of_service.localeCompare(b.date_of_service));
    const ready = list.filter((x) => !others(x).length).length;
    const focused = refocus || box.contains(document.activeElement);
    const rows = list.map((x) => {
      const missing = others(x);
      return [
        serviceDay(x.date_of_service),
        h('a', { href: `#/referral/${x.referral_id}` }, x.person_ref),
        x.service_code,
        peers.get(x.peer_id) || x.peer_id,
        missing.length
          ? [badge('Incomplete', 'late'), ` — ask the peer: ${missing.map((r) => r.reason).join('; ')}.`]
          : supervisor
            ? h('button', { type: 'button', class: 'primary sign', 'aria-label': `Sign: ${x.service_code} on ${serviceDay(x.date_of_service)}, ${x.person_ref}`, onclick: (e) => sign(x, e.currentTarget) }, 'Sign')
            : badge('Waiting for a supervisor', 'due'),
      ];
    });
    const signTable = table(supervisor ? 'Billed contacts waiting for your signature' : 'Billed contacts waiting for a supervisor’s signature',
      ['Date of service', 'Person', 'Service', 'Peer', supervisor ? 'Sign' : 'Status'], rows);
    signTable.querySelectorAll('tbody tr').forEach((tr, i) => list[i] && (tr.dataset.contact = list[i].contact_id));
    clear(box,
      h('h2', { id: 'sign-h', tabindex: '-1' }, supervisor ? 'Waiting for your signature' : 'Waiting for a supervisor’s signature'),
      h('p', { class: 'summary', id: 'sign-summary' }, `${ready} ready to sign`,
        list.length > ready ? [' · ', badge(`${list.length - ready} incomplete`, 'late')] : null),
      signTable,
      h('h2', {}, 'Ready to bill'),
      h('p', { class: 'summary', id: 'billing-summary' },
        `${billable.lines.length} ${billable.lines.length === 1 ? 'line' : 'lines'} · ${billable.units} ${billable.units === 1 ? 'unit' : 'units'}`),
      h('p', { class: 'hint' }, 'Signed, complete contacts of the period. The billing file has one line each, by person reference.'));
    // Signing one row redraws the table: keep the keyboard on the next one.
    if (focused && !box.contains(document.activeElement)) (box.querySelector('button.sign') || document.getElementById('sign-h')).focus();
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clear(said);
    draw();
  });
  await draw();
  return draw;
}
