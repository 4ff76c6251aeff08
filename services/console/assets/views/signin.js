// Sign-in: the organisation's OpenID provider, or in `careloop dev` a demo person.

import { h, notice } from '../ui.js';
import { session } from '../api.js';
import { signedIn } from '../app.js';

const ROLE = {
  coordinator: ['Coordinators', 'Triage referrals, review matches, work the overdue list.'],
  peer: ['Peer support specialists', 'See whom to reach today and log each contact.'],
  admin: ['Administrators', 'Continuity of care, backbone health, webhooks.'],
  hospital: ['Hospital liaisons', "Your facility's referrals and where each stands."],
};

export async function signIn(main) {
  main.append(h('h1', {}, 'Sign in to careloop'));
  const ways = session.ways || {};
  if (ways.oidc) {
    main.append(h('p', {}, h('a', { class: 'button primary', href: '/session/login?return_to=/' }, 'Sign in with your organisation account')));
  }
  if (!ways.dev) {
    if (!ways.oidc) main.append(notice('No way to sign in is configured. Ask an administrator.', 'bad'));
    return;
  }
  main.append(notice('Development mode: pick a demo person. Never use this with real people’s information.', 'warn'));
  const status = h('p', { class: 'form-error', role: 'alert' });
  main.append(status);
  const r = await fetch('/session/dev-people', { cache: 'no-store' });
  const { people = [] } = r.ok ? await r.json() : {};
  for (const role of ['coordinator', 'peer', 'admin', 'hospital']) {
    const mine = people.filter((p) => p.role === role);
    if (!mine.length) continue;
    main.append(h('section', { class: 'card' },
      h('h2', {}, ROLE[role][0]),
      h('p', { class: 'hint' }, ROLE[role][1]),
      h('ul', { class: 'plain' }, mine.map((p) => h('li', {},
        h('button', {
          type: 'button', class: 'wide', 'data-sub': p.sub,
          onclick: async (e) => {
            const b = e.currentTarget;
            b.disabled = true;
            status.textContent = '';
            const res = await fetch('/session/dev', {
              method: 'POST', headers: { 'Content-Type': 'application/json' },
              body: JSON.stringify({ sub: p.sub }), credentials: 'same-origin',
            });
            b.disabled = false;
            if (!res.ok) {
              status.textContent = 'Sign-in did not work. Try again.';
              return;
            }
            await signedIn();
          },
        }, `Sign in as ${p.name || p.sub}`))))));
  }
}
