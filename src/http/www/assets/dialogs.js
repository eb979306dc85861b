// dialogs.js - modal pop-ups on the native <dialog>: showModal() keeps
// focus inside and makes the page behind inert, Esc closes, and focus goes
// back to the control that opened the pop-up.

import { h, newId } from './dom.js';

const FOCUSABLE = 'a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"])';

// Opens a modal dialog and returns a handle {dialog, close, setBusy, busy}.
//   title        the dialog's title text (its accessible name)
//   body(handle) returns the nodes below the title; give the element that
//                should have focus first the `autofocus` attribute
//   opener       the element to give focus back to
//   fallback()   returns the element to focus when the opener is gone or
//                disabled
//   onClose()    runs once when the dialog closes, however it closes
// While `busy`, Esc does not close the dialog (a request is running).
export function openDialog({ title, body, opener, fallback, onClose, describedBy, className }) {
  const titleId = newId('dialog-title');
  const handle = { busy: false };
  const dialog = h('dialog', {
    class: 'dialog' + (className ? ' ' + className : ''),
    'aria-labelledby': titleId,
  });
  handle.dialog = dialog;
  // close() gives focus back to the opener; close({focus: el}) to `el`
  // instead, close({focus: null}) to nothing (another dialog takes over).
  let focusTarget;
  handle.close = (options) => {
    if (options && 'focus' in options) focusTarget = options.focus;
    if (dialog.open) dialog.close();
  };
  handle.setBusy = (busy) => {
    handle.busy = busy;
    dialog.setAttribute('aria-busy', busy ? 'true' : 'false');
  };

  // A body may leave a slot null (a sentence only some callers show).
  dialog.append(h('h2', { id: titleId, class: 'dialog-title' }, title), ...body(handle).filter(Boolean));
  if (describedBy) dialog.setAttribute('aria-describedby', describedBy);

  // Tab and Shift+Tab cycle inside the dialog: the page behind is inert,
  // but a browser could otherwise move focus out to its own toolbar.
  dialog.addEventListener('keydown', (event) => {
    if (event.key !== 'Tab') return;
    const focusable = [...dialog.querySelectorAll(FOCUSABLE)].filter(
      (el) => !el.disabled && !el.closest('[hidden]') && el.getClientRects().length > 0,
    );
    if (focusable.length === 0) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (event.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
  dialog.addEventListener('cancel', (event) => {
    if (handle.busy) event.preventDefault();
  });
  dialog.addEventListener('close', () => {
    if (onClose) onClose();
    dialog.remove();
    let target = focusTarget === undefined ? opener : focusTarget;
    if (focusTarget === null) return;
    if (!target || !target.isConnected || target.disabled) target = fallback ? fallback() : null;
    if (target && target.isConnected) target.focus();
  });

  document.body.append(dialog);
  dialog.showModal();
  // showModal() focuses the [autofocus] element or the first focusable one;
  // make sure of it where a browser does not.
  const first = dialog.querySelector('[autofocus]');
  if (first && document.activeElement !== first) first.focus();
  return handle;
}

// The row of buttons at the bottom of a dialog.
export function dialogActions(...buttons) {
  return h('div', { class: 'dialog-actions' }, ...buttons);
}
