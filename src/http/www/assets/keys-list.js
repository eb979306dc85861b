// keys-list.js - the table of an account's keys: each key's status and
// expiry, and its "…" menu. At phone width the CSS turns each row into a
// card, with the column names from data-label.

import { h, icon } from './dom.js';
import { formatDate, timeElement } from './format.js';
import { keyMenu } from './keys-menu.js';

const SOON_MS = 7 * 86400 * 1000; // "expiring soon", as the server counts it

function expiresAt(key) {
  return key.expires_at ? Date.parse(key.expires_at) : NaN;
}

// The key's status: the server's, or (from an older server) worked out
// from the same fields the same way.
export function keyStatus(key, now = Date.now()) {
  if (key.status) return key.status;
  const exp = expiresAt(key);
  if (!Number.isNaN(exp) && exp <= now) return 'expired';
  if (key.enabled === false) return 'disabled';
  if (key.rolled_to || (!Number.isNaN(exp) && exp - now <= SOON_MS)) return 'expiring';
  return 'active';
}

// Unexpired and stopping within a week: worth a second look.
function expiresSoon(key, now = Date.now()) {
  const exp = expiresAt(key);
  return !Number.isNaN(exp) && exp > now && exp - now <= SOON_MS;
}

function statusBadge(key, status) {
  switch (status) {
    case 'disabled':
      return h('span', { class: 'badge badge-disabled' }, 'Disabled');
    case 'expired':
      return h('span', { class: 'badge badge-expired' }, 'Expired');
    case 'expiring':
      // The date is in the Expires column, highlighted; the badge stays one short word.
      return h('span', {
        class: 'badge badge-expiring',
        title: key.expires_at ? `Expires ${formatDate(key.expires_at)}` : null,
      }, 'Expiring');
    default:
      return h('span', { class: 'badge badge-active' }, 'Active');
  }
}

function dateCell(iso, label) {
  if (!iso) return h('td', { 'data-label': label }, h('span', { class: 'muted' }, 'Never'));
  return h('td', { 'data-label': label }, timeElement(iso));
}

function expiryCell(key) {
  if (!key.expires_at) return dateCell(null, 'Expires');
  const soon = expiresSoon(key);
  return h('td', { 'data-label': 'Expires', class: soon ? 'expiry-soon' : null },
    h('span', { class: 'expiry' }, soon ? icon('warning') : null, timeElement(key.expires_at)));
}

// A line under the name that says how it relates to a roll.
function rollNote(key) {
  if (key.rolled_to) return h('span', { class: 'key-note muted' }, 'Replaced by a new key');
  if (key.rolled_from) return h('span', { class: 'key-note muted' }, 'Replaces a rolled key');
  return null;
}

// Returns {element, render(keys)}. onAction(action, key, opener) runs when
// an entry of a row's menu is chosen ("roll", "disable", "enable",
// "rename", "delete").
export function keyTable(onAction) {
  const tbody = h('tbody');
  const element = h('div', { class: 'table-wrap', hidden: true },
    h('table', { class: 'keys-table' },
      h('caption', { class: 'visually-hidden' }, 'API keys of this account'),
      h('thead', {},
        h('tr', {},
          h('th', { scope: 'col' }, 'Name'),
          h('th', { scope: 'col' }, 'Status'),
          h('th', { scope: 'col' }, 'Environment'),
          h('th', { scope: 'col' }, 'Key'),
          h('th', { scope: 'col' }, 'Created'),
          h('th', { scope: 'col' }, 'Last used'),
          h('th', { scope: 'col' }, 'Expires'),
          h('th', { scope: 'col', class: 'actions-col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
      tbody));

  function row(key) {
    const status = keyStatus(key);
    return h('tr', { class: `key-row key-${status}` },
      h('td', { 'data-label': 'Name', class: 'key-name' }, h('span', {}, key.name), rollNote(key)),
      h('td', { 'data-label': 'Status', class: 'key-status' }, statusBadge(key, status)),
      h('td', { 'data-label': 'Environment' },
        h('span', { class: `badge badge-${key.environment === 'production' ? 'production' : 'other'}` }, key.environment)),
      h('td', { 'data-label': 'Key' }, h('code', { class: 'mono masked' }, key.masked)),
      dateCell(key.created_at, 'Created'),
      dateCell(key.last_used_at, 'Last used'),
      expiryCell(key),
      h('td', { class: 'actions' }, keyMenu(key, status, onAction)));
  }

  function render(keys) {
    // A row's menu button that had focus gets it back in the new row, so
    // that a keyboard user stays on the key they were working on.
    const focused = document.activeElement;
    const focusedKey = focused && element.contains(focused) ? focused.getAttribute('data-key-id') : null;
    tbody.replaceChildren(...keys.map(row));
    if (focusedKey) {
      const again = [...tbody.querySelectorAll('[data-key-id]')].find((b) => b.getAttribute('data-key-id') === focusedKey);
      if (again) again.focus();
    }
  }

  return { element, render };
}
