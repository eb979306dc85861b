// keys-list.js - the table of an account's keys. At phone width the CSS
// turns each row into a card, with the column names from data-label.

import { h } from './dom.js';
import { formatDate, timeElement } from './format.js';

function dateCell(iso, label) {
  if (!iso) return h('td', { 'data-label': label }, h('span', { class: 'muted' }, 'Never'));
  return h('td', { 'data-label': label }, timeElement(iso));
}

// Returns {element, render(keys)}. actions.onDelete(key, opener) runs when
// a row's Delete is chosen.
export function keyTable(actions) {
  const tbody = h('tbody');
  const element = h('div', { class: 'table-wrap', hidden: true },
    h('table', { class: 'keys-table' },
      h('caption', { class: 'visually-hidden' }, 'API keys of this account'),
      h('thead', {},
        h('tr', {},
          h('th', { scope: 'col' }, 'Name'),
          h('th', { scope: 'col' }, 'Environment'),
          h('th', { scope: 'col' }, 'Key'),
          h('th', { scope: 'col' }, 'Created'),
          h('th', { scope: 'col' }, 'Last used'),
          h('th', { scope: 'col', class: 'actions-col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
      tbody));

  function row(key) {
    const del = h('button', { type: 'button', class: 'link-button link-danger', 'aria-label': `Delete ${key.name}` }, 'Delete');
    del.addEventListener('click', () => actions.onDelete(key, del));
    return h('tr', {},
      h('td', { 'data-label': 'Name', class: 'key-name' },
        h('span', {}, key.name),
        key.expires_at ? h('span', { class: 'key-expiry muted' }, 'Expires ', formatDate(key.expires_at)) : null),
      h('td', { 'data-label': 'Environment' },
        h('span', { class: `badge badge-${key.environment === 'production' ? 'production' : 'other'}` }, key.environment)),
      h('td', { 'data-label': 'Key' }, h('code', { class: 'mono masked' }, key.masked)),
      dateCell(key.created_at, 'Created'),
      dateCell(key.last_used_at, 'Last used'),
      h('td', { class: 'actions' }, del));
  }

  function render(keys) {
    tbody.replaceChildren(...keys.map(row));
  }

  return { element, render };
}
