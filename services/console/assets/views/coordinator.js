// The coordinator's screens: inbound queue, overdue list, a referral's page (timeline,
// matches, status actions), waitlist, roster.

import {
  h, clear, badge, dueBadge, when, day, span, personName, statusWords, field, choices, showError,
  clearErrors, formError, notice, table, languageWords, checkpointWords, PRIORITY, STATUS,
} from '../ui.js';
import { get, getAll, post, api, people, ApiError } from '../api.js';

async function peerNames() {
  const { items } = await getAll('/v1/peers?limit=500');
  return new Map(items.map((p) => [p.peer_id, p]));
}

export async function facilityNames() {
  try {
    const r = await get('/v1/facilities');
    return new Map((r.items || []).map((f) => [f.facility_id, f.name]));
  } catch {
    return new Map();
  }
}

const NOT_ACCEPTED = ['requested', 'received'];

function referralItem(r, who, peers, facilities) {
  const p = who.get(r.referral_id);
  const peer = r.assigned_peer_id && peers.get(r.assigned_peer_id);
  return h('li', { class: 'card referral', 'data-referral': r.referral_id },
    h('h2', {}, h('a', { href: `#/referral/${r.referral_id}`, 'data-key': `r-${r.referral_id}` }, personName(p))),
    h('p', {}, badge(statusWords(r.status), NOT_ACCEPTED.includes(r.status) ? 'new' : ''), ' ',
      badge(PRIORITY[r.priority] || r.priority, r.priority === 'asap' ? 'late' : ''),
      r.overdue ? [' ', badge('overdue', 'late')] : null,
      r.waitlisted ? [' ', badge('waitlisted')] : null),
    h('dl', { class: 'facts' },
      h('dt', {}, 'From'), h('dd', {}, facilities.get(r.facility) || r.facility),
      h('dt', {}, 'Discharged'), h('dd', {}, when(r.discharged_at)),
      h('dt', {}, 'Peer'), h('dd', {}, peer ? peer.name : (r.waitlisted ? 'waiting for a free peer' : 'not assigned yet')),
      NOT_ACCEPTED.includes(r.status)
        ? [h('dt', {}, 'Accept by'), h('dd', {}, dueBadge(r.acceptance_due_at))]
        : [h('dt', {}, 'First contact by'), h('dd', {}, when(r.first_contact_due_at))]));
}

export async function queue(main, _p, query) {
  main.append(h('h1', {}, 'Inbound referrals'));
  const status = query.get('status');
  const find = h('input', { type: 'search', autocomplete: 'off' });
  const box = h('div', { id: 'queue' });
  main.append(h('div', { class: 'find' }, field('Find a person by name', find, { name: 'find', optional: true })), box);
  const apply = () => {
    const q = find.value.trim().toLowerCase();
    for (const li of box.querySelectorAll('li[data-referral]')) li.hidden = q !== '' && !li.querySelector('h2').textContent.toLowerCase().includes(q);
  };
  find.addEventListener('input', apply);
  const draw = async () => {
    const [{ items }, c, peers, facilities] = await Promise.all([
      get(`/v1/referrals?limit=500${status ? `&status=${encodeURIComponent(status)}` : ''}`),
      get('/v1/referrals/counts'), peerNames(), facilityNames()]);
    items.sort((a, b) => (b.received_at || '').localeCompare(a.received_at || ''));
    const shown = items.slice(0, 200);
    const who = shown.length ? await people(shown.map((r) => r.referral_id)) : new Map();
    const counts = c.by_status || {};
    clear(box,
      h('p', { class: 'summary' }, `${c.total} referrals`, ' ',
        h('span', { class: `badge ${c.not_yet_accepted ? 'new' : ''}`, id: 'not-accepted' }, `${c.not_yet_accepted} not yet accepted`),
        ' ', c.overdue ? h('a', { href: '#/overdue', class: 'badge late' }, `${c.overdue} overdue`) : null),
      h('nav', { 'aria-label': 'Filter by status' }, h('ul', { class: 'chips' },
        h('li', {}, h('a', { href: '#/queue', 'aria-current': status ? null : 'page' }, `All (${c.total})`)),
        Object.keys(STATUS).filter((s) => counts[s]).map((s) => h('li', {},
          h('a', { href: `#/queue?status=${s}`, 'aria-current': status === s ? 'page' : null }, `${statusWords(s)} (${counts[s]})`))))),
      (status ? counts[status] || 0 : c.total) > shown.length ? h('p', { class: 'hint' }, `Showing ${shown.length} of ${status ? counts[status] || items.length : c.total}: filter by status to narrow the list.`) : null,
      shown.length
        ? h('ul', { class: 'cards', 'aria-label': 'Referrals' }, shown.map((r) => referralItem(r, who, peers, facilities)))
        : h('p', {}, 'No referrals here.'));
    apply();
  };
  await draw();
  return draw;
}

