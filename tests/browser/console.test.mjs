// console.test.mjs - the web console's key management flow in a real browser
// (issue 4; the steps of README.md, "Install as a service", and the console
// sessions of docs/security.md).
//
// playwright-core drives Debian's chromium, headless, against a `keyward
// serve` started for this run on 127.0.0.1 (lib/server.mjs). The tests run in
// order on one signed-in page, as an admin would: sign in, find the API keys
// page through the gear menu, create a key, copy it, delete it; then the key
// lifecycle of issue 12 through each key's "…" menu (create with an expiry,
// roll, disable and enable, rename), fill the account to its limit, the CSRF
// and Origin checks from Node with the browser's session cookie, revoke all
// keys of an environment, the Activity list and its paging, and sign out;
// then the page and the same lifecycle at phone width.
// Elements are found by role and accessible name, the labels the console
// promises. Every step saves a screenshot in $KEYWARD_SCREENSHOTS.
//
// Run through run.sh (it installs playwright-core); prints TAP.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { startServer } from './lib/server.mjs';
import { Suite } from './lib/tap.mjs';

const CHROMIUM = process.env.KEYWARD_CHROMIUM || '/usr/bin/chromium';
const NODE_MODULES = process.env.KEYWARD_BROWSER_NODE_MODULES || path.join(import.meta.dirname, 'node_modules');
const SHOTS = process.env.KEYWARD_SCREENSHOTS || path.resolve('build/browser-screenshots');
const TEST_TIMEOUT_MS = 30_000; // one test; meson bounds the whole run (tests/meson.build)
const ACTION_TIMEOUT_MS = 10_000; // one click, fill or wait: fails fast on a missing element
const KEY_LIMIT = 25;
const KEY_RE = /^kw_production_[A-Za-z0-9]{49}$/;
const EVIL = 'http://evil.example';
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 812 };

const { chromium } = createRequire(path.join(NODE_MODULES, 'noop.js'))('playwright-core');

let srv = null;
let browser = null;
let context = null;
let page = null;
const state = {}; // what one test hands the next: the created key, the cookie
const pageProblems = []; // uncaught script errors and CSP violations, from every page

// ---- the server and the browser are stopped whatever happens ----

function stopNow(code) {
  if (srv) srv.killNow(); // playwright kills the browser it launched on exit
  process.exit(code);
}
process.on('SIGTERM', () => stopNow(143)); // meson's timeout
process.on('SIGINT', () => stopNow(130));
process.on('exit', () => {
  if (srv) srv.killNow();
});

// ---- helpers ----

let currentTest = null;
let shotCount = 0;

async function shot(p, step) {
  const n = String(currentTest ? currentTest.number : 0).padStart(2, '0');
  shotCount++;
  await p.screenshot({ path: path.join(SHOTS, `${n}-${step}.png`) });
}

// Polls fn until it returns a truthy value; throws message after timeoutMs.
async function until(fn, message, timeoutMs = ACTION_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${message} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function cookieHeader(cookies) {
  return cookies.map((c) => `${c.name}=${c.value}`).join('; ');
}

function watch(p) {
  p.on('pageerror', (err) => pageProblems.push(`${p.url()}: uncaught ${err.message}`));
  p.on('console', (msg) => {
    if (/Content.Security.Policy/i.test(msg.text())) pageProblems.push(`${p.url()}: ${msg.text()}`);
  });
}

// "N of 25 keys", not matching "10 of 25 keys" for N = 0.
function counter(p, n) {
  return p.getByText(new RegExp(`(^|[^0-9])${n} of ${KEY_LIMIT} keys`));
}

function createButton(p) {
  return p.getByRole('button', { name: 'Create API key', exact: true });
}

// The list entry of the key named name: a table row or a list item.
function keyRow(p, name) {
  const keys = p.getByRole('table', { name: 'API keys of this account' });
  return keys.getByRole('row').filter({ hasText: name }).or(p.getByRole('listitem').filter({ hasText: name }));
}

function menuEntry(p, name) {
  return p
    .getByRole('menuitem', { name, exact: true })
    .or(p.getByRole('link', { name, exact: true }))
    .or(p.getByRole('button', { name, exact: true }))
    .first();
}

// The list entry of one key, by its masked form: a roll leaves two keys of
// the same name.
function rowOf(p, key) {
  return p.getByRole('table', { name: 'API keys of this account' }).getByRole('row').filter({ hasText: key.masked }).first();
}

// Opens the "…" menu of key's row and chooses `action`; returns the menu's button.
async function keyAction(p, key, action) {
  const button = rowOf(p, key).getByRole('button', { name: `Actions for ${key.name}`, exact: true });
  await button.click();
  const menu = p.getByRole('menu', { name: `Actions for ${key.name}`, exact: true });
  await menu.waitFor();
  await menu.getByRole('menuitem', { name: action, exact: true }).click();
  await menu.waitFor({ state: 'hidden' });
  return button;
}

// A date as the console formats it, in the page's own locale.
function shownDate(p, iso) {
  return p.evaluate(
    (value) => new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(value)),
    iso,
  );
}

async function findKey(predicate, what) {
  const list = await srv.listKeys();
  const key = list.keys.find(predicate);
  assert.ok(key, `${what}: ${JSON.stringify(list.keys.map((k) => [k.name, k.status, k.masked]))}`);
  return key;
}

// No page wider than the phone.
async function noOverflow(p) {
  const width = await p.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= PHONE.width + 1, `the page is ${width} px wide at ${PHONE.width} px`);
}

