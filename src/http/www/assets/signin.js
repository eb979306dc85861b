// signin.js - the sign-in page.

import { signIn, describeError, retryText, ApiError } from './api.js';
import { h, icon, showMessage } from './dom.js';

// Only a path of this site may follow sign-in: it starts with one "/" and
// names no other host (not "//evil", not "/\evil").
export function safeNext(value) {
  if (typeof value !== 'string' || !value.startsWith('/') || value.startsWith('//')) return null;
  if (value.includes('\\') || /[\u0000-\u001f\u007f]/.test(value)) return null;
  let url;
  try {
    url = new URL(value, window.location.origin);
  } catch {
    return null;
  }
  if (url.origin !== window.location.origin || url.pathname === '/sign-in') return null;
  return url.pathname + url.search + url.hash;
}

function signInError(err) {
  if (err instanceof ApiError) {
    switch (err.status) {
      case 401:
        return 'The email or password is not correct. Check them and try again.';
      case 429:
        return `Too many failed sign-in attempts. ${retryText(err.retryAfter)}`;
      case 403:
        return 'The sign-in was refused because this page was not opened from the address of this server. Open the console at its own address and try again.';
      case 503:
        return 'The service is unavailable right now. Try again in a moment.';
      case 0:
        return 'Could not reach the server. Check your connection and try again.';
      default:
        break;
    }
  }
  return describeError(err, 'sign you in');
}

// Renders the page into `main`; `done(next)` is called once signed in.
export function renderSignIn(main, { next, done }) {
  const alert = h('div', { role: 'alert', class: 'alert alert-error', hidden: true });
  const email = h('input', {
    id: 'email', name: 'email', type: 'email', autocomplete: 'username', required: true,
    spellcheck: 'false', autocapitalize: 'none',
  });
  const password = h('input', {
    id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true,
  });
  const submit = h('button', { type: 'submit', class: 'button button-primary button-block' }, 'Sign in');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-labelledby': 'sign-in-title' },
    alert,
    h('div', { class: 'field' }, h('label', { for: 'email' }, 'Email'), email),
    h('div', { class: 'field' }, h('label', { for: 'password' }, 'Password'), password),
    submit,
  );

  let running = false;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (running) return;
    showMessage(alert, '');
    const emailValue = email.value.trim();
    if (!emailValue || !password.value) {
      showMessage(alert, 'Enter your email and password.');
      (emailValue ? password : email).focus();
      return;
    }
    running = true;
    submit.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      await signIn(emailValue, password.value);
      password.value = '';
      done(safeNext(next) || '/settings/integrations');
    } catch (err) {
      showMessage(alert, signInError(err));
      if (err instanceof ApiError && err.status === 401) {
        password.value = '';
        password.focus();
      }
    } finally {
      running = false;
      submit.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });

  main.append(
    h('div', { class: 'auth' },
      h('div', { class: 'auth-brand' }, icon('key', 'brand-mark'), h('span', {}, 'keyward')),
      h('section', { class: 'card auth-card' },
        h('h1', { id: 'sign-in-title', class: 'auth-title', tabindex: '-1' }, 'Sign in to keyward'),
        h('p', { class: 'muted' }, 'Sign in to manage the API keys of your account.'),
        form)),
  );
  email.focus();
}
