// keys.js - the APIs & Webhooks page: the API Keys section, its list and
// counter, and the Create, Created and Delete pop-ups.
//
// A new key's secret lives only in one closure and in the Created pop-up's
// field; both are emptied and the pop-up is removed from the page the moment
// it closes, whichever way it closes.

import { listKeys, createKey, deleteKey, describeError } from './api.js';
import { h, icon, showMessage, newId } from './dom.js';
import { openDialog, dialogActions } from './dialogs.js';

const DEFAULT_LIMIT = 25;
const ENVIRONMENTS = ['production', 'staging'];

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function dateCell(iso, label) {
  if (!iso) return h('td', { 'data-label': label }, h('span', { class: 'muted' }, 'Never'));
  const date = new Date(iso);
  const text = Number.isNaN(date.getTime()) ? iso : dateFormat.format(date);
  return h('td', { 'data-label': label }, h('time', { datetime: iso, title: iso }, text));
}

function limitText(limit) {
  return `You have reached the limit of ${limit} active keys. Delete a key to create a new one.`;
}

// Renders the page into `main`. ctx.signedOut() is called when the session
// turns out to have ended.
export function renderApiPage(main, ctx) {
  let state = { keys: [], active_count: 0, key_limit: DEFAULT_LIMIT, loaded: false };
  let loadSeq = 0;

  const heading = h('h2', { id: 'api-keys-title', tabindex: '-1' }, 'API Keys');
  const limitInline = h('strong', {}, String(DEFAULT_LIMIT));
  const count = h('p', { class: 'key-count', id: 'key-count', 'aria-live': 'polite' });
  const limitNote = h('p', { class: 'limit-note', id: 'limit-note', hidden: true });
  const createButton = h('button', { type: 'button', class: 'button button-primary', id: 'create-key', disabled: true },
    icon('plus'), 'Create API key');
  const status = h('p', { class: 'status', role: 'status' });
  const loadError = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const tbody = h('tbody');
  const table = h('div', { class: 'table-wrap', hidden: true },
    h('table', { class: 'keys-table' },
      h('caption', { class: 'visually-hidden' }, 'API keys of this account'),
      h('thead', {},
        h('tr', {},
          h('th', { scope: 'col' }, 'Name'),
          h('th', { scope: 'col' }, 'Environment'),
          h('th', { scope: 'col' }, 'Key'),
          h('th', { scope: 'col' }, 'Created'),
          h('th', { scope: 'col' }, 'Last used'),
          h('th', { scope: 'col', class: 'actions-col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
      tbody));
  const empty = h('div', { class: 'empty-state', hidden: true },
    h('span', { class: 'empty-icon' }, icon('key')),
    h('p', { class: 'empty-title' }, 'No API keys yet'),
    h('p', { class: 'muted' }, 'Create a key for each application or service that needs to call the API.'));
  const loading = h('p', { class: 'muted loading' }, 'Loading keys…');

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
            ' active keys. Use a separate key for each environment (production, staging) and for each vendor, so you can revoke one without touching the others.')),
        h('li', {}, icon('plug'),
          h('span', {}, 'To rotate a key without downtime, create a new key, update your application to use it, then delete the old key.')))),
    h('div', { class: 'keys-toolbar' },
      h('div', { class: 'keys-toolbar-text' }, count, limitNote),
      createButton),
    loadError,
    status,
    loading,
    table,
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
  );

  const alive = () => section.isConnected;
  const atLimit = () => state.active_count >= state.key_limit;
  const focusAfterChange = () => (createButton.disabled ? heading : createButton);

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
    const full = state.loaded && atLimit();
    createButton.disabled = !state.loaded || full;
    showMessage(limitNote, full ? limitText(state.key_limit) : '');
    if (full) createButton.setAttribute('aria-describedby', 'limit-note');
    else createButton.removeAttribute('aria-describedby');

    tbody.replaceChildren(...state.keys.map(row));
    table.hidden = !state.loaded || state.keys.length === 0;
    empty.hidden = !state.loaded || state.keys.length !== 0;
  }

  function row(key) {
    const del = h('button', { type: 'button', class: 'link-button link-danger', 'aria-label': `Delete ${key.name}` }, 'Delete');
    del.addEventListener('click', () => openDelete(key, del));
    return h('tr', {},
      h('td', { 'data-label': 'Name', class: 'key-name' },
        h('span', {}, key.name),
        key.expires_at ? h('span', { class: 'key-expiry muted' }, 'Expires ', dateFormat.format(new Date(key.expires_at))) : null),
      h('td', { 'data-label': 'Environment' },
        h('span', { class: `badge badge-${key.environment === 'production' ? 'production' : 'other'}` }, key.environment)),
      h('td', { 'data-label': 'Key' }, h('code', { class: 'mono masked' }, key.masked)),
      dateCell(key.created_at, 'Created'),
      dateCell(key.last_used_at, 'Last used'),
      h('td', { class: 'actions' }, del));
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

  function openCreate() {
    status.textContent = '';
    const alert = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
    const nameId = newId('key-name');
    const envId = newId('key-env');
    const hintId = newId('key-name-hint');
    const name = h('input', {
      id: nameId, name: 'name', type: 'text', placeholder: 'e.g. Production CRM', required: true,
      maxlength: '100', autocomplete: 'off', spellcheck: 'false', autofocus: true, 'aria-describedby': hintId,
    });
    const env = h('select', { id: envId, name: 'environment' },
      ENVIRONMENTS.map((e) => h('option', { value: e, selected: e === 'production' }, e)));
    const cancel = h('button', { type: 'button', class: 'button' }, 'Cancel');
    const generate = h('button', { type: 'submit', class: 'button button-primary' }, 'Generate key');

    const dlg = openDialog({
      title: 'Create API key',
      opener: createButton,
      fallback: () => heading,
      body: () => [
        h('form', { class: 'dialog-form', novalidate: true },
          h('div', { class: 'field' },
            h('label', { for: nameId }, 'API Key Name'),
            name,
            h('p', { class: 'hint', id: hintId }, 'A name that tells you where the key is used.')),
          h('div', { class: 'field' }, h('label', { for: envId }, 'Environment'), env),
          alert,
          dialogActions(cancel, generate)),
      ],
    });
    cancel.addEventListener('click', () => dlg.close());
    dlg.dialog.querySelector('form').addEventListener('submit', async (event) => {
      event.preventDefault();
      if (dlg.busy) return;
      showMessage(alert, '');
      const value = name.value.trim();
      if (!value) {
        showMessage(alert, 'Enter a name for the key.');
        name.focus();
        return;
      }
      dlg.setBusy(true);
      generate.disabled = true;
      cancel.disabled = true;
      let result;
      try {
        result = await createKey(value, env.value);
      } catch (err) {
        dlg.setBusy(false);
        generate.disabled = false;
        cancel.disabled = false;
        if (handleAuth(err)) {
          dlg.close({ focus: null });
          return;
        }
        if (err.status === 409) {
          showMessage(alert, limitText(state.key_limit));
          load();
        } else {
          showMessage(alert, describeError(err, 'create the key'));
        }
        if (dlg.dialog.open) name.focus();
        return;
      }
      dlg.setBusy(false);
      dlg.close({ focus: null });
      openCreated(result);
    });
  }

  // `result` is the POST answer {key, secret}; the secret is taken out of
  // it here and held by this closure only until the pop-up closes.
  function openCreated(result) {
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
      opener: createButton,
      fallback: () => heading,
      onClose: () => {
        field.value = '';
        secret = null;
        status.textContent = `Created the key “${key.name || ''}”.`;
        load();
      },
      body: () => [
        h('p', {}, 'Your new key ', h('strong', {}, key.name || ''), key.environment ? ` (${key.environment})` : '', ' is ready.'),
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
      let copied = false;
      if (navigator.clipboard && navigator.clipboard.writeText) {
        try {
          await navigator.clipboard.writeText(secret);
          copied = true;
        } catch {
          copied = false;
        }
      } else {
        // No Clipboard API (a page not served over HTTPS): the older way.
        field.focus();
        field.select();
        try {
          copied = document.execCommand('copy');
        } catch {
          copied = false;
        }
      }
      if (copied) {
        dlg.close();
        return;
      }
      showMessage(alert,
        'The key could not be copied to the clipboard. Select it in the field above and copy it yourself (Ctrl+C, or ⌘C on a Mac), then close this pop-up.');
      closeButton.hidden = false;
      field.focus();
    });
  }

  function openDelete(key, opener) {
    status.textContent = '';
    const alert = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
    const textId = newId('delete-text');
    const cancel = h('button', { type: 'button', class: 'button', autofocus: true }, 'Cancel');
    const confirm = h('button', { type: 'button', class: 'button button-danger' }, 'Delete key');

    const dlg = openDialog({
      title: 'Delete Key',
      describedBy: textId,
      opener,
      fallback: focusAfterChange,
      body: () => [
        h('div', { class: 'callout callout-danger' },
          icon('warning'),
          h('p', { id: textId },
            'You are about to permanently delete the key ', h('strong', {}, key.name),
            ' (', h('code', { class: 'mono' }, key.masked), '). ',
            'This cannot be undone: any application using this key will immediately lose access.')),
        alert,
        dialogActions(cancel, confirm),
      ],
    });
    cancel.addEventListener('click', () => dlg.close());
    confirm.addEventListener('click', async () => {
      if (dlg.busy) return;
      showMessage(alert, '');
      dlg.setBusy(true);
      confirm.disabled = true;
      cancel.disabled = true;
      try {
        await deleteKey(key.id);
        status.textContent = `Deleted the key “${key.name}”.`;
      } catch (err) {
        dlg.setBusy(false);
        confirm.disabled = false;
        cancel.disabled = false;
        if (handleAuth(err)) {
          dlg.close({ focus: null });
          return;
        }
        if (err.status !== 404) {
          showMessage(alert, describeError(err, 'delete the key'));
          confirm.focus();
          return;
        }
        status.textContent = `The key “${key.name}” had already been deleted.`;
      }
      dlg.setBusy(false);
      // The row is about to go: focus moves on to a control that stays.
      dlg.close({ focus: focusAfterChange() });
      load();
    });
  }

  createButton.addEventListener('click', openCreate);
  render();
  load();
}