// The one key the Created pop-up shows; then Copy & close.
async function takeShownKey(p) {
  const created = p.getByRole('dialog').filter({ hasText: 'API Key Created Successfully' });
  await created.waitFor();
  const text = `${await created.innerText()}\n${(await created.locator('input, textarea').evaluateAll((els) => els.map((e) => e.value))).join('\n')}`;
  const shown = [...new Set(text.match(/kw_[A-Za-z0-9_]+/g) || [])];
  assert.equal(shown.length, 1, `one key shown: ${JSON.stringify(shown)}`);
  assert.match(text, /only (be )?displayed once/i, 'the pop-up warns that the key is shown only once');
  return { created, secret: shown[0], text };
}

async function closeCreated(p, created, secret) {
  await created.getByRole('button', { name: 'Copy & close', exact: true }).click();
  await created.waitFor({ state: 'hidden' });
  await until(async () => !(await p.content()).includes(secret) && !(await inputValues(p)).join('\n').includes(secret),
    'the key is still in the page after Copy & close');
}

async function gotoApiKeys(p) {
  if (new URL(p.url()).pathname !== '/settings/integrations/api') {
    await p.goto(`${srv.origin}/settings/integrations/api`);
  }
  await p.getByRole('heading', { name: 'API Keys', exact: true }).waitFor();
}

async function signIn(p, password) {
  await p.getByLabel('Email', { exact: true }).fill(srv.email);
  await p.getByLabel('Password', { exact: true }).fill(password);
  await p.getByRole('button', { name: 'Sign in', exact: true }).click();
}

async function sessionCookie() {
  return cookieHeader(await context.cookies(srv.origin));
}

// Every input's and textarea's value on the page (page.content() does not show them).
function inputValues(p) {
  return p.evaluate(() => [...document.querySelectorAll('input, textarea')].map((e) => e.value));
}

// ---- the key lifecycle (issue 12): each step as a function, so that the
// desktop tests and the phone tests run the same steps ----

const DAY_S = 86400;

// Create API key with Expiry "30 days": the list shows the date.
async function createWithExpiry(p, name) {
  await gotoApiKeys(p);
  await createButton(p).click();
  const dialog = p.getByRole('dialog').filter({ hasText: 'Create API key' });
  await dialog.waitFor();
  await dialog.getByLabel('API Key Name', { exact: true }).fill(name);
  const expiry = dialog.getByRole('combobox', { name: 'Expiry', exact: true });
  assert.equal(await expiry.inputValue(), 'never', 'the expiry starts on Never');
  const labels = await expiry.locator('option').allInnerTexts();
  assert.deepEqual(labels, ['Never', '30 days', '60 days', '90 days', 'Custom date']);
  await expiry.selectOption({ label: 'Custom date' });
  await dialog.getByLabel('Expiry date', { exact: true }).waitFor();
  await expiry.selectOption({ label: '30 days' });
  await dialog.getByText(/^The key stops working on .+\.$/).waitFor();
  await shot(p, 'create-key-expiry');
  const before = Date.now();
  await dialog.getByRole('button', { name: 'Generate key', exact: true }).click();
  const { created, secret } = await takeShownKey(p);
  assert.match(secret, KEY_RE);
  await closeCreated(p, created, secret);
  const key = await findKey((k) => k.name === name, `the key ${name} is listed`);
  const expires = Date.parse(key.expires_at);
  assert.ok(Math.abs(expires - (before + 30 * DAY_S * 1000)) < 10 * 60 * 1000, `expires_at 30 days ahead: ${key.expires_at}`);
  const row = rowOf(p, key);
  await row.getByText(await shownDate(p, key.expires_at)).waitFor();
  const text = await row.innerText();
  assert.match(text, /Active/, `the new key is Active: ${JSON.stringify(text)}`);
  assert.equal((await srv.verify(secret)).code, 'VALID');
  return { key, secret };
}

// "…" > Roll: the grace choice and its sentence, then the new key once in
// the Created pop-up; the old key is marked Expiring and still verifies.
async function roll(p, old, oldSecret) {
  const opener = await keyAction(p, old, 'Roll');
  const dialog = p.getByRole('dialog').filter({ hasText: 'Roll Key' });
  await dialog.waitFor();
  const grace = dialog.getByRole('combobox', { name: 'Keep the old key working', exact: true });
  assert.deepEqual(await grace.locator('option').allInnerTexts(), ['Immediately', '1 hour', '24 hours', '7 days', '30 days']);
  assert.equal(await grace.inputValue(), String(DAY_S), 'the grace starts on 24 hours');
  const sentence = dialog.getByText(/^The old key stops working /);
  const in24h = Date.now() + DAY_S * 1000;
  const expected = [await shownDate(p, new Date(in24h).toISOString()), await shownDate(p, new Date(in24h + 60_000).toISOString())];
  const said = await sentence.innerText();
  assert.ok(expected.some((d) => said === `The old key stops working on ${d}.`), `${JSON.stringify(said)} names ${expected[0]}`);
  await grace.selectOption({ label: 'Immediately' });
  await until(async () => (await sentence.innerText()) === 'The old key stops working immediately.', 'Immediately changes the sentence');
  await grace.selectOption({ label: '7 days' });
  await until(async () => (await sentence.innerText()) !== said && /on .+\.$/.test(await sentence.innerText()), '7 days changes the date');
  await grace.selectOption({ label: '24 hours' });
  await shot(p, 'roll-key');
  await dialog.getByRole('button', { name: 'Roll key', exact: true }).click();

  const { created, secret, text } = await takeShownKey(p);
  assert.match(secret, KEY_RE);
  assert.notEqual(secret, oldSecret, 'the roll shows a new key');
  assert.match(text, /The old key stops working on /, 'the Created pop-up says when the old key stops');
  await shot(p, 'rolled-key-created');
  await closeCreated(p, created, secret);

  const previous = await findKey((k) => k.id === old.id, 'the old key is still listed');
  assert.equal(previous.status, 'expiring', `the old key: ${JSON.stringify(previous)}`);
  assert.ok(previous.rolled_to, 'the old key names its successor');
  const key = await findKey((k) => k.id === previous.rolled_to, 'the new key is listed');
  assert.equal(key.rolled_from, old.id);
  assert.equal(key.name, old.name);
  const oldRow = rowOf(p, previous);
  await oldRow.getByText('Expiring', { exact: true }).waitFor();
  await oldRow.locator('td.expiry-soon').getByText(await shownDate(p, previous.expires_at)).waitFor();
  assert.equal(await oldRow.locator('td.expiry-soon').count(), 1, 'the old key, expiring within 7 days, is highlighted');
  await rowOf(p, key).getByText('Active', { exact: true }).waitFor();
  assert.equal((await srv.verify(secret)).code, 'VALID', 'the new key verifies');
  assert.equal((await srv.verify(oldSecret)).code, 'VALID', 'the old key verifies during its grace period');
  assert.ok(opener, 'the menu had a button');
  await shot(p, 'rolled');
  return { key, secret, previous };
}

