// server.mjs - starts `keyward serve` for the browser tests and talks to its
// API, the way tests/lib/kwserver.py does for the Python HTTP tests.
//
//   const srv = await startServer();   // fresh data dir, 127.0.0.1, port 0, first run
//   srv.origin, srv.firstRun.password, srv.rootKey, srv.accountId
//   await srv.api('POST', '/v1/keys/verify', { body: { key } })  // -> { status, headers, body }
//   await srv.stop();                  // SIGTERM, then SIGKILL; removes the data dir
//
// The server runs $KEYWARD_BIN with a temporary KEYWARD_DATA_DIR and no other
// KEYWARD_* variable. Its stdout holds the first-run JSON; its stderr (the
// access log, JSON lines, one of them {"event":"listening","detail":URL}) is
// read continuously so the server never blocks on a full pipe, and kept for
// diagnostics (srv.log()).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

export async function startServer() {
  const bin = path.resolve(process.env.KEYWARD_BIN || 'build/keyward');
  const dir = mkdtempSync(path.join(tmpdir(), 'keyward-browser-'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KEYWARD_')));
  env.KEYWARD_DATA_DIR = path.join(dir, 'var');
  const proc = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--json'], {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const srv = new Server(proc, dir);
  try {
    await srv.ready();
  } catch (err) {
    await srv.stop();
    throw err;
  }
  return srv;
}

class Server {
  constructor(proc, dir) {
    this.proc = proc;
    this.dir = dir;
    this.stdout = '';
    this.stderr = '';
    this.port = null;
    this.firstRun = null;
    this.exited = null; // { code, signal } once the process has ended
    this.exitPromise = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this.exited = { code, signal };
        resolve(this.exited);
      });
    });
    proc.on('error', (err) => {
      this.stderr += `\nspawn failed: ${err.message}\n`;
      this.exited = this.exited || { code: null, signal: null, error: err };
    });
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', (chunk) => {
      this.stdout += chunk;
      if (!this.firstRun) {
        try {
          this.firstRun = JSON.parse(this.stdout);
        } catch {
          // not whole yet
        }
      }
    });
    proc.stderr.on('data', (chunk) => {
      this.stderr += chunk;
      if (this.port === null) this.findPort();
    });
  }

  findPort() {
    for (const line of this.stderr.split('\n')) {
      let event;
      try {
        event = JSON.parse(line);
      } catch {
        continue;
      }
      if (event && event.event === 'listening' && typeof event.detail === 'string') {
        this.port = Number(event.detail.slice(event.detail.lastIndexOf(':') + 1));
        return;
      }
    }
  }

  async ready() {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (this.port === null || this.firstRun === null) {
      if (this.exited) throw new Error(`keyward serve exited (${JSON.stringify(this.exited)}): ${this.stderr.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`keyward serve did not start in ${START_TIMEOUT_MS} ms: ${this.stderr.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  get origin() {
    return `http://127.0.0.1:${this.port}`;
  }

  get rootKey() {
    return this.firstRun.secret;
  }

  get accountId() {
    return this.firstRun.account.id;
  }

  get email() {
    return this.firstRun.user.email;
  }

  get password() {
    return this.firstRun.password;
  }

  log() {
    return this.stderr;
  }

  // One request to the server with Node's fetch. opts: body (an object is sent
  // as JSON), headers, root (adds the root key as the bearer credential).
  // Returns { status, headers, body } with a JSON body decoded.
  async api(method, urlPath, opts = {}) {
    const headers = { ...(opts.headers || {}) };
    let body = opts.body;
    if (body !== undefined && typeof body !== 'string') {
      body = JSON.stringify(body);
      headers['Content-Type'] = headers['Content-Type'] || 'application/json';
    }
    if (opts.root) headers.Authorization = `Bearer ${this.rootKey}`;
    const res = await fetch(this.origin + urlPath, {
      method,
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let parsed = text;
    if ((res.headers.get('content-type') || '').startsWith('application/json') && text) {
      parsed = JSON.parse(text);
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }

  async verify(key) {
    const r = await this.api('POST', '/v1/keys/verify', { body: { key } });
    if (r.status !== 200) throw new Error(`verify: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async listKeys() {
    const r = await this.api('GET', `/v1/accounts/${this.accountId}/keys`, { root: true });
    if (r.status !== 200) throw new Error(`list keys: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async createKey(name, environment) {
    const body = environment ? { name, environment } : { name };
    const r = await this.api('POST', `/v1/accounts/${this.accountId}/keys`, { body, root: true });
    if (r.status !== 201) throw new Error(`create key: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  // SIGTERM, SIGKILL after STOP_TIMEOUT_MS; then removes the data directory.
  async stop() {
    if (!this.exited && this.proc.pid) {
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await this.exitPromise;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
    return this.exited;
  }

  // For an exit handler: no waiting.
  killNow() {
    if (!this.exited && this.proc.pid) this.proc.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}
