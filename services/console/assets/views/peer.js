// The peer support specialist's screens: Today, a person's page, logging a contact.

import {
  h, clear, badge, dueBadge, clock, when, day, personName, languageWords, modesWords,
  checkpointWords, statusWords, field, choices, showError, clearErrors, formError, notice,
  localInput, tick, CHANNEL, OUTCOME, SUPPORT, PLACE, GOAL_STATUS, GOAL_REVIEW, MODIFIER,
} from '../ui.js';
import { get, getAll, post, put, poll, people, session, ApiError } from '../api.js';

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
    // After a completed plan, the caring contacts people agreed to.
    const caring = (await getAll('/v1/followups?state=caring&limit=500')).items;
    const all = [...items, ...caring].map((i) => i.referral_id);
    const who = all.length ? await people(all) : new Map();
    const late = items.filter((i) => clock(i.next_due_at).overdue).length;
    clear(box,
      h('p', { class: 'summary' }, `${items.length} ${items.length === 1 ? 'person' : 'people'} in your caseload`,
        late ? [' · ', badge(`${late} overdue`, 'late')] : null),
      items.length
        ? h('ul', { class: 'cards', 'aria-label': 'Caseload' }, items.map((i) => personCard(i, who.get(i.referral_id))))
        : h('p', {}, 'Nobody is assigned to you right now.'),
      caring.length
        ? [h('h2', { id: 'caring-h' }, 'Caring contacts'),
          h('p', { class: 'hint' }, 'A brief, friendly message to people whose plan is complete. Nothing is asked of them.'),
          h('ul', { class: 'cards', id: 'caring', 'aria-labelledby': 'caring-h' }, caring.map((i) => personCard(i, who.get(i.referral_id))))]
        : null);
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

  const said = h('div', { id: 'plan-said' });
  const planBox = h('section', { 'aria-labelledby': 'plan-h' });
  main.append(said, planBox);
  const read = async () => {
    try {
      const p = await get(`/v1/referrals/${encodeURIComponent(id)}/followup`);
      p.goals = p.goals || [];
      p.contacts.forEach((c) => Object.assign(c, { missing: c.missing || [], addenda: c.addenda || [] }));
      return p;
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
  };
  // Redrawn live, except while someone is typing in one of its forms; after a save,
  // with the plan that shows it (`fresh`).
  const draw = async (fresh) => {
    // A form someone is typing in is never redrawn away; after a save, the form
    // being sent is redrawn (emptied), others still are not.
    const typing = () => planBox.querySelector(fresh ? 'form[data-dirty]:not([data-sending])' : 'form[data-dirty]');
    if (typing()) return;
    const plan = fresh || (await read());
    const serviceCodes = await codes();
    // Asked again after the reads: typing that began while the plan was read must not
    // be wiped by the redraw it would lose to.
    if (typing()) return;
    const open = [...planBox.querySelectorAll('details[open]')].map((d) => d.id);
    clear(planBox, h('h2', { id: 'plan-h' }, 'Follow-up plan'));
    if (!plan) {
      planBox.append(h('p', {}, 'No plan yet: it starts once a peer is assigned.'));
      return;
    }
    const ctx = { id, plan, codes: serviceCodes, saved };
    planBox.append(
      h('p', {}, `Plan ${plan.state}${plan.outcome ? ` (${plan.outcome})` : ''}, ends ${day(plan.ends_at)}.`),
      h('h3', {}, 'Check-ins'),
      h('ol', { class: 'checkins', id: 'checkins' }, plan.checkpoints.map((c) => h('li', {},
        h('strong', {}, checkpointWords(c.name)), ' ',
        c.met_at ? badge(`met ${when(c.met_at)}`, 'ok')
          // A closed plan's unmet check-ins are no longer due (caring contacts are).
          : plan.state === 'closed' && !c.name.startsWith('caring_') ? badge('not met') : dueBadge(c.due_at),
        h('div', { class: 'hint' }, `Window ${day(c.window_start)} to ${when(c.due_at)}`)))),
      ...caringSection(ctx),
      ...goalsSection(ctx),
      h('h3', {}, 'Contacts'),
      plan.contacts.length
        ? h('ul', { class: 'timeline', id: 'contacts' }, [...plan.contacts].reverse().map((c) => contactItem(ctx, c)))
        : h('p', { id: 'contacts' }, 'No contact logged yet.'));
    for (const d of open) if (document.getElementById(d)) document.getElementById(d).open = true;
  };
  /// After a save: waits for the plan to show it, redraws, says so, and moves focus
  /// to what changed.
  async function saved(shows, message, focusId) {
    const fresh = await poll(read, (p) => !!p && shows(p));
    await draw(fresh);
    clear(said, notice(shows(fresh) ? message : `${message} It shows here in a moment.`, 'good'));
    (document.getElementById(focusId) || said.querySelector('.notice'))?.focus();
  }
  await draw();

  if (session.user.role === 'peer' || session.user.role === 'coordinator') main.append(handBack(id, name));
  return draw;
}