// "…" > Disable: the consequence, then Disabled in the list and DISABLED
// from verification; the count still holds it.
async function disable(p, key, secret) {
  const countBefore = (await srv.listKeys()).active_count;
  await keyAction(p, key, 'Disable');
  const dialog = p.getByRole('dialog').filter({ hasText: 'Disable Key' });
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /Applications using this key lose access immediately\./);
  await shot(p, 'disable-key');
  await dialog.getByRole('button', { name: 'Disable key', exact: true }).click();
  await dialog.waitFor({ state: 'hidden' });
  await rowOf(p, key).getByText('Disabled', { exact: true }).waitFor();
  await p.getByText(/a disabled key still occupies its slot/).filter({ visible: true }).first().waitFor();
  await counter(p, countBefore).waitFor();
  const v = await srv.verify(secret);
  assert.equal(v.code, 'DISABLED', `verify a disabled key: ${JSON.stringify(v)}`);
  await shot(p, 'disabled');
}

async function enable(p, key, secret) {
  await keyAction(p, key, 'Enable');
  const dialog = p.getByRole('dialog').filter({ hasText: 'Enable Key' });
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /regain access immediately/);
  await dialog.getByRole('button', { name: 'Enable key', exact: true }).click();
  await dialog.waitFor({ state: 'hidden' });
  await rowOf(p, key).getByText('Active', { exact: true }).waitFor();
  assert.equal((await srv.verify(secret)).code, 'VALID', 'an enabled key verifies again');
}

// "…" > Rename: the current name to edit, the same check as Create.
async function rename(p, key, secret, name) {
  await keyAction(p, key, 'Rename');
  const dialog = p.getByRole('dialog').filter({ hasText: 'Rename Key' });
  await dialog.waitFor();
  const field = dialog.getByLabel('API Key Name', { exact: true });
  assert.equal(await field.inputValue(), key.name, 'the field starts on the current name');
  await field.fill('   ');
  await dialog.getByRole('button', { name: 'Rename key', exact: true }).click();
  await dialog.getByRole('alert').filter({ hasText: 'Enter a name for the key.' }).waitFor();
  await field.fill(name);
  await shot(p, 'rename-key');
  await dialog.getByRole('button', { name: 'Rename key', exact: true }).click();
  await dialog.waitFor({ state: 'hidden' });
  await rowOf(p, key).getByText(name, { exact: true }).waitFor();
  const v = await srv.verify(secret);
  assert.equal(v.name, name, `verify names the key by its new name: ${JSON.stringify(v)}`);
  return { ...key, name };
}

// Danger zone > Revoke all keys…: the button stays disabled until the
// account's name is typed; then "N keys revoked".
async function revokeAll(p, environment) {
  await gotoApiKeys(p);
  const before = await srv.listKeys();
  const expected = before.keys.filter((k) => !environment || k.environment === environment).length;
  const account = await srv.api('GET', `/v1/accounts/${srv.accountId}`, { root: true });
  const word = account.body.name;
  await p.getByRole('heading', { name: 'Danger zone', exact: true }).scrollIntoViewIfNeeded();
  await p.getByRole('button', { name: 'Revoke all keys…', exact: true }).click();
  const dialog = p.getByRole('dialog').filter({ hasText: 'Revoke All Keys' });
  await dialog.waitFor();
  await dialog.getByRole('combobox', { name: 'Environment' }).selectOption(environment || '');
  const confirm = dialog.getByRole('button', { name: 'Revoke keys', exact: true });
  assert.equal(await confirm.isDisabled(), true, 'Revoke keys is disabled before anything is typed');
  const typed = dialog.getByRole('textbox', { name: /to confirm/ });
  await typed.fill(`${word}x`);
  assert.equal(await confirm.isDisabled(), true, 'Revoke keys stays disabled for a wrong name');
  await typed.fill(word);
  await until(() => confirm.isEnabled(), 'Revoke keys is enabled once the account name is typed');
  await shot(p, 'revoke-all');
  await confirm.click();
  await dialog.waitFor({ state: 'hidden' });
  await p.getByText(`${expected} key${expected === 1 ? '' : 's'} revoked.`, { exact: true }).waitFor();
  const after = await srv.listKeys();
  assert.equal(after.keys.length, before.keys.length - expected, 'the keys of that environment are gone');
  if (environment) assert.ok(after.keys.every((k) => k.environment !== environment), 'none of that environment is left');
  await counter(p, after.active_count).waitFor();
  await shot(p, 'revoked');
  return expected;
}

