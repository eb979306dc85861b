// keys-disable.js - the Disable Key and Enable Key pop-ups. A disabled key
// fails verification (DISABLED) but stays on the list and in its slot, so
// it can be enabled again as it was.

import { updateKey } from './api.js';
import { openConfirm, keyLabel } from './keys-action.js';

export function openDisable(page, key, opener) {
  return openConfirm(page, key, opener, {
    title: 'Disable Key',
    consequence: [
      'You are about to disable the key ', ...keyLabel(key), '. ',
      'Applications using this key lose access immediately. ',
      'You can enable it again at any time; while it is disabled it still counts toward your key limit.',
    ],
    confirmLabel: 'Disable key',
    danger: true,
    what: 'disable the key',
    send: () => updateKey(key.id, { enabled: false }),
    done: () => `Disabled the key “${key.name}”.`,
  });
}

export function openEnable(page, key, opener) {
  return openConfirm(page, key, opener, {
    title: 'Enable Key',
    consequence: [
      'You are about to enable the key ', ...keyLabel(key), '. ',
      'Applications using this key regain access immediately.',
    ],
    confirmLabel: 'Enable key',
    danger: false,
    what: 'enable the key',
    send: () => updateKey(key.id, { enabled: true }),
    done: () => `Enabled the key “${key.name}”.`,
  });
}
