// keys-action.js - what the pop-ups of a key's "…" menu share: running the
// request while the pop-up is busy, saying why it failed, and the plain
// confirmation pop-up (a consequence, Cancel and one button).

import { describeError } from './api.js';
import { h, icon, showMessage, newId } from './dom.js';
import { openDialog, dialogActions } from './dialogs.js';

// Runs send() with the pop-up busy and `controls` disabled. Resolves with
// its answer, or undefined when it failed: the reason is then in `alert`,
// or the session had ended and the pop-up is closed. `what` names the
// action for the message ("disable the key").
export async function runKeyAction(page, dlg, { alert, controls, what, send }) {
  showMessage(alert, '');
  dlg.setBusy(true);
  controls.forEach((c) => { c.disabled = true; });
  try {
    return await send();
  } catch (err) {
    if (page.handleAuth(err)) {
      dlg.close({ focus: null });
      return undefined;
    }
    showMessage(alert, describeError(err, what));
    // Gone or changed meanwhile: the list shows how it is now.
    if (err.status === 404 || err.status === 409) page.load();
    return undefined;
  } finally {
    dlg.setBusy(false);
    controls.forEach((c) => { c.disabled = false; });
  }
}

// A confirmation pop-up for one key. options: title, consequence (nodes:
// what happens), confirmLabel, danger (a red button), what, send()
// (the request), done(answer) (the status line after it).
export function openConfirm(page, key, opener, options) {
  page.status.textContent = '';
  const alert = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const textId = newId('confirm-text');
  const cancel = h('button', { type: 'button', class: 'button', autofocus: true }, 'Cancel');
  const confirm = h('button', { type: 'button', class: `button ${options.danger ? 'button-danger' : 'button-primary'}` },
    options.confirmLabel);

  const dlg = openDialog({
    title: options.title,
    describedBy: textId,
    opener,
    fallback: page.focusAfterChange,
    body: () => [
      h('div', { class: `callout ${options.danger ? 'callout-danger' : 'callout-info'}` },
        icon(options.danger ? 'warning' : 'shield'),
        h('p', { id: textId }, ...options.consequence)),
      alert,
      dialogActions(cancel, confirm),
    ],
  });
  cancel.addEventListener('click', () => dlg.close());
  confirm.addEventListener('click', async () => {
    if (dlg.busy) return;
    const answer = await runKeyAction(page, dlg, {
      alert, controls: [cancel, confirm], what: options.what, send: options.send,
    });
    if (answer === undefined) {
      if (dlg.dialog.open) confirm.focus();
      return;
    }
    page.status.textContent = options.done(answer);
    dlg.close();
    page.load();
  });
  return dlg;
}

// "the key Production CRM (kw_production_AbCd…wxyz)", as the pop-ups name it.
export function keyLabel(key) {
  return [h('strong', {}, key.name), ' (', h('code', { class: 'mono' }, key.masked), ')'];
}