// Activity: newest first, the actions named, Load more until the end; every
// entry of the account's audit log, and no secret anywhere.
async function activity(p, mustShow, secrets) {
  await p.reload(); // the list as it is now, changes made through the API included
  await gotoApiKeys(p);
  const heading = p.getByRole('heading', { name: 'Activity', exact: true });
  await heading.scrollIntoViewIfNeeded();
  const table = p.getByRole('table', { name: /Activity/ });
  const rows = table.locator('tbody tr');
  await until(async () => (await rows.count()) > 0, 'the activity list shows entries');
  const firstPage = await rows.count();
  const more = p.getByRole('button', { name: 'Load more', exact: true });
  await shot(p, 'activity');
  let pages = 1;
  while (await more.isVisible()) {
    const had = await rows.count();
    await more.click();
    await until(async () => (await rows.count()) > had, 'Load more adds entries');
    pages++;
    assert.ok(pages < 20, 'Load more ends');
  }
  await until(async () => !(await more.isVisible()), 'Load more hides after the last page');
  const all = await srv.api('GET', `/v1/accounts/${srv.accountId}/audit?limit=200`, { root: true });
  assert.equal(all.status, 200, JSON.stringify(all.body));
  const total = await rows.count();
  assert.equal(total, all.body.entries.length, `every entry, once (${firstPage} on the first page, ${pages} pages)`);
  assert.ok(pages >= 2, `the list pages (${total} entries in ${pages} pages)`);
  const times = await rows.locator('td:first-child time').evaluateAll((els) => els.map((e) => Date.parse(e.getAttribute('datetime'))));
  for (let i = 1; i < times.length; i++) assert.ok(times[i] <= times[i - 1], `newest first: entry ${i}`);
  const text = await table.innerText();
  for (const what of mustShow) assert.ok(text.includes(what), `the activity shows "${what}"`);
  assert.ok(text.includes(srv.email), 'the activity names the signed-in admin');
  assert.ok(/127\.0\.0\.1/.test(text), 'the activity shows the source IP');
  const html = await p.content();
  for (const s of secrets) assert.ok(!html.includes(s), 'no secret in the page');
  assert.ok(!/kw_(production|staging)_[A-Za-z0-9]{49}/.test(html), 'no key in the page');
  await shot(p, 'activity-all');
}

// The "…" menu by keyboard: Enter opens on the first entry, arrows, Home
// and End move, Esc closes and gives focus back to "…"; ArrowUp opens on
// the last entry.
async function menuByKeyboard(p, key) {
  const button = rowOf(p, key).getByRole('button', { name: `Actions for ${key.name}`, exact: true });
  await button.focus();
  await p.keyboard.press('Enter');
  const menu = p.getByRole('menu', { name: `Actions for ${key.name}`, exact: true });
  await menu.waitFor();
  const focused = () => p.evaluate(() => document.activeElement.textContent.trim());
  const items = await menu.getByRole('menuitem').allInnerTexts();
  assert.deepEqual(items, ['Roll', 'Disable', 'Rename', 'Delete']);
  assert.equal(await button.getAttribute('aria-expanded'), 'true');
  await until(async () => (await focused()) === 'Roll', 'Enter opens on Roll');
  await shot(p, 'actions-menu');
  await p.keyboard.press('ArrowDown');
  assert.equal(await focused(), 'Disable');
  await p.keyboard.press('End');
  assert.equal(await focused(), 'Delete');
  await p.keyboard.press('ArrowDown');
  assert.equal(await focused(), 'Roll', 'ArrowDown wraps to the first entry');
  await p.keyboard.press('Escape');
  await menu.waitFor({ state: 'hidden' });
  assert.ok(await button.evaluate((b) => b === document.activeElement), 'Esc gives focus back to "…"');
  await p.keyboard.press('ArrowUp');
  await menu.waitFor();
  assert.equal(await focused(), 'Delete', 'ArrowUp opens on the last entry');
  await p.keyboard.press('Escape');
  await menu.waitFor({ state: 'hidden' });
}

// ---- the tests ----

const suite = new Suite({
  timeoutMs: TEST_TIMEOUT_MS,
  // Keeps one failure from causing the next: the screenshot shows where it
  // stopped, then a reload closes any dialog it left open.
  onFailure: async () => {
    if (srv) suite.diag(`server log (last lines):\n${srv.log().trim().split('\n').slice(-8).join('\n')}`);
    if (page && !page.isClosed()) {
      await shot(page, 'failed');
      await page.reload().catch(() => {});
    }
    const phone = state.phone && state.phone.page;
    if (phone && !phone.isClosed()) {
      await shot(phone, 'phone-failed');
      await phone.reload().catch(() => {});
    }
  },
});
const test = (name, fn, opts) =>
  suite.test(
    name,
    async (t) => {
      currentTest = t;
      await fn();
    },
    opts,
  );

const SIGNED_IN = ['sign in: a wrong password shows an inline error, the right one signs in'];

test(SIGNED_IN[0], async () => {
  await page.goto(`${srv.origin}/sign-in`);
  await page.getByLabel('Email', { exact: true }).waitFor();
  await shot(page, 'sign-in');

  await signIn(page, `${srv.password}-wrong`);
  const alert = page.getByRole('alert').filter({ hasText: /\S/ }).first();
  await alert.waitFor();
  const message = await alert.innerText();
  assert.equal(new URL(page.url()).pathname, '/sign-in', 'a failed sign-in stays on the sign-in page');
  assert.ok(!message.includes(srv.password), 'the error does not echo the password');
  await shot(page, 'sign-in-wrong-password');

  await signIn(page, srv.password);
  await page.waitForURL((u) => u.pathname !== '/sign-in');
  const cookies = await context.cookies(srv.origin);
  assert.ok(cookies.length > 0, 'signing in sets a cookie');
  for (const c of cookies) {
    assert.equal(c.httpOnly, true, `cookie ${c.name} is HttpOnly`);
    assert.equal(c.sameSite, 'Strict', `cookie ${c.name} is SameSite=Strict`);
    assert.equal(c.path, '/', `cookie ${c.name} has Path=/`);
  }
  const s = await srv.api('GET', '/v1/session', { headers: { Cookie: cookieHeader(cookies) } });
  assert.equal(s.status, 200, `GET /v1/session with the browser's cookie: ${JSON.stringify(s.body)}`);
  assert.equal(s.body.user.email, srv.email);
  assert.equal(s.body.user.account_id, srv.accountId);
  await shot(page, 'signed-in');
});