let serviceCodes = null;
/// The organisation's service codes (none when billing is not set up).
function codes() {
  serviceCodes = serviceCodes || get('/v1/billing/codes').then((r) => r.codes || [], () => {
    serviceCodes = null;
    return [];
  });
  return serviceCodes;
}

/// A form whose typing a live redraw must not lose.
function guarded(form) {
  form.addEventListener('input', () => (form.dataset.dirty = '1'));
  return form;
}

const words = (g) => (g && g.words ? h('q', {}, g.words) : h('em', {}, 'words erased with their data'));
const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// ---- caring contacts ----

/// After a completed plan: caring contacts the person agreed to, until they ask to stop.
function caringSection({ id, plan, saved }) {
  if (plan.state !== 'closed' || plan.outcome !== 'completed') return [];
  const head = h('h3', { id: 'caring-plan-h' }, 'Caring contacts');
  const box = h('div', { id: 'caring-contacts' });
  const state = plan.caring_state;
  if (!state) {
    const form = h('form', { novalidate: true, id: 'caring-start' }, formError(),
      h('p', { class: 'hint' }, 'Brief, non-demanding messages after the plan, for example once a month for a year. Start them only if they agree.'),
      h('button', { type: 'submit', class: 'primary' }, 'Start caring contacts (they agreed)'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      await send(form, async () => {
        await post(`/v1/referrals/${encodeURIComponent(id)}/caring-contacts`, {});
        await saved((p) => p.caring_state === 'running', 'Caring contacts started.', 'caring-contacts');
      });
    });
    box.append(form);
  } else if (state === 'running') {
    const reason = h('input', { type: 'text', maxlength: 500, value: 'They asked to stop.' });
    const form = guarded(h('form', { novalidate: true, id: 'caring-stop' }, formError(),
      field('Why they stop', reason, { name: 'reason' }),
      h('button', { type: 'submit' }, 'Stop caring contacts')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      if (!reason.value.trim()) return showError(form, 'reason', 'Say why, in a few words.');
      await send(form, async () => {
        await post(`/v1/referrals/${encodeURIComponent(id)}/caring-contacts/stop`, { reason: reason.value.trim() });
        await saved((p) => p.caring_state === 'stopped', 'Caring contacts stopped.', 'caring-contacts');
      });
    });
    box.append(h('p', {}, badge('Running', 'ok'), plan.next_due_at ? ` · next ${when(plan.next_due_at)}` : '',
      ' · each contact you log counts as the next one.'), h('details', { id: 'caring-stop-open' }, h('summary', {}, 'They asked to stop'), form));
  } else {
    box.append(h('p', {}, state === 'done' ? 'Every caring contact was made.' : 'Stopped: no more caring contacts are due.'));
  }
  box.tabIndex = -1;
  return [head, box];
}

// ---- goals ----

function goalsSection(ctx) {
  const { plan } = ctx;
  return [
    h('h3', { id: 'goals-h' }, 'Goals'),
    plan.goals.length
      ? h('ul', { class: 'goals', id: 'goals', 'aria-labelledby': 'goals-h' }, plan.goals.map((g) => h('li', { id: `goal-${g.goal_id}`, 'data-goal': g.goal_id, tabindex: '-1' },
        h('p', { class: 'words' }, words(g)),
        h('p', {}, badge(GOAL_STATUS[g.status] || g.status, g.status === 'met' ? 'ok' : ''),
          g.support_types.length ? ` · ${g.support_types.map((t) => SUPPORT[t] || t).join(', ')}` : '',
          ` · worked on in ${count(g.contacts, 'contact', 'contacts')} · set ${day(g.set_at)}`),
        g.reviews.length ? h('ol', { class: 'reviews' }, g.reviews.map((r) => h('li', {},
          h('strong', {}, GOAL_REVIEW[r.kind] || r.kind), ` · ${when(r.reviewed_at)} · by ${r.reviewed_by}`,
          r.kind === 'changed' ? h('div', {}, 'Now: ', words(r)) : null,
          r.note ? h('div', { class: 'note' }, r.note) : null))) : null,
        reviewForm(ctx, g))))
      : h('p', { id: 'goals' }, 'No goal yet. Ask what they want from the weeks ahead, and write it in their words.'),
    goalForm(ctx),
  ];
}