export async function overdue(main) {
  main.append(h('h1', {}, 'Overdue'));
  const box = h('div', { id: 'overdue' });
  main.append(box);
  const draw = async () => {
    const [{ items }, late, peers] = await Promise.all([
      get('/v1/referrals?overdue=true&limit=500'),
      getAll('/v1/followups?overdue=true&limit=500'),
      peerNames(),
    ]);
    const due = (r) => (NOT_ACCEPTED.includes(r.status) ? r.acceptance_due_at : r.first_contact_due_at);
    items.sort((a, b) => due(a).localeCompare(due(b)));
    const checkins = late.items.filter((f) => f.next_due_at).sort((a, b) => a.next_due_at.localeCompare(b.next_due_at));
    const who = await people([...items.map((r) => r.referral_id), ...checkins.map((f) => f.referral_id)].slice(0, 300));
    const now = Date.now();
    clear(box,
      h('h2', {}, `Referrals past a due time (${items.length})`),
      table('Referrals past due, oldest first', ['Person', 'What is late', 'Past due by', 'Peer'], items.map((r) => [
        h('a', { href: `#/referral/${r.referral_id}` }, personName(who.get(r.referral_id))),
        NOT_ACCEPTED.includes(r.status) ? 'Acceptance' : 'First contact',
        badge(span(now - new Date(due(r)).getTime()), 'late'),
        peers.get(r.assigned_peer_id)?.name || 'not assigned',
      ])),
      h('h2', {}, `Check-ins past due (${checkins.length})`),
      table('Check-ins past due, oldest first', ['Person', 'Check-in', 'Past due by', 'Peer'], checkins.map((f) => [
        h('a', { href: `#/referral/${f.referral_id}` }, personName(who.get(f.referral_id))),
        checkpointWords(f.next_checkpoint),
        badge(span(now - new Date(f.next_due_at).getTime()), 'late'),
        peers.get(f.peer_id)?.name || '—',
      ])));
  };
  await draw();
  return draw;
}

// ---- one referral ----

const ACTIONS = {
  hold: { label: 'Put on hold', from: ['received', 'accepted', 'in-progress'] },
  resume: { label: 'Resume', from: ['on-hold'] },
  reject: { label: 'Reject', from: ['received', 'accepted', 'on-hold'] },
  cancel: { label: 'Cancel', from: ['received', 'accepted', 'on-hold', 'in-progress'] },
  reroute: { label: 'Send back to matching', from: ['rejected'] },
  'entered-in-error': { label: 'Mark as entered in error', from: ['received', 'accepted', 'rejected', 'cancelled', 'on-hold', 'in-progress', 'failed', 'completed'] },
};
const REJECT = {
  no_capacity: 'No peer has room',
  out_of_area: 'Outside our area',
  declined_by_person: 'The person declined',
  unable_to_reach: 'Could not reach the person',
  other: 'Other (say why)',
};
const EVENT = {
  ReferralReceived: 'Received from the hospital',
  ReferralPeerChanged: 'Peer changed',
  ReferralAccepted: 'Accepted: peer assigned',
  ReferralRejected: 'Rejected',
  ReferralCancelled: 'Cancelled',
  ReferralStatusChanged: 'Status changed',
  ReferralOverdue: 'Past a due time',
};

const SYSTEM = ['intake', 'referral', 'peer-assignment', 'follow-up'];

function detailWords(t, peers) {
  const d = t.detail || {};
  const name = (id) => peers.get(id)?.name || 'a peer no longer on the roster';
  if (d.from_peer_id && d.to_peer_id) return `from ${name(d.from_peer_id)} to ${name(d.to_peer_id)}`;
  if (t.event === 'ReferralAccepted' && d.peer_id) return `to ${name(d.peer_id)}`;
  if (t.event === 'ReferralOverdue' && d.overdue) return `${d.overdue === 'acceptance' ? 'acceptance' : 'first contact'} was due ${when(d.due_at)}`;
  return '';
}