test(
  'gear "Settings" > Account Integrations > APIs & Webhooks: the API Keys section, "0 of 25 keys"',
  async () => {
    // Signing in may land on Account Integrations already: start elsewhere, so
    // that the menu has to do the navigating.
    await page.goto(`${srv.origin}/settings/integrations/api`);
    const gear = page.getByRole('button', { name: 'Settings', exact: true });
    await gear.waitFor();
    const box = await gear.boundingBox();
    assert.ok(box.x + box.width / 2 > DESKTOP.width * 0.75 && box.y < 120, `the gear is at the top right: ${JSON.stringify(box)}`);
    await gear.click();
    const item = page.getByRole('menuitem', { name: 'Account Integrations' }).or(page.getByRole('link', { name: 'Account Integrations' })).first();
    await item.waitFor();
    await shot(page, 'settings-menu');
    await item.click();
    await page.waitForURL((u) => u.pathname === '/settings/integrations');
    await page.getByRole('heading', { name: 'Account Integrations' }).waitFor();
    const tile = page.getByRole('link', { name: 'APIs & Webhooks' }).or(page.getByRole('button', { name: 'APIs & Webhooks' })).first();
    await tile.waitFor();
    await shot(page, 'account-integrations');
    await tile.click();
    await page.waitForURL((u) => u.pathname === '/settings/integrations/api');
    await page.getByRole('heading', { name: 'API Keys', exact: true }).waitFor();
    await counter(page, 0).waitFor();
    await createButton(page).waitFor();
    assert.equal(await createButton(page).isEnabled(), true, 'Create API key is enabled below the limit');
    await shot(page, 'api-keys-empty');
  },
  { needs: SIGNED_IN },
);

test(
  'create a key: API Key Name "Production CRM", production; Generate key shows it once',
  async () => {
    await gotoApiKeys(page);
    await createButton(page).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    await dialog.getByLabel('API Key Name', { exact: true }).fill('Production CRM');
    const select = dialog.getByRole('combobox', { name: 'Environment' });
    if ((await select.count()) > 0) {
      assert.equal(await select.inputValue(), 'production', 'the environment starts on production');
    } else {
      const radio = dialog.getByRole('radiogroup', { name: 'Environment' }).getByRole('radio', { name: /production/i });
      assert.equal(await radio.isChecked(), true, 'the environment starts on production');
    }
    await shot(page, 'create-key');
    await dialog.getByRole('button', { name: 'Generate key', exact: true }).click();

    const created = page.getByRole('dialog').filter({ hasText: 'API Key Created Successfully' });
    await created.waitFor();
    const text = `${await created.innerText()}\n${(await created.locator('input, textarea').evaluateAll((els) => els.map((e) => e.value))).join('\n')}`;
    const shown = [...new Set(text.match(/kw_[A-Za-z0-9_]+/g) || [])];
    assert.equal(shown.length, 1, `one key shown: ${JSON.stringify(shown)}`);
    assert.match(shown[0], KEY_RE);
    assert.match(
      text,
      /only (be )?(shown|displayed) once|(will|won.t) not be (shown|displayed) again|not be (shown|displayed) again|cannot be (shown|displayed|retrieved) again/i,
      'the pop-up warns that the key is shown only once',
    );
    state.secret = shown[0];
    const list = await srv.listKeys();
    assert.equal(list.active_count, 1);
    assert.equal(list.keys[0].name, 'Production CRM');
    assert.equal(list.keys[0].environment, 'production');
    state.key = list.keys[0];
    await shot(page, 'key-created');
  },
  { needs: SIGNED_IN },
);

const CREATED = ['create a key: API Key Name "Production CRM", production; Generate key shows it once'];

test(
  'Copy & close: the clipboard holds the key, it verifies, it is gone from the DOM, the list shows it masked',
  async () => {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: srv.origin });
    const created = page.getByRole('dialog').filter({ hasText: 'API Key Created Successfully' });
    await created.getByRole('button', { name: 'Copy & close', exact: true }).click();
    await created.waitFor({ state: 'hidden' });

    const clip = await page.evaluate(() => navigator.clipboard.readText());
    assert.equal(clip, state.secret, 'the clipboard holds exactly the key that was shown');
    const v = await srv.verify(clip);
    assert.equal(v.code, 'VALID', `verify: ${JSON.stringify(v)}`);
    assert.equal(v.name, 'Production CRM');
    assert.equal(v.environment, 'production');
    assert.equal(v.key_id, state.key.id);

    // The secret, or any long piece of it, anywhere in the document or a field.
    const pieces = [state.secret, state.secret.slice('kw_production_'.length, 'kw_production_'.length + 16), state.secret.slice(-16)];
    await until(async () => {
      const html = await page.content();
      const values = (await inputValues(page)).join('\n');
      return pieces.every((s) => !html.includes(s) && !values.includes(s));
    }, 'the key is still in the page after Copy & close');

    await counter(page, 1).waitFor();
    const row = keyRow(page, 'Production CRM');
    await row.first().waitFor();
    const rowText = await row.first().innerText();
    assert.ok(rowText.includes(state.key.masked), `the list shows the masked key ${state.key.masked}: ${JSON.stringify(rowText)}`);
    assert.match(rowText, /production/i, 'the list shows the environment');
    await shot(page, 'api-keys-list');
  },
  { needs: CREATED },
);

