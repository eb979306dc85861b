// keys-rename.js - the Rename Key pop-up. The name is checked as Create
// checks it (keys-fields.js); the key itself and its secret do not change.

import { updateKey } from './api.js';
import { h, showMessage } from './dom.js';
import { openDialog, dialogActions } from './dialogs.js';
import { nameField } from './keys-fields.js';
import { runKeyAction } from './keys-action.js';

export function openRename(page, key, opener) {
  page.status.textContent = '';
  const alert = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const name = nameField(key.name);
  const cancel = h('button', { type: 'button', class: 'button' }, 'Cancel');
  const save = h('button', { type: 'submit', class: 'button button-primary' }, 'Rename key');

  const dlg = openDialog({
    title: 'Rename Key',
    opener,
    fallback: page.focusAfterChange,
    body: () => [
      h('form', { class: 'dialog-form', novalidate: true },
        h('p', {}, 'The key keeps working as it is: only the name you see here changes.'),
        name.element,
        alert,
        dialogActions(cancel, save)),
    ],
  });
  name.input.select();
  cancel.addEventListener('click', () => dlg.close());
  dlg.dialog.querySelector('form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (dlg.busy) return;
    showMessage(alert, '');
    const value = name.check(alert);
    if (value === null) return;
    if (value === key.name) {
      dlg.close();
      return;
    }
    const answer = await runKeyAction(page, dlg, {
      alert, controls: [cancel, save], what: 'rename the key', send: () => updateKey(key.id, { name: value }),
    });
    if (answer === undefined) {
      if (dlg.dialog.open) name.input.focus();
      return;
    }
    page.status.textContent = `Renamed the key “${key.name}” to “${answer.name || value}”.`;
    dlg.close();
    page.load();
  });
}