function termWords(c, peer) {
  const t = c.terms;
  const out = [];
  out.push(c.shared_lived_experience.length
    ? `Shares lived experience: ${c.shared_lived_experience.join(', ')}`
    : 'No lived experience in common with what the person asked for');
  out.push(t.region >= 1 ? "Works in the person's area" : "Does not list the person's area");
  out.push(t.continuity >= 1 ? 'Has supported this person before' : 'Has not supported this person before');
  out.push(peer
    ? `Caseload ${peer.active_count} of ${peer.max_caseload} (${Math.round(t.load * 100)}% room left)`
    : `${Math.round(t.load * 100)}% room left in their caseload`);
  return out;
}

export async function referral(main, [id]) {
  let r;
  try {
    r = await get(`/v1/referrals/${encodeURIComponent(id)}`);
  } catch (e) {
    main.append(h('h1', {}, 'Referral'), notice(e.message, 'bad'));
    return null;
  }
  const who = await people([id]);
  const name = personName(who.get(id));
  main.append(h('h1', {}, name), h('p', {}, h('a', { href: `#/person/${id}` }, 'Contact card and follow-up plan')));
  const head = h('div', { id: 'referral-head' });
  const matchBox = h('section', { 'aria-labelledby': 'match-h', id: 'matches' });
  const timelineBox = h('section', { 'aria-labelledby': 'tl-h' });
  const actionBox = h('section', { class: 'card', 'aria-labelledby': 'act-h' });
  main.append(head, matchBox, actionBox, timelineBox);
  let lastStatus = null;
  const draw = async () => {
    const [cur, peers, facilities] = await Promise.all([get(`/v1/referrals/${encodeURIComponent(id)}`), peerNames(), facilityNames()]);
    r = cur;
    const peer = r.assigned_peer_id && peers.get(r.assigned_peer_id);
    clear(head,
      h('p', {}, badge(statusWords(r.status), NOT_ACCEPTED.includes(r.status) ? 'new' : ''), ' ',
        badge(PRIORITY[r.priority] || r.priority), r.overdue ? [' ', badge('overdue', 'late')] : null),
      h('dl', { class: 'facts' },
        h('dt', {}, 'From'), h('dd', {}, facilities.get(r.facility) || r.facility),
        h('dt', {}, 'Discharged'), h('dd', {}, when(r.discharged_at)),
        h('dt', {}, 'Language'), h('dd', {}, languageWords(who.get(id)?.language)),
        h('dt', {}, 'Assigned peer'), h('dd', { id: 'assigned-peer' }, peer ? peer.name : (r.waitlisted ? 'waiting for a free peer' : 'nobody yet')),
        h('dt', {}, 'Accept by'), h('dd', {}, when(r.due?.acceptance_due_at)),
        h('dt', {}, 'First contact by'), h('dd', {}, when(r.due?.first_contact_due_at))));
    clear(timelineBox, h('h2', { id: 'tl-h' }, 'Timeline'),
      h('ol', { class: 'timeline', id: 'timeline' }, [...(r.timeline || [])].reverse().map((t) => h('li', {},
        h('strong', {}, EVENT[t.event] || t.event.replace(/([a-z])([A-Z])/g, '$1 $2').replace(/^Referral /, '')),
        detailWords(t, peers) ? ` (${detailWords(t, peers)})` : '',
        ` · ${statusWords(t.status)} · ${when(t.at)}`,
        t.actor ? ` · by ${SYSTEM.includes(t.actor) ? 'careloop' : t.actor}` : '',
        t.reason ? h('div', { class: 'note' }, `Why: ${t.reason}`) : null))));
    await drawMatches(matchBox, id, r, peers);
    if (lastStatus !== r.status) {
      lastStatus = r.status;
      drawActions(actionBox, id, r);
    }
  };
  await draw();
  return draw;
}