test(
  'dialogs are real: role dialog, focus kept inside on Tab and Shift+Tab, Esc closes and focus returns',
  async () => {
    await gotoApiKeys(page);
    const button = createButton(page);
    await button.focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    // Inside means on a control of the dialog, with the document focused: not
    // on the page behind it, and not out in the browser's own toolbar.
    const focus = () =>
      dialog.evaluate((d) => ({
        inside: document.hasFocus() && d.contains(document.activeElement) && document.activeElement !== d,
        hasFocus: document.hasFocus(),
        active: document.activeElement.outerHTML.slice(0, 80),
      }));
    const modal = await dialog.evaluate((d) => (d.tagName === 'DIALOG' && d.matches(':modal')) || d.getAttribute('aria-modal') === 'true');
    assert.ok(modal, 'the dialog is modal (showModal() or aria-modal)');
    assert.ok(await dialog.getAttribute('aria-labelledby') || await dialog.getAttribute('aria-label'), 'the dialog has an accessible name');
    await until(async () => (await focus()).inside, 'the focus moves into the dialog when it opens');
    const seen = new Set();
    const presses = [];
    for (const key of [...Array(8).fill('Tab'), ...Array(8).fill('Shift+Tab')]) {
      await page.keyboard.press(key);
      const f = await focus();
      presses.push(key);
      assert.ok(f.inside, `after ${presses.join(', ')} the focus left the dialog: document focused ${f.hasFocus}, active element ${f.active}`);
      seen.add(f.active);
    }
    assert.ok(seen.size >= 2, `Tab moves between the dialog's controls: ${[...seen].join(' | ')}`);
    await shot(page, 'create-dialog');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    await until(() => button.evaluate((b) => b === document.activeElement), 'the focus returns to Create API key after Esc');
    await counter(page, 1).waitFor(); // Esc created nothing
    assert.equal((await srv.listKeys()).active_count, 1);
  },
  { needs: SIGNED_IN },
);

test(
  'a name with an invisible character (U+200B): the server refuses it and the dialog shows its message; nothing is created',
  async () => {
    await gotoApiKeys(page);
    const before = await srv.listKeys();
    await createButton(page).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    await dialog.getByLabel('API Key Name', { exact: true }).fill('Vendor\u200bA');
    await dialog.getByRole('button', { name: 'Generate key', exact: true }).click();
    const alert = dialog.getByRole('alert').filter({ hasText: 'U+200B' });
    await alert.waitFor();
    assert.match(await alert.innerText(), /name must not contain invisible or formatting characters \(found U\+200B\)/);
    await shot(page, 'invisible-name');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    const after = await srv.listKeys();
    assert.deepEqual(after.keys.map((k) => k.id), before.keys.map((k) => k.id), 'nothing was created');
  },
  { needs: SIGNED_IN },
);

test(
  'delete it: "…" > Delete, the Delete Key pop-up warns, Delete key; gone from the list, fails verification',
  async () => {
    await gotoApiKeys(page);
    await keyAction(page, state.key, 'Delete');
    const dialog = page.getByRole('dialog').filter({ hasText: 'Delete Key' });
    await dialog.waitFor();
    assert.match(await dialog.innerText(), /any application using this key will immediately lose access/i);
    await shot(page, 'delete-key');
    await dialog.getByRole('button', { name: 'Delete key', exact: true }).click();
    await dialog.waitFor({ state: 'hidden' });
    await counter(page, 0).waitFor();
    await until(async () => (await keyRow(page, 'Production CRM').count()) === 0, 'the list still shows the deleted key');
    assert.ok(!(await page.content()).includes(state.key.masked), 'the masked key is gone from the page');
    const v = await srv.verify(state.secret);
    assert.equal(v.code, 'NOT_FOUND', `verify after delete: ${JSON.stringify(v)}`);
    assert.equal((await srv.listKeys()).active_count, 0);
    await shot(page, 'deleted');
  },
  { needs: CREATED },
);

test(
  'create a key with Expiry "30 days" (Never, 30, 60, 90 days, Custom date): the list shows the date, Active',
  async () => {
    state.billing = await createWithExpiry(page, 'Billing Service');
  },
  { needs: SIGNED_IN },
);

const BILLING = ['create a key with Expiry "30 days" (Never, 30, 60, 90 days, Custom date): the list shows the date, Active'];

test(
  'the "…" menu of a key by keyboard: Roll, Disable, Rename, Delete; arrows, Home/End, Esc back to "…"',
  async () => {
    await menuByKeyboard(page, state.billing.key);
  },
  { needs: BILLING },
);

test(
  '"…" > Roll: grace 24 hours by default, "The old key stops working on <date>."; the new key shown once; the old one Expiring and still valid',
  async () => {
    state.rolled = await roll(page, state.billing.key, state.billing.secret);
  },
  { needs: BILLING },
);

const ROLLED = ['"…" > Roll: grace 24 hours by default, "The old key stops working on <date>."; the new key shown once; the old one Expiring and still valid'];

test(
  '"…" > Disable: "lose access immediately", Disabled in the list, verification says DISABLED; "…" > Enable: Active and VALID again',
  async () => {
    await disable(page, state.rolled.key, state.rolled.secret);
    await enable(page, state.rolled.key, state.rolled.secret);
  },
  { needs: ROLLED },
);

test(
  '"…" > Rename: an empty name is refused as at creation; the new name in the list and in verification',
  async () => {
    state.rolled.key = await rename(page, state.rolled.key, state.rolled.secret, 'Billing Service v2');
  },
  { needs: ROLLED },
);

