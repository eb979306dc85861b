// tap.mjs - a small sequential test runner that prints TAP, so meson
// (protocol : 'tap') counts every case.
//
//   const t = new Suite({ timeoutMs: 30_000, onFailure: async (test) => {...} });
//   t.test('sign in', async (ctx) => {...});
//   t.test('create a key', async (ctx) => {...}, { needs: ['sign in'] });
//   const failed = await t.run();
//
// Tests run one after the other in order (they share a browser page). A test
// fails when it throws or runs past its timeout; its error is printed as "# "
// lines. A test whose prerequisite failed is reported "not ok" without
// running, with the reason, instead of failing later on a timeout.

export class Suite {
  constructor({ timeoutMs = 30_000, onFailure = null } = {}) {
    this.timeoutMs = timeoutMs;
    this.onFailure = onFailure;
    this.tests = [];
    this.results = new Map(); // name -> true (passed) or false
  }

  test(name, fn, opts = {}) {
    this.tests.push({ name, fn, needs: opts.needs || [], timeoutMs: opts.timeoutMs || this.timeoutMs });
  }

  diag(text) {
    for (const line of String(text).split('\n')) console.log(`# ${line}`);
  }

  async run() {
    console.log(`1..${this.tests.length}`);
    let failed = 0;
    for (const [i, test] of this.tests.entries()) {
      const number = i + 1;
      test.number = number;
      const missing = test.needs.filter((n) => this.results.get(n) !== true);
      if (missing.length) {
        console.log(`not ok ${number} - ${test.name}`);
        this.diag(`not run: it needs ${missing.map((n) => `"${n}"`).join(', ')}, which failed`);
        this.results.set(test.name, false);
        failed++;
        continue;
      }
      const started = Date.now();
      let timer;
      try {
        await Promise.race([
          Promise.resolve().then(() => test.fn(test)),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${test.timeoutMs} ms`)), test.timeoutMs);
          }),
        ]);
        clearTimeout(timer);
        console.log(`ok ${number} - ${test.name}`);
        this.diag(`${Date.now() - started} ms`);
        this.results.set(test.name, true);
      } catch (err) {
        clearTimeout(timer);
        failed++;
        this.results.set(test.name, false);
        console.log(`not ok ${number} - ${test.name}`);
        this.diag(err && err.stack ? err.stack : String(err));
        if (this.onFailure) {
          try {
            await this.onFailure(test, err);
          } catch (hookErr) {
            this.diag(`(on failure: ${hookErr.message})`);
          }
        }
      }
    }
    return failed;
  }
}