async function drawMatches(box, id, r, peers) {
  let m = null;
  try {
    m = await get(`/v1/referrals/${encodeURIComponent(id)}/matches?limit=10`);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
  }
  if (box.contains(document.activeElement) && box.querySelector('form.open')) return; // someone is typing a reason
  clear(box, h('h2', { id: 'match-h' }, 'Peer matches'));
  if (!m) {
    box.append(h('p', {}, 'Matching has not started yet.'));
    return;
  }
  const excluded = Object.entries(m.excluded || {}).map(([k, n]) => `${n} by ${k}`).join(', ');
  box.append(h('p', { class: 'hint' }, `${m.eligible} of ${m.roster_size} peers fit${excluded ? ` (left out: ${excluded})` : ''}. Best first.`));
  const closed = ['completed', 'failed', 'cancelled', 'rejected', 'entered-in-error'].includes(r.status);
  box.append(h('ol', { class: 'cards' }, m.candidates.map((c) => {
    const peer = peers.get(c.peer_id);
    const current = c.peer_id === r.assigned_peer_id;
    const reason = h('textarea', { rows: 2, required: true });
    const form = h('form', { class: 'override', novalidate: true, hidden: true },
      formError(),
      field(`Why assign ${peer?.name || 'this peer'} instead?`, reason, { name: 'reason' }),
      h('button', { type: 'submit', class: 'primary' }, `Assign ${peer?.name || 'this peer'}`));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      if (!reason.value.trim()) return showError(form, 'reason', 'Give the reason for the override.');
      try {
        await api('PUT', `/v1/referrals/${encodeURIComponent(id)}/assignment`, { peer_id: c.peer_id, reason: reason.value.trim() });
        form.classList.remove('open');
        form.replaceWith(notice(`Assigned to ${peer?.name || 'the peer'}. The page updates when it takes effect.`, 'good'));
      } catch (err) {
        showError(form, err.field === 'reason' ? 'reason' : null, err.message);
      }
    });
    const open = h('button', { type: 'button', 'aria-expanded': 'false' }, `Assign instead…`);
    open.addEventListener('click', () => {
      form.hidden = !form.hidden;
      form.classList.toggle('open', !form.hidden);
      open.setAttribute('aria-expanded', String(!form.hidden));
      if (!form.hidden) reason.focus();
    });
    return h('li', { class: 'card candidate', 'data-peer': c.peer_id },
      h('h3', {}, peer?.name || 'A peer', current ? [' ', badge('assigned now', 'ok')] : null),
      h('p', {}, `Score ${c.score.toFixed(2)}`, peer ? ` · speaks ${peer.languages.map(languageWords).join(', ')}` : ''),
      h('ul', { class: 'terms' }, termWords(c, peer).map((t) => h('li', {}, t))),
      current || closed ? null : [open, form]);
  })));
}

function drawActions(box, id, r) {
  const possible = Object.entries(ACTIONS).filter(([, a]) => a.from.includes(r.status));
  clear(box, h('h2', { id: 'act-h' }, 'Change status'));
  if (!possible.length) {
    box.append(h('p', {}, `Nothing to change: the referral is ${statusWords(r.status).toLowerCase()}.`));
    return;
  }
  const reason = h('textarea', { rows: 3 });
  const code = h('select', {}, Object.entries(REJECT).map(([v, t]) => h('option', { value: v }, t)));
  const codeField = field('Reason for rejecting', code, { name: 'reason_code' });
  codeField.hidden = true;
  const form = h('form', { novalidate: true, id: 'status-form' },
    formError(),
    choices('What to do', 'action', Object.fromEntries(possible.map(([k, a]) => [k, a.label])), { required: true }),
    codeField,
    field('Why', reason, { name: 'reason', hint: 'Recorded on the timeline; the hospital sees the new status.' }),
    h('button', { type: 'submit', class: 'primary' }, 'Change status'));
  form.addEventListener('change', () => {
    codeField.hidden = new FormData(form).get('action') !== 'reject';
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const action = new FormData(form).get('action');
    if (!action) return showError(form, 'action', 'Choose what to do.');
    const body = { reason: reason.value.trim() || undefined };
    if (action === 'reject') body.reason_code = code.value;
    if (!body.reason && !(action === 'reject' && code.value !== 'other')) return showError(form, 'reason', 'Give the reason.');
    try {
      await post(`/v1/referrals/${encodeURIComponent(id)}/${action}`, body);
      form.replaceWith(notice(`Done: ${ACTIONS[action].label.toLowerCase()}.`, 'good'));
    } catch (err) {
      showError(form, ['reason', 'reason_code'].includes(err.field) ? err.field : null, err.message);
    }
  });
  box.append(form);
}