test(
  'the limit: keys made through the API up to 25, reload: "25 of 25 keys", Create API key disabled and why',
  async () => {
    const have = (await srv.listKeys()).active_count; // 0 unless "delete it" failed
    for (let i = have + 1; i <= KEY_LIMIT; i++) {
      await srv.createKey(`Integration ${String(i).padStart(2, '0')}`, i % 3 === 0 ? 'staging' : 'production');
    }
    await page.reload();
    await gotoApiKeys(page);
    await counter(page, KEY_LIMIT).waitFor();
    const button = createButton(page);
    await button.waitFor();
    assert.equal(await button.isDisabled(), true, 'Create API key is disabled at the limit');
    const why = page.getByText(/limit|maximum/i).filter({ visible: true });
    await until(async () => (await why.count()) > 0, 'no visible text says why Create API key is disabled');
    suite.diag(`explanation: ${JSON.stringify(await why.first().innerText())}`);
    await page.getByText('Integration 25').first().waitFor();
    await shot(page, 'limit');
  },
  { needs: SIGNED_IN },
);

test(
  'CSRF and Origin: a foreign Origin, a missing or wrong X-CSRF-Token are refused (403); nothing changes',
  async () => {
    const cookie = await sessionCookie();
    const s = await srv.api('GET', '/v1/session', { headers: { Cookie: cookie } });
    assert.equal(s.status, 200, `GET /v1/session: ${JSON.stringify(s.body)}`);
    const token = s.body.csrf_token;
    assert.ok(typeof token === 'string' && token.length >= 16, 'the session has a CSRF token');
    const before = await srv.listKeys();
    const target = before.keys[0].id;
    const keysPath = `/v1/accounts/${srv.accountId}/keys`;
    const body = { name: 'Forged' };
    const refused = [
      ['POST keys, right token, Origin evil', 'POST', keysPath, { 'X-CSRF-Token': token, Origin: EVIL }],
      ['POST keys, right Origin, no X-CSRF-Token', 'POST', keysPath, { Origin: srv.origin }],
      ['POST keys, right Origin, wrong X-CSRF-Token', 'POST', keysPath, { 'X-CSRF-Token': `${token}x`, Origin: srv.origin }],
      ['POST keys, right token, no Origin', 'POST', keysPath, { 'X-CSRF-Token': token }],
      ['DELETE key, right token, Origin evil', 'DELETE', `${keysPath}/${target}`, { 'X-CSRF-Token': token, Origin: EVIL }],
      ['DELETE key, right Origin, no X-CSRF-Token', 'DELETE', `${keysPath}/${target}`, { Origin: srv.origin }],
    ];
    const wrong = [];
    for (const [what, method, p, headers] of refused) {
      const r = await srv.api(method, p, { headers: { Cookie: cookie, ...headers }, body: method === 'POST' ? body : undefined });
      if (r.status !== 403 || r.body?.error?.code !== 'forbidden') wrong.push(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    const signIn = await srv.api('POST', '/v1/session', { headers: { Origin: EVIL }, body: { email: srv.email, password: srv.password } });
    if (signIn.status !== 403 || signIn.headers.get('set-cookie')) {
      wrong.push(`sign-in POST with Origin evil: ${signIn.status} set-cookie=${signIn.headers.get('set-cookie')}`);
    }
    assert.deepEqual(wrong, [], 'every forged request gets 403 forbidden');
    const after = await srv.listKeys();
    assert.deepEqual(after.keys.map((k) => k.id), before.keys.map((k) => k.id), 'nothing was created or deleted');

    // The same session, token and Origin together do delete: the 403s above
    // were for the Origin and the token, not a bad cookie.
    const ok = await srv.api('DELETE', `${keysPath}/${target}`, { headers: { Cookie: cookie, 'X-CSRF-Token': token, Origin: srv.origin } });
    assert.equal(ok.status, 204, `DELETE with the right token and Origin: ${ok.status} ${JSON.stringify(ok.body)}`);
    assert.equal((await srv.listKeys()).active_count, before.active_count - 1);
  },
  { needs: SIGNED_IN },
);

test(
  'Danger zone > Revoke all keys…: production only; Revoke keys disabled until the account name is typed; "N keys revoked"',
  async () => {
    const n = await revokeAll(page, 'production');
    assert.ok(n > 0, 'there were production keys to revoke');
  },
  { needs: SIGNED_IN },
);

test(
  'Activity: newest first, who, what, key, source IP; Load more pages to the end; no secret',
  async () => {
    const secrets = [state.secret, state.billing && state.billing.secret, state.rolled && state.rolled.secret].filter(Boolean);
    await activity(page, ['Created a key', 'Deleted a key', 'Rolled a key', 'Disabled a key', 'Enabled a key', 'Renamed a key', 'Revoked a key', 'Signed in'], secrets);
  },
  { needs: SIGNED_IN },
);

test(
  'sign out from the gear menu: back on the sign-in page, the old cookie gets 401',
  async () => {
    const cookie = await sessionCookie();
    await page.getByRole('button', { name: 'Settings', exact: true }).click();
    const signOut = menuEntry(page, 'Sign out');
    await signOut.waitFor();
    await signOut.click();
    await page.waitForURL((u) => u.pathname === '/sign-in');
    await page.getByLabel('Email', { exact: true }).waitFor();
    await shot(page, 'signed-out');
    const s = await srv.api('GET', '/v1/session', { headers: { Cookie: cookie } });
    assert.equal(s.status, 401, `the ended session's cookie replayed on GET /v1/session: ${s.status} ${JSON.stringify(s.body)}`);
  },
  { needs: SIGNED_IN },
);

test('phone width (375x812): sign in and the API keys page, no horizontal overflow, "…" and its Delete on screen', async () => {
  const phone = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  try {
    phone.setDefaultTimeout(ACTION_TIMEOUT_MS);
    const p = await phone.newPage();
    watch(p);
    await p.goto(`${srv.origin}/sign-in`);
    await signIn(p, srv.password);
    await p.waitForURL((u) => u.pathname !== '/sign-in');
    await p.goto(`${srv.origin}/settings/integrations/api`);
    await p.getByRole('heading', { name: 'API Keys', exact: true }).waitFor();
    await createButton(p).waitFor();
    await p.getByRole('button', { name: 'Settings', exact: true }).waitFor();
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    await shot(p, 'phone-api-keys');
    assert.ok(width <= PHONE.width + 1, `the page is ${width} px wide at ${PHONE.width} px`);
    // The list too: a key's "…" menu and its Delete are on the screen, not
    // past its right edge.
    const more = p.getByRole('button', { name: /^Actions for / }).first();
    await more.scrollIntoViewIfNeeded();
    const moreBox = await more.boundingBox();
    assert.ok(moreBox && moreBox.x >= 0 && moreBox.x + moreBox.width <= PHONE.width + 1, `a key's "…" at phone width: ${JSON.stringify(moreBox)}`);
    await more.click();
    const del = p.getByRole('menuitem', { name: 'Delete', exact: true });
    await del.waitFor();
    const box = await del.boundingBox();
    await shot(p, 'phone-api-keys-list');
    assert.ok(box && box.x >= 0 && box.x + box.width <= PHONE.width + 1 && box.y + box.height <= PHONE.height,
      `a key's Delete at phone width: ${JSON.stringify(box)}`);
    await p.keyboard.press('Escape');
    await del.waitFor({ state: 'hidden' });
  } finally {
    await phone.close();
  }
});

// The same lifecycle at phone width, on a page of its own.
async function phonePage() {
  if (state.phone) return state.phone.page;
  const ctx = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  ctx.setDefaultTimeout(ACTION_TIMEOUT_MS);
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: srv.origin });
  const p = await ctx.newPage();
  watch(p);
  state.phone = { context: ctx, page: p };
  await p.goto(`${srv.origin}/sign-in`);
  await signIn(p, srv.password);
  await p.waitForURL((u) => u.pathname !== '/sign-in');
  return p;
}

