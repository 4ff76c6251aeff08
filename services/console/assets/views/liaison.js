// The hospital liaison's screen: their facility's referrals and webhook deliveries.

import { h, clear, badge, when, personName, statusWords } from '../ui.js';
import { get, people, session } from '../api.js';
import { facilityNames } from './coordinator.js';
import { deliveriesTable } from './admin.js';

export async function facility(main) {
  const mine = session.user.facility;
  const names = await facilityNames();
  main.append(h('h1', {}, `${names.get(mine) || mine}: referrals`),
    h('p', { class: 'hint' }, 'The people your facility referred, and where each referral stands.'));
  const box = h('div', { id: 'facility' });
  main.append(box);
  const draw = async () => {
    const [{ items }, deliveries] = await Promise.all([
      get('/v1/referrals?limit=500'),
      get(`/v1/facilities/${encodeURIComponent(mine)}/webhook/deliveries?limit=50`),
    ]);
    items.sort((a, b) => b.discharged_at.localeCompare(a.discharged_at));
    const who = items.length ? await people(items.slice(0, 200).map((r) => r.referral_id)) : new Map();
    clear(box,
      h('h2', {}, `Referrals (${items.length}), latest discharge first`),
      items.length
        ? h('ul', { class: 'cards', 'aria-label': 'Referrals' }, items.slice(0, 200).map((r) => h('li', { class: 'card', 'data-referral': r.referral_id },
          h('h3', {}, personName(who.get(r.referral_id))),
          h('p', {}, badge(statusWords(r.status)), r.overdue ? [' ', badge('overdue', 'late')] : null),
          r.status_reason ? h('p', { class: 'note' }, `Why: ${r.status_reason}`) : null,
          h('dl', { class: 'facts' },
            h('dt', {}, 'Discharged'), h('dd', {}, when(r.discharged_at)),
            h('dt', {}, 'Last change'), h('dd', {}, when(r.updated_at))))))
        : h('p', { id: 'no-referrals' }, 'No referrals from your facility yet.'),
      h('h2', {}, 'Webhook deliveries'),
      deliveriesTable(deliveries.items));
  };
  await draw();
  return draw;
}
