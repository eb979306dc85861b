// keys-roll.js - the Roll Key pop-up: a new key replaces this one, and the
// old one keeps working for the grace period chosen here, so applications
// can move over without downtime. The new key is shown once, in the same
// Created pop-up as a create.

import { rollKey } from './api.js';
import { h, icon, showMessage, newId } from './dom.js';
import { openDialog, dialogActions } from './dialogs.js';
import { formatDate } from './format.js';
import { openCreated } from './keys-created.js';
import { runKeyAction, keyLabel } from './keys-action.js';

const HOUR = 3600;
const GRACE_CHOICES = [
  { seconds: 0, label: 'Immediately' },
  { seconds: HOUR, label: '1 hour' },
  { seconds: 24 * HOUR, label: '24 hours' },
  { seconds: 7 * 24 * HOUR, label: '7 days' },
  { seconds: 30 * 24 * HOUR, label: '30 days' },
];
const DEFAULT_GRACE = 24 * HOUR;

// When the old key stops working after a grace of `seconds`: never later
// than it would have expired anyway. null: at once.
function oldKeyEnd(key, seconds) {
  if (seconds === 0) return null;
  let end = Date.now() + seconds * 1000;
  const expires = key.expires_at ? Date.parse(key.expires_at) : NaN;
  if (!Number.isNaN(expires) && expires < end) end = expires;
  return new Date(end);
}

export function stopsText(end) {
  return end ? `The old key stops working on ${formatDate(end.toISOString())}.` : 'The old key stops working immediately.';
}

export function openRoll(page, key, opener) {
  page.status.textContent = '';
  const alert = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const graceId = newId('roll-grace');
  const endId = newId('roll-end');
  const grace = h('select', { id: graceId, name: 'grace', autofocus: true, 'aria-describedby': endId },
    GRACE_CHOICES.map((c) => h('option', { value: String(c.seconds), selected: c.seconds === DEFAULT_GRACE }, c.label)));
  const end = h('p', { class: 'roll-end', id: endId, 'aria-live': 'polite' });
  const cancel = h('button', { type: 'button', class: 'button' }, 'Cancel');
  const roll = h('button', { type: 'submit', class: 'button button-primary' }, 'Roll key');
  const update = () => { end.textContent = stopsText(oldKeyEnd(key, Number(grace.value))); };
  grace.addEventListener('change', update);
  update();

  const dlg = openDialog({
    title: 'Roll Key',
    opener,
    fallback: page.focusAfterChange,
    body: () => [
      h('form', { class: 'dialog-form', novalidate: true },
        h('p', {},
          'Rolling replaces the key ', ...keyLabel(key), ' with a new key of the same name and environment. ',
          'The new key works at once and is shown only once. Update your applications to use it before the old key stops working.'),
        h('div', { class: 'field' },
          h('label', { for: graceId }, 'Keep the old key working'),
          grace),
        h('div', { class: 'callout callout-warning' }, icon('warning'), end),
        alert,
        dialogActions(cancel, roll)),
    ],
  });
  cancel.addEventListener('click', () => dlg.close());
  dlg.dialog.querySelector('form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (dlg.busy) return;
    showMessage(alert, '');
    const seconds = Number(grace.value);
    const answer = await runKeyAction(page, dlg, {
      alert, controls: [cancel, roll, grace], what: 'roll the key', send: () => rollKey(key.id, seconds),
    });
    if (answer === undefined) {
      if (dlg.dialog.open) roll.focus();
      return;
    }
    // The server's time, not the estimate above: it is what now holds.
    const previous = answer.previous || {};
    const stops = previous.expires_at ? new Date(previous.expires_at) : oldKeyEnd(key, seconds);
    const stopped = stops && stops.getTime() <= Date.now() ? null : stops;
    dlg.close({ focus: null });
    openCreated(page, answer, {
      opener,
      note: stopsText(stopped),
      done: `Rolled the key “${key.name}”. ${stopsText(stopped)}`,
    });
  });
}
