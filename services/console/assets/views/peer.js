// The peer support specialist's screens: Today, a person's page, logging a contact.

import {
  h, clear, badge, dueBadge, clock, when, day, personName, languageWords, modesWords,
  checkpointWords, statusWords, field, choices, showError, clearErrors, formError, notice,
  localInput, CHANNEL, OUTCOME, SUPPORT,
} from '../ui.js';
import { get, getAll, post, people, session, ApiError } from '../api.js';

let flash = null;
export function setFlash(text) {
  flash = text;
}
function takeFlash(main) {
  if (flash) main.append(notice(flash, 'good'));
  flash = null;
}

export async function today(main) {
  main.append(h('h1', {}, 'Today'));
  takeFlash(main);
  main.append(h('p', { class: 'hint' }, 'The people you support, the next check-in first.'));
  const box = h('div', { id: 'caseload' });
  main.append(box);
  const draw = async () => {
    const { items } = await getAll('/v1/followups?state=active&limit=500');
    const who = items.length ? await people(items.map((i) => i.referral_id)) : new Map();
    const late = items.filter((i) => clock(i.next_due_at).overdue).length;
    clear(box,
      h('p', { class: 'summary' }, `${items.length} ${items.length === 1 ? 'person' : 'people'} in your caseload`,
        late ? [' · ', badge(`${late} overdue`, 'late')] : null),
      items.length
        ? h('ul', { class: 'cards', 'aria-label': 'Caseload' }, items.map((i) => personCard(i, who.get(i.referral_id))))
        : h('p', {}, 'Nobody is assigned to you right now.'));
  };
  await draw();
  return draw;
}

function personCard(i, p) {
  const name = personName(p);
  return h('li', { class: 'card person', 'data-referral': i.referral_id },
    h('h2', {}, h('a', { href: `#/person/${i.referral_id}`, 'data-key': `p-${i.referral_id}` }, name)),
    h('p', { class: 'due-line' }, dueBadge(i.next_due_at), ' ', checkpointWords(i.next_checkpoint),
      i.next_due_at ? ` · ${when(i.next_due_at)}` : ''),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Language'), h('dd', {}, languageWords(p?.language)),
      h('dt', {}, 'Prefers'), h('dd', {}, modesWords(p?.contact_modes)),
      h('dt', {}, 'Discharged'), h('dd', {}, day(i.discharged_at)),
      h('dt', {}, 'Attempts'), h('dd', {}, String(i.attempts), i.first_reached_at ? ` · first reached ${day(i.first_reached_at)}` : ' · not reached yet')),
    h('p', { class: 'actions' },
      h('a', { class: 'button primary', href: `#/person/${i.referral_id}/contact`, 'aria-label': `Log a contact with ${name}` }, 'Log a contact'),
      h('a', { class: 'button', href: `#/person/${i.referral_id}`, 'aria-label': `Contact card and plan for ${name}` }, 'Contact card')));
}

function notYours(e) {
  if (e instanceof ApiError && (e.status === 403 || e.status === 404)) {
    return notice('This person is not in your caseload.', 'bad');
  }
  throw e;
}