function goalForm({ id, saved }) {
  const text = h('textarea', { rows: 2, maxlength: 500, required: true });
  const form = guarded(h('form', { class: 'card', novalidate: true, id: 'goal-form', 'aria-labelledby': 'goal-form-h' },
    h('h4', { id: 'goal-form-h' }, 'Add a goal in their words'),
    formError(),
    field('The goal, as they say it', text, { name: 'words', hint: 'Their words, not yours: “I want to keep my apartment.”' }),
    choices('Support that can help', 'support_types', SUPPORT, { type: 'checkbox' }),
    h('button', { type: 'submit', class: 'primary' }, 'Add the goal')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const w = text.value.trim();
    if (!w) return showError(form, 'words', 'Write the goal as they said it.');
    if ([...w].length > 500) return showError(form, 'words', 'Keep it to 500 characters: one sentence or two.');
    await send(form, async () => {
      const r = await post(`/v1/referrals/${encodeURIComponent(id)}/goals`, { words: w, support_types: new FormData(form).getAll('support_types') });
      await saved((p) => p.goals.some((g) => g.goal_id === r.goal_id), 'Goal added.', `goal-${r.goal_id}`);
    });
  });
  return form;
}

function reviewForm({ id, saved }, g) {
  const text = h('textarea', { rows: 2, maxlength: 500 });
  const textField = field('Their new words', text, { name: 'words', hint: 'The goal as they say it now.' });
  textField.hidden = true;
  const note = h('textarea', { rows: 2, maxlength: 2000 });
  const form = guarded(h('form', { novalidate: true, id: `review-${g.goal_id}` },
    formError(),
    choices('How is it going?', 'kind', GOAL_REVIEW, { required: true }),
    textField,
    field('Note', note, { name: 'note', optional: true }),
    h('button', { type: 'submit' }, 'Save the review')));
  form.addEventListener('change', () => (textField.hidden = new FormData(form).get('kind') !== 'changed'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const kind = new FormData(form).get('kind');
    if (!kind) return showError(form, 'kind', 'Choose how it is going.');
    const body = { kind };
    if (kind === 'changed') {
      body.words = text.value.trim();
      if (!body.words) return showError(form, 'words', 'Write the goal as they say it now.');
      if ([...body.words].length > 500) return showError(form, 'words', 'Keep it to 500 characters.');
    }
    if (note.value.trim()) body.note = note.value.trim();
    const before = g.reviews.length;
    await send(form, async () => {
      await post(`/v1/referrals/${encodeURIComponent(id)}/goals/${encodeURIComponent(g.goal_id)}/reviews`, body);
      await saved((p) => p.goals.some((x) => x.goal_id === g.goal_id && x.reviews.length > before), 'Review saved.', `goal-${g.goal_id}`);
    });
  });
  return h('details', { id: `review-open-${g.goal_id}` }, h('summary', {}, 'Review this goal'), form);
}

/// Submits: the button is busy meanwhile; a refusal is shown next to its field.
async function send(form, run) {
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  form.dataset.sending = '1';
  try {
    await run();
    delete form.dataset.dirty;
  } catch (err) {
    showError(form, err.field, err.message);
  } finally {
    delete form.dataset.sending;
    button.disabled = false;
  }
}

// ---- contacts and their documentation ----

const time = (iso) => new Date(iso).toLocaleTimeString('en-US', { hour: 'numeric', minute: '2-digit' });
const billingLine = (b) => `${[b.service_code, ...b.modifiers].join(' ')} · ${count(b.units, 'unit', 'units')}`;