// ---- waitlist and roster ----

export async function waitlist(main) {
  main.append(h('h1', {}, 'Waitlist'), h('p', { class: 'hint' }, 'People waiting for a peer with room, in the order they will be matched.'));
  const box = h('div', { id: 'waitlist' });
  main.append(box);
  const draw = async () => {
    const { items } = await get('/v1/waitlist');
    const who = items.length ? await people(items.map((w) => w.referral_id)) : new Map();
    clear(box, table('Waiting, first in line first', ['Person', 'Priority', 'Waiting since'], items.map((w) => [
      h('a', { href: `#/referral/${w.referral_id}` }, personName(who.get(w.referral_id))),
      PRIORITY[w.priority] || w.priority,
      when(w.waitlisted_at),
    ])));
  };
  await draw();
  return draw;
}

const AVAIL = { active: 'Taking referrals', on_leave: 'On leave', inactive: 'Not taking referrals' };

export async function roster(main) {
  main.append(h('h1', {}, 'Roster'), h('p', {}, h('a', { class: 'button primary', href: '#/roster/new' }, 'Add a peer')));
  const renewals = h('section', { id: 'certifications', 'aria-labelledby': 'certifications-title' });
  const box = h('div', { id: 'roster' });
  main.append(renewals, box);
  const draw = async () => {
    const due = await get('/v1/peers/certifications?within_days=30');
    clear(renewals, ...(due.items.length === 0 ? [] : [
      h('h2', { id: 'certifications-title' }, 'Certifications to renew'),
      h('ul', { class: 'plain' }, due.items.map((c) => h('li', {},
        h('a', { href: `#/roster/${c.peer_id}` }, c.name), ': ',
        c.expires_on == null ? 'no certification on record'
          : c.days_left < 0 ? badge(`lapsed ${day(c.expires_on)}: not matched until renewed`, 'late')
            : badge(`ends ${day(c.expires_on)} (in ${c.days_left} ${c.days_left === 1 ? 'day' : 'days'})`, 'due')))),
    ]));
    const { items } = await getAll('/v1/peers?limit=500');
    const used = items.reduce((n, p) => n + p.active_count, 0);
    const cap = items.filter((p) => p.availability === 'active').reduce((n, p) => n + p.max_caseload, 0);
    clear(box,
      h('p', { class: 'summary' }, `${items.length} peers · ${used} people supported · room for ${Math.max(0, cap - used)} more`),
      h('ul', { class: 'cards' }, items.map((p) => h('li', { class: 'card' },
        h('h2', {}, h('a', { href: `#/roster/${p.peer_id}` }, p.name)),
        h('p', {}, badge(AVAIL[p.availability] || p.availability, p.availability === 'active' ? 'ok' : ''),
          p.available_from ? ` back ${day(p.available_from)}` : ''),
        h('p', {}, h('label', { for: `cap-${p.peer_id}` }, `Caseload ${p.active_count} of ${p.max_caseload} `),
          h('meter', { id: `cap-${p.peer_id}`, min: 0, max: p.max_caseload, value: p.active_count, high: p.max_caseload * 0.85 })),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Languages'), h('dd', {}, p.languages.map(languageWords).join(', ')),
          h('dt', {}, 'Lived experience'), h('dd', {}, p.lived_experience.join(', ') || '—'),
          h('dt', {}, 'Areas'), h('dd', {}, p.regions.join(', ') || '—'),
          h('dt', {}, 'Certified until'), h('dd', {}, p.cert_expires_on ? `${day(p.cert_expires_on)} (${p.cert_number})` : '—'))))));
  };
  await draw();
  return draw;
}

const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