export async function person(main, [id]) {
  let referral;
  try {
    referral = await get(`/v1/referrals/${encodeURIComponent(id)}`);
  } catch (e) {
    main.append(h('h1', {}, 'Person'), notYours(e));
    return null;
  }
  const who = await people([id]);
  const p = who.get(id);
  const name = personName(p);
  main.append(h('h1', {}, name));
  takeFlash(main);
  main.append(h('p', {}, badge(statusWords(referral.status)), ` Discharged ${when(referral.discharged_at)}`));

  // The contact card: PHI, read (and audited) only when asked for.
  const card = h('section', { class: 'card', 'aria-labelledby': 'card-h' }, h('h2', { id: 'card-h' }, 'Contact card'));
  const show = h('button', { type: 'button', class: 'primary' }, 'Show phone and contact details');
  card.append(h('p', { class: 'hint' }, 'Each time the card is opened, careloop records who opened it.'), show);
  show.addEventListener('click', async () => {
    show.disabled = true;
    try {
      const c = await get(`/v1/referrals/${encodeURIComponent(id)}/contact-card`);
      show.replaceWith(h('dl', { class: 'facts', id: 'contact-card' },
        h('dt', {}, 'Name'), h('dd', {}, personName(c)),
        h('dt', {}, 'Phone'), h('dd', {}, c.phone ? h('a', { href: `tel:${c.phone.replace(/[^+\d]/g, '')}` }, c.phone) : 'not on record'),
        h('dt', {}, 'Language'), h('dd', {}, languageWords(c.language)),
        h('dt', {}, 'Prefers'), h('dd', {}, modesWords(c.contact_modes)),
        c.gender ? [h('dt', {}, 'Gender'), h('dd', {}, c.gender)] : null,
        h('dt', {}, 'From the hospital'), h('dd', {}, c.hospital_notes || 'no notes')));
    } catch (e) {
      show.disabled = false;
      card.append(notice(e.message, 'bad'));
    }
  });
  main.append(card,
    h('p', { class: 'actions' }, h('a', { class: 'button primary', href: `#/person/${id}/contact` }, 'Log a contact')));

  const planBox = h('section', { 'aria-labelledby': 'plan-h' });
  main.append(planBox);
  const draw = async () => {
    let plan = null;
    try {
      plan = await get(`/v1/referrals/${encodeURIComponent(id)}/followup`);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
    clear(planBox, h('h2', { id: 'plan-h' }, 'Follow-up plan'));
    if (!plan) {
      planBox.append(h('p', {}, 'No plan yet: it starts once a peer is assigned.'));
      return;
    }
    planBox.append(
      h('p', {}, `Plan ${plan.state}${plan.outcome ? ` (${plan.outcome})` : ''}, ends ${day(plan.ends_at)}.`),
      h('h3', {}, 'Check-ins'),
      h('ol', { class: 'checkins', id: 'checkins' }, plan.checkpoints.map((c) => h('li', {},
        h('strong', {}, checkpointWords(c.name)), ' ',
        c.met_at ? badge(`met ${when(c.met_at)}`, 'ok') : dueBadge(c.due_at),
        h('div', { class: 'hint' }, `Window ${day(c.window_start)} to ${when(c.due_at)}`)))),
      h('h3', {}, 'Contacts'),
      plan.contacts.length
        ? h('ul', { class: 'timeline', id: 'contacts' }, [...plan.contacts].reverse().map((c) => h('li', {},
          h('strong', {}, `${when(c.occurred_at)}: ${OUTCOME[c.outcome] || c.outcome}`),
          ` by ${CHANNEL[c.channel] || c.channel}`,
          c.duration_minutes ? `, ${c.duration_minutes} min` : '',
          c.support_types.length ? h('div', {}, 'Support: ', c.support_types.map((t) => SUPPORT[t] || t).join(', ')) : null,
          c.notes ? h('div', { class: 'note' }, c.notes) : null)))
        : h('p', { id: 'contacts' }, 'No contact logged yet.'));
  };
  await draw();

  if (session.user.role === 'peer' || session.user.role === 'coordinator') main.append(handBack(id, name));
  return draw;
}

function handBack(id, name) {
  const reason = h('textarea', { rows: 3, required: true, maxlength: 2000 });
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'back-h' },
    h('h2', { id: 'back-h' }, 'Hand back'),
    h('p', { class: 'hint' }, `If you cannot support ${name}, hand the referral back to the coordinator, who finds another peer.`),
    formError(),
    field('Why are you handing this back?', reason, { name: 'reason' }),
    h('button', { type: 'submit' }, 'Hand back to the coordinator'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    if (!reason.value.trim()) return showError(form, 'reason', 'Say why, so the coordinator can find the right peer.');
    try {
      await post(`/v1/referrals/${encodeURIComponent(id)}/assignment/decline`, { reason: reason.value.trim() });
      setFlash(`${name} was handed back to the coordinator.`);
      location.hash = session.user.role === 'peer' ? '#/today' : `#/referral/${id}`;
    } catch (err) {
      showError(form, err.field, err.message);
    }
  });
  return form;
}

export async function logContact(main, [id]) {
  let referral;
  try {
    referral = await get(`/v1/referrals/${encodeURIComponent(id)}`);
  } catch (e) {
    main.append(h('h1', {}, 'Log a contact'), notYours(e));
    return null;
  }
  const who = await people([id]);
  const name = personName(who.get(id));
  main.append(h('h1', {}, `Log a contact with ${name}`),
    h('p', {}, h('a', { href: `#/person/${id}` }, `Back to ${name}`)));
  const now = new Date();
  const occurred = h('input', { type: 'datetime-local', required: true, value: localInput(now), max: localInput(now) });
  const minutes = h('input', { type: 'number', min: 0, max: 1440, inputmode: 'numeric' });
  const notes = h('textarea', { rows: 4, maxlength: 4000 });
  const prefers = who.get(id)?.contact_modes || [];
  const form = h('form', { class: 'card', novalidate: true, id: 'contact-form' },
    formError(),
    field('When', occurred, { name: 'occurred_at', hint: `Your local time. Earlier contacts may be logged late; not before the discharge (${when(referral.discharged_at)}), not in the future.` }),
    choices('How', 'channel', CHANNEL, { checked: [prefers[0] || 'phone'], required: true }),
    choices('What happened', 'outcome', OUTCOME, { required: true }),
    choices('Support given (if you reached them)', 'support_types', SUPPORT, { type: 'checkbox' }),
    field('Minutes', minutes, { name: 'duration_minutes', optional: true }),
    field('Notes', notes, { name: 'notes', optional: true, hint: 'What matters for the next contact. Keep clinical details out.' }),
    h('button', { type: 'submit', class: 'primary' }, 'Save contact'));
  main.append(form);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const at = new Date(occurred.value);
    if (!occurred.value || Number.isNaN(at.getTime())) return showError(form, 'occurred_at', 'Give the date and time of the contact.');
    if (at.getTime() > Date.now() + 60000) return showError(form, 'occurred_at', 'This time is in the future: log a contact once it has happened.');
    const fd = new FormData(form);
    const outcome = fd.get('outcome');
    if (!outcome) return showError(form, 'outcome', 'Choose what happened.');
    const body = {
      occurred_at: at.toISOString(),
      channel: fd.get('channel') || 'phone',
      outcome,
      support_types: fd.getAll('support_types'),
    };
    if (minutes.value !== '') body.duration_minutes = Number(minutes.value);
    if (notes.value.trim()) body.notes = notes.value.trim();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await post(`/v1/referrals/${encodeURIComponent(id)}/contacts`, body);
      setFlash(`Contact with ${name} saved.`);
      location.hash = `#/person/${id}`;
    } catch (err) {
      const f = err.field && err.field.replace(/^body\./, '');
      showError(form, form.querySelector(`[data-field="${f}"]`) ? f : null, err.message);
    } finally {
      button.disabled = false;
    }
  });
  return null;
}
