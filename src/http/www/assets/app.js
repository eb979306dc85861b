// app.js - the keyward console: routing between its pages. Every page has
// its own address (history.pushState); the server sends this same document
// for each of them, so a reload or a shared link lands on the right page.

import { loadSession, currentSession, forgetSession, signOut, describeError } from './api.js';
import { h, icon, showMessage } from './dom.js';
import { topBar } from './menu.js';
import { renderSignIn, safeNext } from './signin.js';
import { renderIntegrations } from './integrations.js';
import { renderApiPage } from './keys.js';

const HOME = '/settings/integrations';
const PAGES = {
  '/settings/integrations': { title: 'Account Integrations', render: renderIntegrations },
  '/settings/integrations/api': { title: 'API Keys', render: renderApiPage },
};

const root = document.getElementById('app');

function setTitle(title) {
  document.title = `${title} · keyward`;
}

function currentPath() {
  const path = window.location.pathname.replace(/\/+$/, '');
  return path || '/';
}

export function navigate(url, { replace = false } = {}) {
  if (replace) window.history.replaceState(null, '', url);
  else window.history.pushState(null, '', url);
  route(true);
}

// The session has ended (a 401): back to sign-in, then here again.
function signedOut() {
  forgetSession();
  const here = window.location.pathname + window.location.search;
  navigate(`/sign-in?next=${encodeURIComponent(here)}`, { replace: true });
}

async function onSignOut(gear) {
  const notice = document.getElementById('notice');
  try {
    await signOut();
    navigate('/sign-in');
  } catch (err) {
    if (notice) showMessage(notice, describeError(err, 'sign you out'));
    if (gear.isConnected) gear.focus();
  }
}

function shell(session) {
  const main = h('main', { id: 'main', class: 'page', tabindex: '-1' });
  root.replaceChildren(
    h('a', { class: 'skip-link', href: '#main' }, 'Skip to content'),
    topBar(session.user.email, onSignOut),
    h('div', { class: 'notice-wrap' }, h('div', { id: 'notice', class: 'alert alert-error', role: 'alert', hidden: true })),
    main,
  );
  return main;
}

// Renders the page the address names. `moveFocus`: after an in-app
// navigation, focus goes to the new page's heading so that a screen reader
// announces it.
function route(moveFocus) {
  const path = currentPath();
  const session = currentSession();
  const params = new URLSearchParams(window.location.search);

  if (path === '/') {
    navigate(session ? HOME : '/sign-in', { replace: true });
    return;
  }
  if (path === '/sign-in') {
    if (session) {
      navigate(safeNext(params.get('next')) || HOME, { replace: true });
      return;
    }
    setTitle('Sign in');
    const main = h('main', { id: 'main', class: 'page page-auth', tabindex: '-1' });
    root.replaceChildren(main);
    renderSignIn(main, { next: params.get('next'), done: (next) => navigate(next, { replace: true }) });
    return;
  }
  if (!session) {
    const here = window.location.pathname + window.location.search + window.location.hash;
    navigate(`/sign-in?next=${encodeURIComponent(here)}`, { replace: true });
    return;
  }

  const page = PAGES[path];
  const main = shell(session);
  if (!page) {
    setTitle('Page not found');
    main.append(
      h('div', { class: 'page-head' },
        h('h1', { tabindex: '-1' }, 'Page not found'),
        h('p', { class: 'muted' }, 'There is nothing at this address. ', h('a', { href: HOME }, 'Go to Account Integrations'), '.')),
    );
  } else {
    setTitle(page.title);
    page.render(main, { signedOut });
  }
  if (moveFocus) {
    const heading = main.querySelector('h1');
    if (heading) heading.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
}

// Links inside the console change the page without reloading it.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href, window.location.href);
  if (url.origin !== window.location.origin) return;
  if (url.pathname === window.location.pathname && url.hash) return; // in-page anchor (skip link)
  if (url.pathname !== '/sign-in' && !PAGES[url.pathname.replace(/\/+$/, '')]) return;
  event.preventDefault();
  if (url.pathname + url.search === window.location.pathname + window.location.search) {
    route(true);
    return;
  }
  navigate(url.pathname + url.search + url.hash);
});

window.addEventListener('popstate', () => route(true));

// First load: ask the server who is signed in, then show the page.
async function start() {
  try {
    await loadSession();
  } catch (err) {
    setTitle('Unavailable');
    const retry = h('button', { type: 'button', class: 'button button-primary' }, 'Try again');
    retry.addEventListener('click', start);
    root.replaceChildren(
      h('main', { id: 'main', class: 'page page-auth' },
        h('div', { class: 'auth' },
          h('div', { class: 'auth-brand' }, icon('key', 'brand-mark'), h('span', {}, 'keyward')),
          h('section', { class: 'card auth-card' },
            h('h1', { class: 'auth-title' }, 'The console could not start'),
            h('div', { class: 'alert alert-error', role: 'alert' }, describeError(err, 'check whether you are signed in')),
            retry))),
    );
    return;
  }
  route(false);
}

start();
