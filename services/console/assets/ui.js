// Small DOM and wording helpers. Text goes in as text nodes, never as HTML.

export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k === 'for') el.htmlFor = v;
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
export const nextId = (p = 'f') => `${p}-${++uid}`;

// ---- words ----

export const STATUS = {
  requested: 'Sent by the hospital',
  received: 'Received, not yet accepted',
  accepted: 'Accepted, peer assigned',
  'in-progress': 'In progress, person reached',
  'on-hold': 'On hold',
  rejected: 'Rejected',
  cancelled: 'Cancelled',
  failed: 'Could not be reached',
  completed: 'Completed',
  'entered-in-error': 'Entered in error',
};
export const statusWords = (s) => STATUS[s] || s;

export const PRIORITY = { asap: 'As soon as possible', urgent: 'Urgent', routine: 'Routine' };
export const CHANNEL = { phone: 'Phone', in_person: 'In person', video: 'Video', text: 'Text message' };
export const OUTCOME = {
  reached: 'Reached the person',
  no_answer: 'No answer',
  left_message: 'Left a message',
  declined: 'Person declined',
  unreachable: 'Could not reach (wrong number, moved)',
};
export const SUPPORT = {
  emotional: 'Emotional',
  informational: 'Informational',
  instrumental: 'Practical (instrumental)',
  affiliational: 'Connecting with others (affiliational)',
};
export const PLACE = { home: 'At their home', community: 'In the community', clinic: 'At a clinic' };
export const GOAL_STATUS = { progress: 'Working on it', met: 'Met', set_aside: 'Set aside' };
export const GOAL_REVIEW = { progress: 'Progress', met: 'Met', changed: 'Changed in their words', set_aside: 'Set aside' };
/// What the common billing modifiers mean (a state's manual may define more).
export const MODIFIER = {
  HE: 'mental health program', HQ: 'group setting', GT: 'telehealth, audio and video', 95: 'telehealth, real-time audio and video',
  U1: 'state-defined level 1', U2: 'state-defined level 2', U3: 'state-defined level 3', U4: 'state-defined level 4',
};
export const LANGUAGE = { en: 'English', es: 'Spanish', zh: 'Chinese', fr: 'French', vi: 'Vietnamese', ar: 'Arabic', so: 'Somali', ru: 'Russian' };
export const languageWords = (l) => LANGUAGE[l] || l || 'not stated';
export const modesWords = (m) => (m && m.length ? m.map((x) => CHANNEL[x] || x).join(', ') : 'no preference');

export function checkpointWords(name) {
  if (!name) return 'No check-in left';
  if (name === 'first_contact') return 'First contact';
  const caring = /^caring_(\d+)$/.exec(name);
  if (caring) return `Caring contact ${caring[1]}`;
  const m = /^day_(\d+)$/.exec(name);
  return m ? `Day ${m[1]} check-in` : name.replace(/_/g, ' ');
}

export function personName(p) {
  const n = p && p.name;
  if (!n) return 'Name not on record';
  const full = [n.given, n.family].filter(Boolean).join(' ');
  return n.preferred && n.preferred !== n.given ? `${n.preferred} (${full})` : full;
}

// ---- time ----

const dateFmt = new Intl.DateTimeFormat('en-US', { dateStyle: 'medium', timeStyle: 'short' });
const dayFmt = new Intl.DateTimeFormat('en-US', { dateStyle: 'medium' });
export const when = (iso) => (iso ? dateFmt.format(new Date(iso)) : '—');
export const day = (iso) => (iso ? dayFmt.format(new Date(iso)) : '—');

