// format.js - dates as the console shows them: the browser's own locale,
// the API's RFC 3339 text kept in the element's datetime and title.

import { h } from './dom.js';

export const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

// The date as text; an unparsable value is shown as it came.
export function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : dateFormat.format(date);
}

// A <time> element for an RFC 3339 value.
export function timeElement(iso, attrs = {}) {
  return h('time', { datetime: iso, title: iso, ...attrs }, formatDate(iso));
}