export async function peerForm(main, [id]) {
  const isNew = id === 'new';
  let p = { name: '', languages: ['en'], gender: '', lived_experience: [], regions: [], modes: ['phone'], max_caseload: 12, availability: 'active' };
  if (!isNew) {
    const { items } = await getAll('/v1/peers?limit=500');
    p = items.find((x) => x.peer_id === id);
    if (!p) {
      main.append(h('h1', {}, 'Peer'), notice('No such peer on the roster.', 'bad'));
      return null;
    }
  }
  main.append(h('h1', {}, isNew ? 'Add a peer' : `Edit ${p.name}`), h('p', {}, h('a', { href: '#/roster' }, 'Back to the roster')));
  const name = h('input', { type: 'text', required: true, value: p.name, autocomplete: 'off' });
  const languages = h('input', { type: 'text', value: p.languages.join(', ') });
  const gender = h('input', { type: 'text', value: p.gender || '' });
  const lived = h('input', { type: 'text', value: p.lived_experience.join(', ') });
  const regions = h('input', { type: 'text', value: p.regions.join(', ') });
  const cap = h('input', { type: 'number', min: 1, max: 200, value: p.max_caseload });
  const certIssuer = h('input', { type: 'text', value: p.cert_issuer || '', autocomplete: 'off' });
  const certNumber = h('input', { type: 'text', value: p.cert_number || '', autocomplete: 'off' });
  const certUntil = h('input', { type: 'date', value: p.cert_expires_on || '' });
  const form = h('form', { class: 'card', novalidate: true },
    formError(),
    field('Name', name, { name: 'name' }),
    field('Languages', languages, { name: 'languages', hint: 'Codes separated by commas: en, es' }),
    field('Gender', gender, { name: 'gender', optional: true }),
    field('Lived experience', lived, { name: 'lived_experience', optional: true, hint: 'Separated by commas: depression, veteran' }),
    field('Areas (postcode starts)', regions, { name: 'regions', optional: true, hint: 'Separated by commas: 681, 680' }),
    choices('Ways of contact', 'modes', { phone: 'Phone', in_person: 'In person', video: 'Video', text: 'Text message' }, { type: 'checkbox', checked: p.modes }),
    field('Most people at once', cap, { name: 'max_caseload' }),
    field('Certified by', certIssuer, { name: 'certification.issuer', optional: true, hint: 'The board that certified them as a peer support specialist' }),
    field('Certificate number', certNumber, { name: 'certification.number', optional: true }),
    field('Certified until', certUntil, { name: 'certification.expires_on', optional: true, hint: 'After this day they are not matched until renewed' }),
    h('button', { type: 'submit', class: 'primary' }, isNew ? 'Add to the roster' : 'Save changes'));
  main.append(form);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    if (!name.value.trim()) return showError(form, 'name', 'Give the peer’s name.');
    const body = {
      name: name.value.trim(), languages: list(languages.value), lived_experience: list(lived.value),
      regions: list(regions.value), modes: new FormData(form).getAll('modes'), max_caseload: Number(cap.value),
    };
    if (gender.value.trim()) body.gender = gender.value.trim();
    const cert = [certIssuer.value.trim(), certNumber.value.trim(), certUntil.value];
    if (cert.some(Boolean)) {
      if (!cert[0]) return showError(form, 'certification.issuer', 'Give who certified them, or leave all three empty.');
      if (!cert[1]) return showError(form, 'certification.number', 'Give the certificate number.');
      if (!cert[2]) return showError(form, 'certification.expires_on', 'Give the last day it is valid.');
      body.certification = { issuer: cert[0], number: cert[1], expires_on: cert[2] };
    }
    try {
      if (isNew) await post('/v1/peers', body);
      else await api('PATCH', `/v1/peers/${encodeURIComponent(id)}`, body);
      location.hash = '#/roster';
    } catch (err) {
      showError(form, err.field, err.message);
    }
  });
  if (!isNew) main.append(availabilityForm(id, p));
  return null;
}

function availabilityForm(id, p) {
  const until = h('input', { type: 'date' });
  const untilField = field('Back on', until, { name: 'availability.until' });
  const form = h('form', { class: 'card', novalidate: true },
    h('h2', {}, 'Availability'),
    formError(),
    choices('Status', 'availability', AVAIL, { checked: [p.availability] }),
    untilField,
    h('button', { type: 'submit' }, 'Save availability'));
  const sync = () => (untilField.hidden = new FormData(form).get('availability') !== 'on_leave');
  form.addEventListener('change', sync);
  sync();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const status = new FormData(form).get('availability');
    const availability = { status };
    if (status === 'on_leave') {
      if (!until.value) return showError(form, 'availability.until', 'Give the date they are back.');
      availability.until = new Date(`${until.value}T00:00:00`).toISOString();
    }
    try {
      await api('PATCH', `/v1/peers/${encodeURIComponent(id)}`, { availability });
      location.hash = '#/roster';
    } catch (err) {
      showError(form, err.field, err.message);
    }
  });
  return form;
}
