// integrations.js - the Account Integrations page: one tile per
// integration the account can set up.

import { h, icon } from './dom.js';

const TILES = [
  {
    href: '/settings/integrations/api',
    title: 'APIs & Webhooks',
    description: 'Create and manage the API keys of your account',
    icon: 'key',
  },
];

export function renderIntegrations(main) {
  const grid = h('ul', { class: 'tiles' });
  TILES.forEach((tile, i) => {
    const titleId = `tile-title-${i}`;
    const descId = `tile-desc-${i}`;
    grid.append(
      h('li', {},
        h('a', { class: 'tile card', href: tile.href, 'aria-labelledby': titleId, 'aria-describedby': descId },
          h('span', { class: 'tile-icon' }, icon(tile.icon)),
          h('span', { class: 'tile-text' },
            h('span', { class: 'tile-title', id: titleId }, tile.title),
            h('span', { class: 'tile-desc', id: descId }, tile.description)),
          icon('chevron', 'icon tile-chevron'))),
    );
  });
  main.append(
    h('div', { class: 'page-head' },
      h('h1', { tabindex: '-1' }, 'Account Integrations'),
      h('p', { class: 'muted' }, 'Connect your account to your own applications and to other services.')),
    grid,
  );
}