const PHONE_CREATED = ['phone width: create a key with Expiry "30 days"; the date in its card'];

test(PHONE_CREATED[0], async () => {
  const p = await phonePage();
  state.phoneKey = await createWithExpiry(p, 'Phone Key');
  await noOverflow(p);
});

test(
  'phone width: "…" > Roll, the new key once, the old one Expiring; the menu on screen',
  async () => {
    const p = await phonePage();
    state.phoneRolled = await roll(p, state.phoneKey.key, state.phoneKey.secret);
    await noOverflow(p);
  },
  { needs: PHONE_CREATED },
);

const PHONE_ROLLED = ['phone width: "…" > Roll, the new key once, the old one Expiring; the menu on screen'];

test(
  'phone width: "…" > Disable, then Enable',
  async () => {
    const p = await phonePage();
    await disable(p, state.phoneRolled.key, state.phoneRolled.secret);
    await noOverflow(p);
    await enable(p, state.phoneRolled.key, state.phoneRolled.secret);
  },
  { needs: PHONE_ROLLED },
);

test(
  'phone width: "…" > Rename',
  async () => {
    const p = await phonePage();
    state.phoneRolled.key = await rename(p, state.phoneRolled.key, state.phoneRolled.secret, 'Phone Key v2');
    await noOverflow(p);
  },
  { needs: PHONE_ROLLED },
);

test(
  'phone width: Revoke all keys… of all environments, typed confirmation; then Activity pages to the end',
  async () => {
    const p = await phonePage();
    const before = (await srv.listKeys()).keys.length;
    assert.equal(await revokeAll(p, ''), before);
    assert.equal((await srv.listKeys()).keys.length, 0, 'no key is left');
    await noOverflow(p);
    await activity(p, ['Rolled a key', 'Disabled a key', 'Enabled a key', 'Renamed a key', 'Revoked a key'], [state.phoneKey.secret]);
    await noOverflow(p);
  },
  { needs: PHONE_CREATED, timeoutMs: 60_000 },
);

test('no uncaught script error or Content-Security-Policy violation on any page', async () => {
  assert.deepEqual(pageProblems, []);
});

test('the server stops cleanly on SIGTERM after all this (exit 0; under ASan, no leak report)', async () => {
  await browser.close();
  const exit = await srv.stop();
  assert.deepEqual(exit, { code: 0, signal: null }, `keyward serve exited ${JSON.stringify(exit)}: ${srv.log().slice(-1500)}`);
});

// ---- run ----

async function main() {
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  const started = Date.now();
  try {
    srv = await startServer();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Chromium refuses to start its sandbox as root (make test runs as root
      // in CI): only then is it turned off. The page is our own console on
      // loopback, not the web.
      args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
      // Our own SIGTERM handler stops the server too; playwright still kills
      // the browser when this process exits.
      handleSIGTERM: false,
      handleSIGINT: false,
      timeout: 30_000,
    });
    context = await browser.newContext({ viewport: DESKTOP });
    context.setDefaultTimeout(ACTION_TIMEOUT_MS);
    page = await context.newPage();
    watch(page);
  } catch (err) {
    console.log('1..1');
    console.log('not ok 1 - set-up: start keyward serve and chromium');
    suite.diag(err.stack || String(err));
    if (srv) suite.diag(srv.log().slice(-2000));
    return 1;
  }
  let failed;
  try {
    failed = await suite.run();
  } finally {
    await browser.close().catch(() => {});
    const exit = await srv.stop();
    suite.diag(`server stopped: ${JSON.stringify(exit)}; ${shotCount} screenshots in ${SHOTS}; ${((Date.now() - started) / 1000).toFixed(1)} s`);
    srv = null;
  }
  return failed ? 1 : 0;
}

process.exitCode = await main();
