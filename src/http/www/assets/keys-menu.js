// keys-menu.js - the "…" menu of one key's row: Roll, Disable or Enable,
// Rename and Delete, each opening its own pop-up. It behaves as the gear
// menu does (menu.js). The panel is placed with fixed coordinates next to
// its button (and kept there on scroll), so the table's scrolling box
// never cuts it off.

import { h, newId } from './dom.js';
import { bindMenu } from './menu.js';

// Which entries a key offers. Only a working key can be rolled (the API
// answers key_state otherwise); an expired key can only be renamed or
// deleted.
function entries(key, status) {
  const list = [];
  if ((status === 'active' || status === 'expiring') && !key.rolled_to && key.enabled !== false) {
    list.push({ label: 'Roll', action: 'roll' });
  }
  if (status !== 'expired') {
    list.push(key.enabled === false ? { label: 'Enable', action: 'enable' } : { label: 'Disable', action: 'disable' });
  }
  list.push({ label: 'Rename', action: 'rename' }, { label: 'Delete', action: 'delete', danger: true });
  return list;
}

// Returns the menu's element. onAction(action, key, button) runs once the
// menu has closed; `button` is where focus returns after the pop-up.
export function keyMenu(key, status, onAction) {
  const buttonId = newId('key-menu-button');
  const menuId = newId('key-menu');
  const button = h('button', {
    type: 'button', class: 'icon-button row-menu-button', id: buttonId, 'data-key-id': key.id,
    'aria-label': `Actions for ${key.name}`, 'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-controls': menuId,
  }, h('span', { 'aria-hidden': 'true' }, '…'));
  const list = entries(key, status);
  const items = list.map((e) =>
    h('button', { type: 'button', role: 'menuitem', tabindex: '-1', class: `menu-item${e.danger ? ' menu-item-danger' : ''}` }, e.label));
  const panel = h('div', { class: 'menu-panel row-menu-panel', hidden: true },
    h('ul', { role: 'menu', id: menuId, class: 'menu-list', 'aria-labelledby': buttonId },
      items.map((item) => h('li', { role: 'none' }, item))));
  const wrap = h('div', { class: 'menu row-menu' }, button, panel);

  // Below the button, its right edge on the button's; above it when there is
  // no room below. CSSOM, not a style attribute: the CSP forbids those.
  function place() {
    panel.hidden = false;
    const b = button.getBoundingClientRect();
    const p = panel.getBoundingClientRect();
    const left = Math.max(8, Math.min(b.right - p.width, window.innerWidth - p.width - 8));
    const below = b.bottom + 4;
    const top = below + p.height > window.innerHeight - 8 ? Math.max(8, b.top - p.height - 4) : below;
    panel.style.left = `${left}px`;
    panel.style.top = `${top}px`;
  }
  // A fixed panel would drift from its button on scroll: it follows it.
  const onScroll = () => place();
  const menu = bindMenu({
    button, panel, items, wrap,
    onOpen: () => {
      place();
      window.addEventListener('scroll', onScroll, true);
      window.addEventListener('resize', onScroll);
    },
    onClose: () => {
      window.removeEventListener('scroll', onScroll, true);
      window.removeEventListener('resize', onScroll);
    },
  });
  items.forEach((item, i) => {
    item.addEventListener('click', () => {
      menu.close(false);
      onAction(list[i].action, key, button);
    });
  });
  return wrap;
}