function contactItem(ctx, c) {
  const { id, plan, saved } = ctx;
  const b = c.billing;
  const role = session.user.role;
  const mine = role === 'peer' && c.peer_id === session.user.peer_id;
  const goals = (c.goal_ids || []).map((g) => plan.goals.find((x) => x.goal_id === g)).filter(Boolean);
  let status = null;
  if (c.signed_at) status = [badge('Signed', 'ok'), ` by ${c.signed_by} on ${day(c.signed_at)}. Locked: a change is an addendum.`];
  else if (b && c.missing.length) status = [badge('Incomplete', 'late'), `: ${c.missing.map((m) => m.reason).join('; ')}.`];
  else if (b) status = badge('Awaiting supervisor’s signature', 'due');
  const sign = role === 'coordinator' && b && !c.signed_at && !c.missing.length
    ? h('button', { type: 'button', class: 'link' }, 'Sign as supervisor') : null;
  sign?.addEventListener('click', async () => {
    sign.disabled = true;
    try {
      await post(`/v1/referrals/${encodeURIComponent(id)}/contacts/${encodeURIComponent(c.contact_id)}/signature`);
      await saved((p) => p.contacts.some((x) => x.contact_id === c.contact_id && x.signed_at), 'Signed.', `contact-${c.contact_id}`);
    } catch (e) {
      sign.disabled = false;
      sign.after(notice(e.message, 'bad'));
    }
  });
  return h('li', { id: `contact-${c.contact_id}`, 'data-contact': c.contact_id, tabindex: '-1' },
    h('strong', {}, `${when(c.occurred_at)}: ${OUTCOME[c.outcome] || c.outcome}`),
    ` by ${CHANNEL[c.channel] || c.channel}`,
    c.place ? `, ${(PLACE[c.place] || c.place).toLowerCase()}` : '',
    c.duration_minutes ? `, ${c.duration_minutes} min` : '',
    c.ended_at ? ` (ended ${time(c.ended_at)})` : '',
    c.support_types.length ? h('div', {}, 'Support: ', c.support_types.map((t) => SUPPORT[t] || t).join(', ')) : null,
    goals.length ? h('div', {}, 'Worked on: ', goals.map((g, i) => [i ? '; ' : '', words(g)])) : null,
    b ? h('div', { class: 'billing' }, `Billed ${billingLine(b)}`, ' · ',
      b.attested_at ? badge('Attested', 'ok') : badge('Not attested', 'late')) : null,
    status ? h('div', { class: 'doc-status' }, status) : null,
    c.notes ? h('div', { class: 'note' }, c.notes) : null,
    c.addenda?.length ? h('ul', { class: 'addenda', 'aria-label': 'Addenda' }, c.addenda.map((a) => h('li', {},
      h('strong', {}, 'Addendum'), ` · ${when(a.added_at)} · by ${a.added_by}`,
      h('div', { class: 'note' }, a.text ?? 'text erased with their data')))) : null,
    sign,
    c.signed_at && (mine || role === 'coordinator') ? addendumForm(ctx, c) : null,
    !c.signed_at && b && mine ? correctForm(ctx, c) : null);
}

function addendumForm({ id, saved }, c) {
  const text = h('textarea', { rows: 3, maxlength: 4000, required: true });
  const form = guarded(h('form', { novalidate: true, id: `addendum-${c.contact_id}` },
    formError(),
    field('Addendum', text, { name: 'text', hint: 'The signed record stays as it was; this is kept beside it, with your name and the time.' }),
    h('button', { type: 'submit' }, 'Save the addendum')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    if (!text.value.trim()) return showError(form, 'text', 'Write what to add or correct.');
    const before = c.addenda.length;
    await send(form, async () => {
      await post(`/v1/referrals/${encodeURIComponent(id)}/contacts/${encodeURIComponent(c.contact_id)}/addenda`, { text: text.value.trim() });
      await saved((p) => p.contacts.some((x) => x.contact_id === c.contact_id && x.addenda.length > before), 'Addendum saved.', `contact-${c.contact_id}`);
    });
  });
  return h('details', { id: `addendum-open-${c.contact_id}` }, h('summary', {}, 'Add an addendum'), form);
}