export function span(ms) {
  const m = Math.round(Math.abs(ms) / 60000);
  if (m < 60) return `${m} min`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60} min`;
  const d = Math.floor(hrs / 24);
  return `${d} days ${hrs % 24} h`;
}

/// "due in 3 h 5 min" / "overdue by 2 days 1 h", and whether it is overdue.
export function clock(iso, now = Date.now()) {
  if (!iso) return { text: 'nothing due', overdue: false };
  const d = new Date(iso).getTime() - now;
  return d >= 0
    ? { text: `due in ${span(d)}`, overdue: false }
    : { text: `overdue by ${span(d)}`, overdue: true };
}

export function seconds(s) {
  if (s === null || s === undefined) return '—';
  return span(s * 1000);
}

export const pct = (r) => (r === null || r === undefined ? '—' : `${Math.round(r * 1000) / 10}%`);

/// A `datetime-local` value for a time (local clock).
export function localInput(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

// ---- pieces ----

export function badge(text, kind = '') {
  return h('span', { class: `badge ${kind}` }, text);
}

export function dueBadge(iso) {
  const c = clock(iso);
  const b = badge(c.text, c.overdue ? 'late' : 'due');
  if (iso) b.dataset.due = iso;
  return b;
}

export function field(label, control, opts = {}) {
  const id = control.id || (control.id = nextId());
  const errId = `${id}-error`;
  const hint = opts.hint ? h('p', { class: 'hint', id: `${id}-hint` }, opts.hint) : null;
  const describedBy = [hint && `${id}-hint`, errId].filter(Boolean).join(' ');
  control.setAttribute('aria-describedby', describedBy);
  if (opts.name) control.name = opts.name;
  return h('div', { class: 'field', 'data-field': opts.name || '' },
    h('label', { for: id }, label, opts.optional ? h('span', { class: 'opt' }, ' (optional)') : null),
    hint, control,
    h('p', { class: 'error', id: errId, 'aria-live': 'polite' }));
}

/// A group of radios or checkboxes in a fieldset (`options`: {value: label}, or
/// [[value, label]] to keep an order of number-like values).
export function choices(legend, name, options, { type = 'radio', checked = [], required = false } = {}) {
  const errId = nextId('err');
  return h('fieldset', { class: 'choices', 'data-field': name, 'aria-describedby': errId },
    h('legend', {}, legend),
    (Array.isArray(options) ? options : Object.entries(options)).map(([value, label]) => {
      const id = nextId();
      return h('div', { class: 'choice' },
        h('input', { type, id, name, value, checked: checked.includes(value), required: required && type === 'radio' }),
        h('label', { for: id }, label));
    }),
    h('p', { class: 'error', id: errId, 'aria-live': 'polite' }));
}

/// Shows `message` next to the form's control `name` (or at the form's top).
const FIELD_WORDS = {
  occurred_at: 'This time', duration_minutes: 'The minutes', reason: 'The reason', name: 'The name',
  max_caseload: 'The number', url: 'The URL', secret: 'The secret', languages: 'The languages',
  ended_at: 'The end time', words: 'The words', text: 'The addendum', from: 'The first day', to: 'The last day',
};

export function showError(form, name, message) {
  if (name) name = name.replace(/^body\./, '');
  // The API names the field first ("occurred_at is before the discharge"): say it in words.
  if (name && message && message.startsWith(`${name} `)) message = `${FIELD_WORDS[name] || 'This'}${message.slice(name.length)}`;
  // `billing.service_code` or `goal_ids[1]`: the field itself, else the group holding it.
  const at = (n) => form.querySelector(`[data-field="${CSS.escape(n)}"]`);
  const box = name && (at(name) || at(name.split(/[.[]/)[0]));
  const target = box ? box.querySelector('.error') : form.querySelector('.form-error');
  if (target) target.textContent = message;
  if (box) {
    box.classList.add('invalid');
    const c = box.querySelector('input, select, textarea');
    if (c) {
      c.setAttribute('aria-invalid', 'true');
      c.focus();
    }
  } else if (target) {
    target.focus?.();
  }
}

export function clearErrors(form) {
  form.querySelectorAll('.error, .form-error').forEach((e) => (e.textContent = ''));
  form.querySelectorAll('.invalid').forEach((e) => e.classList.remove('invalid'));
  form.querySelectorAll('[aria-invalid]').forEach((e) => e.removeAttribute('aria-invalid'));
}

/// One checkbox, its label after it (an attestation, a yes or no).
export function tick(label, name, { checked = false } = {}) {
  const id = nextId();
  return h('div', { class: 'field', 'data-field': name },
    h('div', { class: 'choice' },
      h('input', { type: 'checkbox', id, name, value: 'yes', checked, 'aria-describedby': `${id}-error` }),
      h('label', { for: id }, label)),
    h('p', { class: 'error', id: `${id}-error`, 'aria-live': 'polite' }));
}

export function formError() {
  return h('p', { class: 'form-error', role: 'alert', tabindex: '-1' });
}

export function notice(text, kind = 'info') {
  return h('p', { class: `notice ${kind}`, role: kind === 'bad' ? 'alert' : 'status' }, text);
}

/// A table that scrolls sideways on a narrow screen (and can be reached by keyboard).
export function table(caption, heads, rows) {
  return h('div', { class: 'scroll', role: 'region', 'aria-label': caption, tabindex: '0' },
    h('table', {},
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, heads.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.length
        ? rows.map((r) => h('tr', {}, r.map((c, i) => (i === 0 ? h('th', { scope: 'row' }, c) : h('td', {}, c)))))
        : h('tr', {}, h('td', { colspan: heads.length }, 'Nothing here yet.')))));
}

/// A horizontal bar chart (SVG): [{label, value, max, text}]
export function bars(title, items) {
  const rowH = 34;
  const width = 320;
  const svg = h('svg:svg', {
    viewBox: `0 0 ${width} ${Math.max(1, items.length) * rowH}`, role: 'img',
    'aria-label': `${title}: ${items.map((i) => `${i.label} ${i.text}`).join('; ')}`,
    class: 'chart',
  });
  items.forEach((it, n) => {
    const y = n * rowH;
    const w = it.max ? Math.max(0, Math.min(1, it.value / it.max)) * (width - 130) : 0;
    svg.append(
      h('svg:text', { x: 0, y: y + 14, class: 'chart-label' }, it.label),
      h('svg:rect', { x: 0, y: y + 18, width: width - 130, height: 10, class: 'chart-track' }),
      h('svg:rect', { x: 0, y: y + 18, width: w, height: 10, class: 'chart-bar' }),
      h('svg:text', { x: width - 124, y: y + 28, class: 'chart-value' }, it.text),
    );
  });
  return h('figure', { class: 'figure' }, h('figcaption', {}, title), svg);
}
