// menu.js - the top bar of every signed-in page with its gear menu, and the
// menu-button behaviour that the gear and each key's "…" menu share (the
// WAI-ARIA menu button pattern): Enter, Space and ArrowDown open the menu
// on its first item, ArrowUp on its last; arrows, Home and End move; Esc
// closes it and returns focus to the button; Tab or a click outside closes it.

import { h, icon } from './dom.js';

// Makes `button` open and close `panel`, whose menu items are `items`
// (elements with role=menuitem and tabindex=-1). `wrap` holds both: a
// pointer press outside it closes the menu. options.onOpen() runs before the
// panel shows (to place it), options.onClose() after it hides.
// Returns {open, close, isOpen}.
export function bindMenu({ button, panel, items, wrap, onOpen, onClose }) {
  const isOpen = () => !panel.hidden;
  function open(focusIndex = 0) {
    if (onOpen) onOpen();
    panel.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    items[(focusIndex + items.length) % items.length].focus();
    document.addEventListener('pointerdown', onOutside, true);
  }
  function close(returnFocus) {
    if (!isOpen()) return;
    panel.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    document.removeEventListener('pointerdown', onOutside, true);
    if (onClose) onClose();
    if (returnFocus) button.focus();
  }
  function onOutside(event) {
    if (!wrap.contains(event.target)) close(false);
  }

  button.addEventListener('click', () => (isOpen() ? close(true) : open(0)));
  button.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowDown') {
      event.preventDefault();
      open(0);
    } else if (event.key === 'ArrowUp') {
      event.preventDefault();
      open(items.length - 1);
    } else if (event.key === 'Escape') {
      close(true);
    }
  });
  panel.addEventListener('keydown', (event) => {
    const index = items.indexOf(document.activeElement);
    switch (event.key) {
      case 'ArrowDown':
        event.preventDefault();
        items[(index + 1) % items.length].focus();
        break;
      case 'ArrowUp':
        event.preventDefault();
        items[(index - 1 + items.length) % items.length].focus();
        break;
      case 'Home':
        event.preventDefault();
        items[0].focus();
        break;
      case 'End':
        event.preventDefault();
        items[items.length - 1].focus();
        break;
      case 'Escape':
        event.preventDefault();
        close(true);
        break;
      case 'Tab':
        close(false);
        break;
      case ' ':
        // Space activates a link item too, as it does a button.
        if (index >= 0 && items[index].tagName === 'A') {
          event.preventDefault();
          items[index].click();
        }
        break;
      default:
        break;
    }
  });
  return { open, close, isOpen };
}

// Returns the <header>. `onSignOut` runs when Sign out is chosen.
export function topBar(email, onSignOut) {
  const button = h(
    'button',
    {
      type: 'button',
      class: 'icon-button gear',
      id: 'settings-button',
      'aria-label': 'Settings',
      'aria-haspopup': 'menu',
      'aria-expanded': 'false',
      'aria-controls': 'settings-menu',
    },
    icon('gear'),
  );
  const items = [
    h('a', { role: 'menuitem', href: '/settings/integrations', tabindex: '-1', class: 'menu-item' },
      icon('plug'), 'Account Integrations'),
    h('button', { role: 'menuitem', type: 'button', tabindex: '-1', class: 'menu-item' },
      icon('signout'), 'Sign out'),
  ];
  const list = h(
    'ul',
    { role: 'menu', id: 'settings-menu', class: 'menu-list', 'aria-labelledby': 'settings-button' },
    h('li', { role: 'none' }, items[0]),
    h('li', { role: 'separator', class: 'menu-separator' }),
    h('li', { role: 'none' }, items[1]),
  );
  const panel = h(
    'div',
    { class: 'menu-panel', hidden: true },
    h('div', { class: 'menu-header' },
      h('span', { class: 'menu-header-label' }, 'Signed in as'),
      h('span', { class: 'menu-header-email' }, email)),
    list,
  );
  const wrap = h('div', { class: 'menu' }, button, panel);
  const menu = bindMenu({ button, panel, items, wrap });

  items[0].addEventListener('click', () => menu.close(false));
  items[1].addEventListener('click', () => {
    menu.close(false);
    onSignOut(button);
  });

  return h(
    'header',
    { class: 'topbar' },
    h('div', { class: 'topbar-inner' },
      h('a', { class: 'brand', href: '/settings/integrations' }, icon('key', 'brand-mark'), h('span', {}, 'keyward')),
      h('div', { class: 'topbar-right' }, h('span', { class: 'topbar-user' }, email), wrap)),
  );
}
