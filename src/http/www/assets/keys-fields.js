// keys-fields.js - the form fields that more than one pop-up uses: a key's
// name (Create and Rename check it the same way) and its expiry.

import { h, showMessage, newId } from './dom.js';
import { formatDate } from './format.js';

const DAY = 86400;

// Returns {element, input, check(alert)}. check() shows what is wrong in
// `alert` and resolves to the trimmed name, or null. The server checks the
// rest (invisible characters…) and its message is shown as it comes.
export function nameField(value = '') {
  const id = newId('key-name');
  const hintId = newId('key-name-hint');
  const input = h('input', {
    id, name: 'name', type: 'text', placeholder: 'e.g. Production CRM', required: true,
    maxlength: '100', autocomplete: 'off', spellcheck: 'false', autofocus: true, 'aria-describedby': hintId,
  });
  input.value = value;
  const element = h('div', { class: 'field' },
    h('label', { for: id }, 'API Key Name'),
    input,
    h('p', { class: 'hint', id: hintId }, 'A name that tells you where the key is used.'));
  function check(alert) {
    const name = input.value.trim();
    if (!name) {
      showMessage(alert, 'Enter a name for the key.');
      input.focus();
      return null;
    }
    return name;
  }
  return { element, input, check };
}

const EXPIRY_CHOICES = [
  { value: 'never', label: 'Never' },
  { value: '30', label: '30 days', seconds: 30 * DAY },
  { value: '60', label: '60 days', seconds: 60 * DAY },
  { value: '90', label: '90 days', seconds: 90 * DAY },
  { value: 'custom', label: 'Custom date' },
];

// "YYYY-MM-DD" of a Date, in local time (what <input type=date> takes).
function dayText(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

// The end of the chosen local day: a key that "expires on" a date works
// through that whole day.
function endOfDay(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (!m) return null;
  const date = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), 23, 59, 59);
  return Number.isNaN(date.getTime()) ? null : date;
}

// RFC 3339 in UTC, whole seconds.
export function rfc3339(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// The Expiry field of the Create pop-up. Returns {element, select, check(alert)};
// check() resolves to what the request carries ({}, {expires_in} or
// {expires_at}) or null after showing what is wrong.
export function expiryField() {
  const id = newId('key-expiry');
  const dateId = newId('key-expiry-date');
  const hintId = newId('key-expiry-hint');
  const select = h('select', { id, name: 'expiry', 'aria-describedby': hintId },
    EXPIRY_CHOICES.map((c) => h('option', { value: c.value, selected: c.value === 'never' }, c.label)));
  const date = h('input', { id: dateId, name: 'expiry-date', type: 'date', min: dayText(new Date()) });
  const dateField = h('div', { class: 'field', hidden: true }, h('label', { for: dateId }, 'Expiry date'), date);
  const hint = h('p', { class: 'hint', id: hintId, 'aria-live': 'polite' });
  const element = h('div', { class: 'field-group' },
    h('div', { class: 'field' }, h('label', { for: id }, 'Expiry'), select, hint),
    dateField);

  // When the key would stop working, for the hint; null: never or not yet known.
  function when() {
    const choice = EXPIRY_CHOICES.find((c) => c.value === select.value);
    if (choice && choice.seconds) return new Date(Date.now() + choice.seconds * 1000);
    if (select.value === 'custom') return endOfDay(date.value);
    return null;
  }
  function update() {
    dateField.hidden = select.value !== 'custom';
    const at = when();
    if (select.value === 'never') hint.textContent = 'The key works until you delete it.';
    else if (at) hint.textContent = `The key stops working on ${formatDate(at.toISOString())}.`;
    else hint.textContent = 'Pick the last day the key works.';
  }
  select.addEventListener('change', () => {
    update();
    if (select.value === 'custom') date.focus();
  });
  date.addEventListener('input', update);
  update();

  function check(alert) {
    const choice = EXPIRY_CHOICES.find((c) => c.value === select.value);
    if (choice && choice.seconds) return { expires_in: choice.seconds };
    if (select.value !== 'custom') return {};
    const at = endOfDay(date.value);
    if (!at || at.getTime() <= Date.now()) {
      showMessage(alert, 'Pick the last day the key works: today or later.');
      date.focus();
      return null;
    }
    return { expires_at: rfc3339(at) };
  }
  return { element, select, check };
}