function correctForm({ id, codes: list, saved }, c) {
  const doc = documentationFields(list, { initial: c, channel: () => c.channel });
  const form = guarded(h('form', { novalidate: true, id: `correct-${c.contact_id}` },
    formError(), doc.nodes,
    h('button', { type: 'submit' }, 'Save the documentation')));
  form.addEventListener('change', doc.sync);
  doc.sync();
  const was = JSON.stringify([c.ended_at, c.duration_minutes, c.place, c.billing]);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = doc.read(form, new Date(c.occurred_at), c.channel, c.outcome);
    if (!body) return;
    await send(form, async () => {
      await put(`/v1/referrals/${encodeURIComponent(id)}/contacts/${encodeURIComponent(c.contact_id)}/documentation`, body);
      await saved((p) => p.contacts.some((x) => x.contact_id === c.contact_id
        && JSON.stringify([x.ended_at, x.duration_minutes, x.place, x.billing]) !== was), 'Documentation saved.', `contact-${c.contact_id}`);
    });
  });
  return h('details', { id: `correct-open-${c.contact_id}` }, h('summary', {}, 'Correct the documentation'), form);
}

/// The documentation part of a contact form: when it ended (or its minutes), where,
/// and what it is billed under. `read` checks it as the server would and gives the
/// request's fields, or shows what is wrong and gives null.
function documentationFields(codeList, { initial = {}, channel }) {
  const ended = h('input', { type: 'datetime-local', value: initial.ended_at ? localInput(new Date(initial.ended_at)) : '', max: localInput(new Date()) });
  const minutes = h('input', { type: 'number', min: 0, max: 1440, inputmode: 'numeric', value: initial.ended_at ? '' : initial.duration_minutes ?? '' });
  const minutesField = field('Minutes', minutes, { name: 'duration_minutes', optional: true });
  const place = choices('Where (in person)', 'place', PLACE, { checked: initial.place ? [initial.place] : [] });
  const b = initial.billing;
  const code = h('select', {}, h('option', { value: '' }, 'Not billed'),
    codeList.map((x) => h('option', { value: x.code, selected: b?.service_code === x.code }, `${x.code} (${x.unit_minutes}-minute units)`)));
  const mods = h('div', {});
  const peer = session.user.role === 'peer';
  const attest = peer
    ? tick('I attest that I provided this service as documented', 'billing.attested', { checked: !!b?.attested_by })
    : h('p', { class: 'hint' }, 'The peer who provided the service attests to it.');
  const bill = codeList.length ? h('fieldset', { 'data-field': 'billing' }, h('legend', {}, 'Bill this contact'),
    field('Service code', code, { name: 'billing.service_code' }), mods, attest) : null;
  let shownCode = null;
  const sync = () => {
    const c = codeList.find((x) => x.code === code.value);
    // A billed contact's minutes come from its end time.
    minutesField.hidden = !!c;
    place.hidden = channel() !== 'in_person';
    attest.hidden = !c;
    if (code.value === shownCode) return;
    const keep = shownCode === null ? b?.modifiers || [] : [...mods.querySelectorAll('input:checked')].map((i) => i.value);
    shownCode = code.value;
    clear(mods, c && c.modifiers.length ? choices('Modifiers', 'billing.modifiers',
      c.modifiers.map((m) => [m, MODIFIER[m] ? `${m} (${MODIFIER[m]})` : m]), { type: 'checkbox', checked: keep }) : null);
  };
  const nodes = [
    field('Ended', ended, { name: 'ended_at', optional: true, hint: 'When the contact ended, your local time: its minutes come from this. Needed to bill it.' }),
    minutesField, place, bill,
  ];
  const read = (form, began, ch, outcome) => {
    const fail = (f, m) => (showError(form, f, m), null);
    const out = {};
    if (ended.value) {
      const end = new Date(ended.value);
      if (Number.isNaN(end.getTime())) return fail('ended_at', 'Give the date and time the contact ended.');
      if (end <= began) return fail('ended_at', 'This ends before the contact began: check both times.');
      if (end.getTime() > Date.now() + 60000) return fail('ended_at', 'This time is in the future: give the time the contact ended.');
      if (end - began > 86400000) return fail('ended_at', 'A contact lasts at most 24 hours: check the dates.');
      out.ended_at = end.toISOString();
    }
    const c = codeList.find((x) => x.code === code.value);
    if (!c && minutes.value !== '') {
      const m = Number(minutes.value);
      if (!Number.isInteger(m) || m < 0 || m > 1440) return fail('duration_minutes', 'Give the minutes as a whole number up to 1440.');
      if (out.ended_at && Math.floor((new Date(out.ended_at) - began) / 60000) !== m) return fail('duration_minutes', 'These minutes disagree with the end time: give one of them.');
      if (!out.ended_at) out.duration_minutes = m;
    }
    const where = new FormData(form).get('place');
    if (ch === 'in_person' && where) out.place = where;
    if (c) {
      if (ch === 'text') return fail('billing.service_code', 'A text message is not a billable peer support contact: choose Not billed.');
      if (outcome !== 'reached') return fail('billing.service_code', 'Only a contact that reached the person is billable: choose Not billed.');
      if (!out.ended_at) return fail('ended_at', 'Give the time the contact ended: the billed units come from its minutes.');
      if (ch === 'in_person' && !where) return fail('place', 'Say where you met: an in-person contact is billed with its place.');
      const attested = peer && attest.querySelector('input').checked;
      if (peer && !attested) return fail('billing.attested', 'Attest that you provided the service to bill it, or choose Not billed.');
      const chosen = [...mods.querySelectorAll('input:checked')].map((i) => i.value);
      out.billing = { service_code: c.code, modifiers: c.modifiers.filter((m) => chosen.includes(m)), attested };
    }
    return out;
  };
  return { nodes, sync, read };
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
  const [list, plan] = await Promise.all([codes(), get(`/v1/referrals/${encodeURIComponent(id)}/followup`).catch(() => null)]);
  const goals = (plan?.goals || []).filter((g) => g.status !== 'set_aside');
  const now = new Date();
  const occurred = h('input', { type: 'datetime-local', required: true, value: localInput(now), max: localInput(now) });
  const notes = h('textarea', { rows: 4, maxlength: 4000 });
  const prefers = who.get(id)?.contact_modes || [];
  const doc = documentationFields(list, { channel: () => new FormData(form).get('channel') });
  const form = h('form', { class: 'card', novalidate: true, id: 'contact-form' },
    formError(),
    field('When', occurred, { name: 'occurred_at', hint: `Your local time. Earlier contacts may be logged late; not before the discharge (${when(referral.discharged_at)}), not in the future.` }),
    choices('How', 'channel', CHANNEL, { checked: [prefers[0] || 'phone'], required: true }),
    choices('What happened', 'outcome', OUTCOME, { required: true }),
    choices('Support given (if you reached them)', 'support_types', SUPPORT, { type: 'checkbox' }),
    goals.length ? choices('Goals this contact worked on', 'goal_ids',
      Object.fromEntries(goals.map((g) => [g.goal_id, g.words ? `“${g.words}”` : 'A goal (words erased)'])), { type: 'checkbox' }) : null,
    doc.nodes,
    field('Notes', notes, { name: 'notes', optional: true, hint: 'What matters for the next contact. Keep clinical details out.' }),
    h('button', { type: 'submit', class: 'primary' }, 'Save contact'));
  main.append(form);
  form.addEventListener('change', doc.sync);
  doc.sync();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const at = new Date(occurred.value);
    if (!occurred.value || Number.isNaN(at.getTime())) return showError(form, 'occurred_at', 'Give the date and time of the contact.');
    if (at.getTime() > Date.now() + 60000) return showError(form, 'occurred_at', 'This time is in the future: log a contact once it has happened.');
    const fd = new FormData(form);
    const outcome = fd.get('outcome');
    if (!outcome) return showError(form, 'outcome', 'Choose what happened.');
    const channel = fd.get('channel') || 'phone';
    const documented = doc.read(form, at, channel, outcome);
    if (!documented) return;
    const body = {
      occurred_at: at.toISOString(),
      channel,
      outcome,
      support_types: fd.getAll('support_types'),
      ...documented,
    };
    if (fd.getAll('goal_ids').length) body.goal_ids = fd.getAll('goal_ids');
    if (notes.value.trim()) body.notes = notes.value.trim();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await post(`/v1/referrals/${encodeURIComponent(id)}/contacts`, body);
      setFlash(`Contact with ${name} saved.`);
      location.hash = `#/person/${id}`;
    } catch (err) {
      showError(form, err.field, err.message);
    } finally {
      button.disabled = false;
    }
  });
  return null;
}
