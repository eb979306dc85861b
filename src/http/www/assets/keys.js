// keys.js - the APIs & Webhooks page: the API Keys section with its
// counter and state, then Activity and the Danger zone. The list, its "…"
// menus and each pop-up are modules of their own (keys-*.js, activity.js);
// this one loads the keys and hands every pop-up the same small context,
// `page`.

import { listKeys, describeError } from './api.js';
import { h, icon, showMessage } from './dom.js';
import { keyTable, keyStatus } from './keys-list.js';
import { openCreate, limitText } from './keys-create.js';
import { openDelete } from './keys-delete.js';
import { openRoll } from './keys-roll.js';
import { openDisable, openEnable } from './keys-disable.js';
import { openRename } from './keys-rename.js';
import { dangerZone } from './keys-revoke.js';
import { activitySection } from './activity.js';

// The pop-up each entry of a row's "…" menu opens.
const ACTIONS = {
  roll: openRoll,
  disable: openDisable,
  enable: openEnable,
  rename: openRename,
  delete: openDelete,
};

const DEFAULT_LIMIT = 25;

// Renders the page into `main`. ctx.signedOut() is called when the session
// turns out to have ended.
export function renderApiPage(main, ctx) {
  let state = { keys: [], active_count: 0, key_limit: DEFAULT_LIMIT, loaded: false };
  let loadSeq = 0;

  const heading = h('h2', { id: 'api-keys-title', tabindex: '-1' }, 'API Keys');
  const limitInline = h('strong', {}, String(DEFAULT_LIMIT));
  const count = h('p', { class: 'key-count', id: 'key-count', 'aria-live': 'polite' });
  const limitNote = h('p', { class: 'limit-note', id: 'limit-note', hidden: true });
  const disabledNote = h('p', { class: 'disabled-note muted', hidden: true });
  const createButton = h('button', { type: 'button', class: 'button button-primary', id: 'create-key', disabled: true },
    icon('plus'), 'Create API key');
  const status = h('p', { class: 'status', role: 'status' });
  const loadError = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const empty = h('div', { class: 'empty-state', hidden: true },
    h('span', { class: 'empty-icon' }, icon('key')),
    h('p', { class: 'empty-title' }, 'No API keys yet'),
    h('p', { class: 'muted' }, 'Create a key for each application or service that needs to call the API.'));
  const loading = h('p', { class: 'muted loading' }, 'Loading keys…');

  // What every pop-up of this section needs from it.
  const page = {
    heading,
    createButton,
    status,
    state: () => state,
    // After a change: the list and the activity as they now are.
    load: () => {
      load();
      activity.reload();
    },
    handleAuth,
    focusAfterChange: () => (createButton.disabled ? heading : createButton),
  };
  const table = keyTable((action, key, opener) => ACTIONS[action](page, key, opener));
  const activity = activitySection({ handleAuth });

  const section = h('section', { class: 'card keys-card', 'aria-labelledby': 'api-keys-title', 'aria-busy': 'true' },
    h('div', { class: 'card-head' },
      heading,
      h('p', { class: 'muted' },
        'API keys let your applications and the services you use call the API on behalf of your account.'),
      h('ul', { class: 'facts' },
        h('li', {}, icon('shield'),
          h('span', {}, 'A key is shown only once, when it is created. We store only a one-way hash of it, so it cannot be shown again, not even by support.')),
        h('li', {}, icon('key'),
          h('span', {}, 'You can have up to ', limitInline,
            ' active keys; a disabled key still occupies its slot until you delete it. Use a separate key for each environment (production, staging) and for each vendor, so you can revoke one without touching the others.')),
        h('li', {}, icon('plug'),
          h('span', {}, 'To rotate a key without downtime, choose Roll in its … menu: the new key works at once, and the old one keeps working for the grace period you choose while you update your application.')))),
    h('div', { class: 'keys-toolbar' },
      h('div', { class: 'keys-toolbar-text' }, count, disabledNote, limitNote),
      createButton),
    loadError,
    status,
    loading,
    table.element,
    empty);

  main.append(
    h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' },
      h('ol', {},
        h('li', {}, h('a', { href: '/settings/integrations' }, 'Account Integrations')),
        h('li', { 'aria-current': 'page' }, 'APIs & Webhooks'))),
    h('div', { class: 'page-head' },
      h('h1', { tabindex: '-1' }, 'APIs & Webhooks'),
      h('p', { class: 'muted' }, 'Connect your own applications and third-party services to your account.')),
    section,
    activity.element,
    dangerZone(page),
  );

  const alive = () => section.isConnected;
  const atLimit = () => state.active_count >= state.key_limit;

  function handleAuth(err) {
    if (err && err.status === 401) {
      ctx.signedOut();
      return true;
    }
    return false;
  }

  function render() {
    loading.hidden = state.loaded;
    section.setAttribute('aria-busy', state.loaded ? 'false' : 'true');
    limitInline.textContent = String(state.key_limit);
    count.textContent = state.loaded ? `${state.active_count} of ${state.key_limit} keys` : '';
    showMessage(disabledNote, disabledText(state.keys.filter((k) => keyStatus(k) === 'disabled').length));
    const full = state.loaded && atLimit();
    createButton.disabled = !state.loaded || full;
    showMessage(limitNote, full ? limitText(state.key_limit) : '');
    if (full) createButton.setAttribute('aria-describedby', 'limit-note');
    else createButton.removeAttribute('aria-describedby');

    table.render(state.keys);
    table.element.hidden = !state.loaded || state.keys.length === 0;
    empty.hidden = !state.loaded || state.keys.length !== 0;
  }

  function disabledText(n) {
    if (n === 0) return '';
    return `${n} of them ${n === 1 ? 'is' : 'are'} disabled: a disabled key still occupies its slot until you delete it.`;
  }

  async function load() {
    const seq = ++loadSeq;
    try {
      const data = await listKeys();
      if (seq !== loadSeq || !alive()) return;
      state = {
        keys: Array.isArray(data.keys) ? data.keys : [],
        active_count: Number(data.active_count) || 0,
        key_limit: Number(data.key_limit) || DEFAULT_LIMIT,
        loaded: true,
      };
      showMessage(loadError, '');
      render();
    } catch (err) {
      if (seq !== loadSeq || !alive() || handleAuth(err)) return;
      loadError.replaceChildren(
        h('span', {}, describeError(err, 'load the keys')),
        h('button', { type: 'button', class: 'link-button', onclick: () => load() }, 'Try again'));
      loadError.hidden = false;
      loading.hidden = true;
    }
  }

  createButton.addEventListener('click', () => openCreate(page));
  render();
  load();
}
