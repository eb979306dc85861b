// api.js - talking to keyward: the session and the key API.
//
// The CSRF token lives in this module's memory only; every page load asks
// GET /v1/session for it again. Nothing here logs, stores or puts into an
// error message a password or a key.

let session = null; // {user: {id, email, account_id}, csrf_token}

export class ApiError extends Error {
  // status 0 means the request never got an answer (network, offline).
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // seconds, when the server said
  }
}

function parseRetryAfter(value) {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, Math.round((when - Date.now()) / 1000));
}

// One request. Resolves with the parsed JSON body (null for 204), rejects
// with an ApiError.
export async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && session) {
    headers['X-CSRF-Token'] = session.csrf_token;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'The server could not be reached.');
  }
  let data = null;
  const text = await res.text().catch(() => '');
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(
      res.status,
      err.code || 'http_' + res.status,
      typeof err.message === 'string' ? err.message : '',
      parseRetryAfter(res.headers.get('Retry-After')),
    );
  }
  return data;
}

export function currentSession() {
  return session;
}

// Asks the server who is signed in. Resolves with the session or null
// (signed out); rejects with an ApiError when the server cannot tell.
export async function loadSession() {
  try {
    session = await request('GET', '/v1/session');
  } catch (err) {
    if (err.status === 401) {
      session = null;
    } else {
      throw err;
    }
  }
  return session;
}

export async function signIn(email, password) {
  session = null;
  session = await request('POST', '/v1/session', { email, password });
  return session;
}

export async function signOut() {
  try {
    await request('DELETE', '/v1/session');
  } catch (err) {
    if (err.status !== 401) throw err; // 401: already gone, which is the goal
  }
  session = null;
}

export function forgetSession() {
  session = null;
}

function accountPath() {
  return `/v1/accounts/${encodeURIComponent(session.user.account_id)}`;
}

function keysPath(keyId) {
  const base = `${accountPath()}/keys`;
  return keyId ? `${base}/${encodeURIComponent(keyId)}` : base;
}

// Resolves with {id, name, …}.
export function getAccount() {
  return request('GET', accountPath());
}

export function listKeys() {
  return request('GET', keysPath());
}

// Resolves with {key, secret}. The caller owns the secret and must drop it
// as soon as it has been shown. `expiry` is {} (never), {expires_in:
// seconds} or {expires_at: RFC 3339}.
export function createKey(name, environment, expiry = {}) {
  return request('POST', keysPath(), { name, environment, ...expiry });
}

// Resolves with {key, secret, previous}: the new key and its secret (the
// same care as a create's), and the old key with the time it stops working.
export function rollKey(keyId, graceSeconds) {
  return request('POST', `${keysPath(keyId)}/roll`, { grace_seconds: graceSeconds });
}

// `changes`: any of name, enabled, expires_at, metadata. Resolves with the key.
export function updateKey(keyId, changes) {
  return request('PATCH', keysPath(keyId), changes);
}

export function deleteKey(keyId) {
  return request('DELETE', keysPath(keyId));
}

// Deletes every key of the account, or only those of `environment`.
// Resolves with {revoked: N}.
export function revokeAllKeys(environment) {
  return request('POST', `${keysPath()}/revoke`, environment ? { environment } : {});
}

// One page of the account's activity, newest first. Resolves with
// {entries, next_cursor}; next_cursor is null on the last page.
export function listAudit(limit, cursor) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set('cursor', cursor);
  return request('GET', `${accountPath()}/audit?${query}`);
}

// Plain words for an error, for the place it is shown. `what` names the
// action in the sentence ("create the key").
export function describeError(err, what) {
  if (!(err instanceof ApiError)) {
    return `Something went wrong. Could not ${what}.`;
  }
  switch (err.status) {
    case 0:
      return `Could not reach the server, so we could not ${what}. Check your connection and try again.`;
    case 400:
      return err.message || `The server could not ${what}: the request was not valid.`;
    case 401:
      return 'Your session has ended. Sign in again.';
    case 403:
      return `You are not allowed to ${what}. Reload the page and try again.`;
    case 404:
      return `That no longer exists, so we could not ${what}. It may have been deleted already.`;
    case 409:
      if (err.code === 'key_state') {
        return err.message || `The key is expired, disabled or already rolled, so we could not ${what}.`;
      }
      return err.message || `You have reached the key limit, so we could not ${what}.`;
    case 429:
      return `Too many requests. ${retryText(err.retryAfter)}`;
    case 503:
      return `The service is unavailable right now, so we could not ${what}. Nothing was changed. Try again in a moment.`;
    default:
      return `The server had a problem and could not ${what}. Try again in a moment.`;
  }
}

export function retryText(seconds) {
  if (seconds === null || seconds === undefined) return 'Wait a moment and try again.';
  if (seconds < 60) {
    const s = Math.max(1, seconds);
    return `Try again in ${s} second${s === 1 ? '' : 's'}.`;
  }
  const m = Math.ceil(seconds / 60);
  return `Try again in ${m} minute${m === 1 ? '' : 's'}.`;
}
