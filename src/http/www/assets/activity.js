// activity.js - the Activity section: what was done to the account's keys
// and console sessions, newest first, one page at a time ("Load more"
// follows the server's cursor). Entries name keys, never hold a secret.

import { listAudit, currentSession, describeError } from './api.js';
import { h, showMessage } from './dom.js';
import { timeElement } from './format.js';

const PAGE_SIZE = 20;

const ACTIONS = {
  'key.create': 'Created a key',
  'key.roll': 'Rolled a key',
  'key.disable': 'Disabled a key',
  'key.enable': 'Enabled a key',
  'key.rename': 'Renamed a key',
  'key.expiry': 'Changed a key’s expiry',
  'key.metadata': 'Changed a key’s metadata',
  'key.update': 'Updated a key',
  'key.delete': 'Deleted a key',
  'key.revoke': 'Revoked a key',
  'session.create': 'Signed in',
  'session.delete': 'Signed out',
};

// "user:usr_…" is the signed-in admin's email when it is them; a root key
// and anything else show as the server wrote them.
function who(actor) {
  const s = currentSession();
  if (s && actor === `user:${s.user.id}`) return s.user.email;
  if (typeof actor === 'string' && actor.startsWith('root_key:')) return `Root key ${actor.slice('root_key:'.length)}`;
  return actor || '—';
}

function entryRow(entry) {
  const what = ACTIONS[entry.action] || entry.action;
  return h('tr', {},
    h('td', { 'data-label': 'Time' }, entry.at ? timeElement(entry.at) : '—'),
    h('td', { 'data-label': 'Who', class: 'activity-who' }, h('span', {}, who(entry.actor))),
    h('td', { 'data-label': 'What' }, h('span', { title: entry.action }, what)),
    h('td', { 'data-label': 'Key' }, entry.key_name ? h('span', {}, entry.key_name) : h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Source IP' },
      entry.source_ip ? h('code', { class: 'mono' }, entry.source_ip) : h('span', { class: 'muted' }, '—')));
}

// Returns {element, reload()}. ctx.handleAuth(err) is true when the
// session had ended (and has been dealt with).
export function activitySection(ctx) {
  let cursor = null;
  let seq = 0;
  const tbody = h('tbody');
  const table = h('div', { class: 'table-wrap', hidden: true },
    h('table', { class: 'keys-table activity-table' },
      h('caption', { class: 'visually-hidden' }, 'Activity of this account, newest first'),
      h('thead', {},
        h('tr', {},
          h('th', { scope: 'col' }, 'Time'),
          h('th', { scope: 'col' }, 'Who'),
          h('th', { scope: 'col' }, 'What'),
          h('th', { scope: 'col' }, 'Key'),
          h('th', { scope: 'col' }, 'Source IP'))),
      tbody));
  const empty = h('p', { class: 'muted activity-empty', hidden: true }, 'Nothing has happened yet.');
  const loading = h('p', { class: 'muted loading' }, 'Loading activity…');
  const error = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const more = h('button', { type: 'button', class: 'button', hidden: true }, 'Load more');
  const element = h('section', { class: 'card activity-card', 'aria-labelledby': 'activity-title' },
    h('div', { class: 'card-head' },
      h('h2', { id: 'activity-title', tabindex: '-1' }, 'Activity'),
      h('p', { class: 'muted' }, 'Who did what to your keys, and from where. Newest first.')),
    error,
    loading,
    table,
    empty,
    h('div', { class: 'activity-more' }, more));

  // `append`: the next page goes below the rows shown; otherwise they are
  // replaced by the newest page.
  async function fetchPage(append) {
    const mine = ++seq;
    more.disabled = true;
    try {
      const data = await listAudit(PAGE_SIZE, append ? cursor : null);
      if (mine !== seq || !element.isConnected) return;
      const entries = Array.isArray(data.entries) ? data.entries : [];
      const rows = entries.map(entryRow);
      if (append) tbody.append(...rows);
      else tbody.replaceChildren(...rows);
      cursor = data.next_cursor || null;
      showMessage(error, '');
      loading.hidden = true;
      table.hidden = tbody.children.length === 0;
      empty.hidden = tbody.children.length !== 0;
      more.hidden = !cursor;
      // After Load more, focus goes to the first new entry: on the last
      // page the button hides, and focus would otherwise fall to the page.
      if (append && rows.length) {
        rows[0].setAttribute('tabindex', '-1');
        rows[0].focus();
      }
    } catch (err) {
      if (mine !== seq || !element.isConnected || ctx.handleAuth(err)) return;
      loading.hidden = true;
      error.replaceChildren(
        h('span', {}, describeError(err, 'load the activity')),
        h('button', { type: 'button', class: 'link-button', onclick: () => fetchPage(append) }, 'Try again'));
      error.hidden = false;
    } finally {
      if (mine === seq) more.disabled = false;
    }
  }

  more.addEventListener('click', () => fetchPage(true));
  fetchPage(false);
  return { element, reload: () => fetchPage(false) };
}
