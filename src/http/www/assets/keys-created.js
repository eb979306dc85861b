// keys-created.js - the pop-up that shows a new key's secret, once.
//
// The secret lives only in this function's closure and in the pop-up's
// field; both are emptied and the pop-up is removed from the page the
// moment it closes, whichever way it closes.

import { h, icon, showMessage, newId } from './dom.js';
import { openDialog, dialogActions } from './dialogs.js';

// `result` is the POST answer {key, secret}; the secret is taken out of it
// here. options.opener: where focus returns (default: Create API key);
// options.note: a sentence below the first (a roll says when the old key
// stops); options.done: the status line once it closes.
export function openCreated(page, result, options = {}) {
  let secret = result.secret;
  result.secret = undefined;
  const key = result.key || {};
  const fieldId = newId('secret');
  const warningId = newId('secret-warning');
  const alert = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  // A textarea, so that the whole key wraps into view at any width.
  const field = h('textarea', {
    id: fieldId, readonly: true, rows: '2', class: 'mono secret-field', autocomplete: 'off',
    spellcheck: 'false', autocapitalize: 'none', autofocus: true, 'aria-describedby': warningId,
  });
  field.value = secret; // the property, never the attribute
  field.addEventListener('focus', () => field.select());
  field.addEventListener('click', () => field.select());
  const closeButton = h('button', { type: 'button', class: 'button', hidden: true }, 'Close');
  const copy = h('button', { type: 'button', class: 'button button-primary' }, 'Copy & close');

  const dlg = openDialog({
    title: 'API Key Created Successfully',
    className: 'dialog-created',
    opener: options.opener || page.createButton,
    fallback: () => page.heading,
    onClose: () => {
      field.value = '';
      secret = null;
      page.status.textContent = options.done || `Created the key “${key.name || ''}”.`;
      page.load();
    },
    body: () => [
      h('p', {}, 'Your new key ', h('strong', {}, key.name || ''), key.environment ? ` (${key.environment})` : '', ' is ready.'),
      options.note ? h('p', {}, options.note) : null,
      h('div', { class: 'field' }, h('label', { for: fieldId }, 'Your API key'), field),
      h('div', { class: 'callout callout-warning', id: warningId },
        icon('warning'),
        h('p', {}, h('strong', {}, 'For security reasons, this key will only be displayed once. Copy it now and store it in a secure location.'))),
      alert,
      dialogActions(closeButton, copy),
    ],
  });

  closeButton.addEventListener('click', () => dlg.close());
  copy.addEventListener('click', async () => {
    showMessage(alert, '');
    if (await copyText(secret, field)) {
      dlg.close();
      return;
    }
    showMessage(alert,
      'The key could not be copied to the clipboard. Select it in the field above and copy it yourself (Ctrl+C, or ⌘C on a Mac), then close this pop-up.');
    closeButton.hidden = false;
    field.focus();
  });
}

// Resolves true once `text` is on the clipboard.
async function copyText(text, field) {
  if (navigator.clipboard && navigator.clipboard.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      return false;
    }
  }
  // No Clipboard API (a page not served over HTTPS): the older way.
  field.focus();
  field.select();
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  }
}
