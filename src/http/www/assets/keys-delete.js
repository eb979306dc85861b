// keys-delete.js - the Delete Key pop-up.

import { deleteKey, describeError } from './api.js';
import { h, icon, showMessage, newId } from './dom.js';
import { openDialog, dialogActions } from './dialogs.js';

export function openDelete(page, key, opener) {
  page.status.textContent = '';
  const alert = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const textId = newId('delete-text');
  const cancel = h('button', { type: 'button', class: 'button', autofocus: true }, 'Cancel');
  const confirm = h('button', { type: 'button', class: 'button button-danger' }, 'Delete key');

  const dlg = openDialog({
    title: 'Delete Key',
    describedBy: textId,
    opener,
    fallback: page.focusAfterChange,
    body: () => [
      h('div', { class: 'callout callout-danger' },
        icon('warning'),
        h('p', { id: textId },
          'You are about to permanently delete the key ', h('strong', {}, key.name),
          ' (', h('code', { class: 'mono' }, key.masked), '). ',
          'This cannot be undone: any application using this key will immediately lose access.')),
      alert,
      dialogActions(cancel, confirm),
    ],
  });
  cancel.addEventListener('click', () => dlg.close());
  confirm.addEventListener('click', async () => {
    if (dlg.busy) return;
    showMessage(alert, '');
    dlg.setBusy(true);
    confirm.disabled = true;
    cancel.disabled = true;
    try {
      await deleteKey(key.id);
      page.status.textContent = `Deleted the key “${key.name}”.`;
    } catch (err) {
      dlg.setBusy(false);
      confirm.disabled = false;
      cancel.disabled = false;
      if (page.handleAuth(err)) {
        dlg.close({ focus: null });
        return;
      }
      if (err.status !== 404) {
        showMessage(alert, describeError(err, 'delete the key'));
        confirm.focus();
        return;
      }
      page.status.textContent = `The key “${key.name}” had already been deleted.`;
    }
    dlg.setBusy(false);
    // The row is about to go: focus moves on to a control that stays.
    dlg.close({ focus: page.focusAfterChange() });
    page.load();
  });
}
