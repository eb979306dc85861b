// keys-create.js - the Create API key pop-up. On success it hands the new
// key and its secret straight to the Created pop-up (keys-created.js).

import { createKey, describeError } from './api.js';
import { h, showMessage, newId } from './dom.js';
import { openDialog, dialogActions } from './dialogs.js';
import { openCreated } from './keys-created.js';
import { nameField, expiryField } from './keys-fields.js';

const ENVIRONMENTS = ['production', 'staging'];

export function limitText(limit) {
  return `You have reached the limit of ${limit} active keys. Delete a key to create a new one.`;
}

// `page` is the API Keys section's context (keys.js).
export function openCreate(page) {
  page.status.textContent = '';
  const alert = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const envId = newId('key-env');
  const name = nameField();
  const expiry = expiryField();
  const env = h('select', { id: envId, name: 'environment' },
    ENVIRONMENTS.map((e) => h('option', { value: e, selected: e === 'production' }, e)));
  const cancel = h('button', { type: 'button', class: 'button' }, 'Cancel');
  const generate = h('button', { type: 'submit', class: 'button button-primary' }, 'Generate key');

  const dlg = openDialog({
    title: 'Create API key',
    opener: page.createButton,
    fallback: () => page.heading,
    body: () => [
      h('form', { class: 'dialog-form', novalidate: true },
        name.element,
        h('div', { class: 'field' }, h('label', { for: envId }, 'Environment'), env),
        expiry.element,
        alert,
        dialogActions(cancel, generate)),
    ],
  });
  cancel.addEventListener('click', () => dlg.close());
  dlg.dialog.querySelector('form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (dlg.busy) return;
    showMessage(alert, '');
    const value = name.check(alert);
    if (value === null) return;
    const expires = expiry.check(alert);
    if (expires === null) return;
    dlg.setBusy(true);
    generate.disabled = true;
    cancel.disabled = true;
    let result;
    try {
      result = await createKey(value, env.value, expires);
    } catch (err) {
      dlg.setBusy(false);
      generate.disabled = false;
      cancel.disabled = false;
      if (page.handleAuth(err)) {
        dlg.close({ focus: null });
        return;
      }
      if (err.status === 409) {
        showMessage(alert, limitText(page.state().key_limit));
        page.load();
      } else {
        showMessage(alert, describeError(err, 'create the key'));
      }
      if (dlg.dialog.open) name.input.focus();
      return;
    }
    dlg.setBusy(false);
    dlg.close({ focus: null });
    openCreated(page, result);
  });
}
