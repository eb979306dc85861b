// keys-revoke.js - the Danger zone section and its Revoke All Keys pop-up:
// every key of the account, or of one environment, deleted at once (after
// a leak, say). The admin confirms by typing the account's name, so that
// the button cannot be pressed on autopilot.

import { getAccount, currentSession, revokeAllKeys, describeError } from './api.js';
import { h, icon, showMessage, newId } from './dom.js';
import { openDialog, dialogActions } from './dialogs.js';

const SCOPES = [
  { value: '', label: 'All environments' },
  { value: 'production', label: 'production' },
  { value: 'staging', label: 'staging' },
];

// What the admin types: the account's name, or where the session may not
// read the account, its id (what the session itself gives).
async function confirmWord() {
  try {
    const account = await getAccount();
    if (account && typeof account.name === 'string' && account.name) return account.name;
  } catch (err) {
    if (err.status === 401) throw err;
  }
  return currentSession().user.account_id;
}

export function revokedText(n) {
  return `${n} key${n === 1 ? '' : 's'} revoked.`;
}

// Returns the section. `page` is the API Keys section's context (keys.js).
export function dangerZone(page) {
  const button = h('button', { type: 'button', class: 'button button-danger-outline', id: 'revoke-all' }, 'Revoke all keys…');
  button.addEventListener('click', () => openRevokeAll(page, button));
  return h('section', { class: 'card danger-card', 'aria-labelledby': 'danger-zone-title' },
    h('div', { class: 'danger-row' },
      h('div', { class: 'danger-text' },
        h('h2', { id: 'danger-zone-title' }, 'Danger zone'),
        h('p', { class: 'muted' },
          'Revoke every key of this account, or of one environment, at once: for example when keys may have leaked. ',
          'Applications using them lose access immediately. This cannot be undone.')),
      button));
}

async function openRevokeAll(page, opener) {
  page.status.textContent = '';
  let word;
  opener.disabled = true;
  try {
    word = await confirmWord();
  } catch (err) {
    page.handleAuth(err);
    return;
  } finally {
    opener.disabled = false;
  }
  if (!opener.isConnected) return;

  const alert = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const scopeId = newId('revoke-scope');
  const typedId = newId('revoke-typed');
  const textId = newId('revoke-text');
  const scope = h('select', { id: scopeId, name: 'environment', autofocus: true },
    SCOPES.map((s) => h('option', { value: s.value }, s.label)));
  const typed = h('input', {
    id: typedId, name: 'confirm', type: 'text', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'none',
  });
  const which = h('strong');
  const cancel = h('button', { type: 'button', class: 'button' }, 'Cancel');
  const confirm = h('button', { type: 'submit', class: 'button button-danger', disabled: true }, 'Revoke keys');
  const update = () => {
    which.textContent = scope.value ? `every ${scope.value} key` : 'every key';
    confirm.disabled = typed.value.trim() !== word;
  };
  scope.addEventListener('change', update);
  typed.addEventListener('input', update);
  update();

  const dlg = openDialog({
    title: 'Revoke All Keys',
    describedBy: textId,
    opener,
    fallback: () => page.heading,
    body: () => [
      h('form', { class: 'dialog-form', novalidate: true },
        h('div', { class: 'field' }, h('label', { for: scopeId }, 'Environment'), scope),
        h('div', { class: 'callout callout-danger' },
          icon('warning'),
          h('p', { id: textId },
            'You are about to permanently delete ', which, ' of this account. ',
            'Applications using them lose access immediately. This cannot be undone.')),
        h('div', { class: 'field' },
          h('label', { for: typedId }, 'Type ', h('strong', { class: 'confirm-word' }, word), ' to confirm'),
          typed),
        alert,
        dialogActions(cancel, confirm)),
    ],
  });
  cancel.addEventListener('click', () => dlg.close());
  dlg.dialog.querySelector('form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (dlg.busy || typed.value.trim() !== word) return;
    showMessage(alert, '');
    dlg.setBusy(true);
    [cancel, confirm, scope, typed].forEach((c) => { c.disabled = true; });
    let answer;
    try {
      answer = await revokeAllKeys(scope.value || undefined);
    } catch (err) {
      dlg.setBusy(false);
      [cancel, scope, typed].forEach((c) => { c.disabled = false; });
      update();
      if (page.handleAuth(err)) {
        dlg.close({ focus: null });
        return;
      }
      showMessage(alert, describeError(err, 'revoke the keys'));
      if (dlg.dialog.open) typed.focus();
      return;
    }
    dlg.setBusy(false);
    page.status.textContent = revokedText(Number(answer && answer.revoked) || 0);
    dlg.close({ focus: page.focusAfterChange() });
    page.load();
    page.status.scrollIntoView({ block: 'nearest' });
  });
}
