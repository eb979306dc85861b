// dom.js - building elements without innerHTML. Text always goes in as
// text nodes, so a key name such as "<img onerror=…>" stays a string.

const SVG_NS = 'http://www.w3.org/2000/svg';

// h('button', {class: 'btn', type: 'button', onclick: fn}, 'Text', child…)
// Attributes whose value is false, null or undefined are left out; true
// sets an empty attribute (disabled, required, hidden…).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'text') {
      el.textContent = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Icons are drawn in the current text colour; they are decoration only
// (the element that holds one carries its accessible name).
const ICONS = {
  gear: [
    'M19.39 10.23L21.85 10.28L21.85 13.72L19.39 13.77L18.48 15.97L20.18 17.75L17.75 20.18L15.97 18.48L13.77 19.39L13.72 21.85L10.28 21.85L10.23 19.39L8.03 18.48L6.25 20.18L3.82 17.75L5.52 15.97L4.61 13.77L2.15 13.72L2.15 10.28L4.61 10.23L5.52 8.03L3.82 6.25L6.25 3.82L8.03 5.52L10.23 4.61L10.28 2.15L13.72 2.15L13.77 4.61L15.97 5.52L17.75 3.82L20.18 6.25L18.48 8.03Z',
    'M15 12a3 3 0 1 1-6 0 3 3 0 0 1 6 0Z',
  ],
  key: ['M12 15a4 4 0 1 1-8 0 4 4 0 0 1 8 0Z', 'M10.8 12.2 20 3', 'M17 6l3 3', 'M14.5 8.5l2 2'],
  shield: ['M12 3 4.5 6v5.5c0 4.6 3.2 8.3 7.5 9.5 4.3-1.2 7.5-4.9 7.5-9.5V6L12 3Z', 'm9 12 2 2 4-4'],
  plus: ['M12 5v14', 'M5 12h14'],
  warning: ['M12 3 2 20h20L12 3Z', 'M12 10v4', 'M12 17h.01'],
  chevron: ['m9 6 6 6-6 6'],
  user: ['M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8Z', 'M4 21a8 8 0 0 1 16 0'],
  signout: ['M15 4h3a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-3', 'M10 17l-5-5 5-5', 'M5 12h11'],
  plug: ['M9 2v5', 'M15 2v5', 'M6 7h12v4a6 6 0 0 1-12 0V7Z', 'M12 17v5'],
};

export function icon(name, cls = 'icon') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '20');
  svg.setAttribute('height', '20');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '1.8');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', cls);
  for (const d of ICONS[name]) {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

// Shows text in a (hidden until needed) message element, or hides it.
export function showMessage(el, text) {
  el.textContent = text || '';
  el.hidden = !text;
}

let uid = 0;
export function newId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}
