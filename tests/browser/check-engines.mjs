// Fails when a package locked in package-lock.json cannot run on a given
// Node.js: its engines.node range (checked with npm's own semver) must
// admit that version.
//
// Usage: node check-engines.mjs NODE_VERSION [LOCK_FILE]
//   (NODE_PATH must lead to a node_modules holding semver; run.sh's npm ci
//   installs it.) Prints one line per locked package and a summary line;
//   exits 1 when any package excludes NODE_VERSION.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const semver = require(process.env.NODE_PATH ? join(process.env.NODE_PATH, 'semver') : 'semver');

const [version, lockPath = join(dirname(fileURLToPath(import.meta.url)), 'package-lock.json')] =
  process.argv.slice(2);
if (!version || !semver.valid(version)) {
  console.error('usage: node check-engines.mjs NODE_VERSION [LOCK_FILE]');
  process.exit(2);
}

const lock = JSON.parse(readFileSync(lockPath, 'utf8'));
let passed = 0;
let failed = 0;
for (const [path, pkg] of Object.entries(lock.packages ?? {})) {
  const name = path === '' ? `${lock.name} (the test package itself)` : `${path.replace(/^.*node_modules\//, '')}@${pkg.version}`;
  const range = pkg.engines?.node;
  if (range === undefined) {
    console.log(`ok - ${name}: no engines.node`);
    passed++;
  } else if (semver.satisfies(version, range)) {
    console.log(`ok - ${name}: engines.node "${range}" admits ${version}`);
    passed++;
  } else {
    console.log(`not ok - ${name}: engines.node "${range}" excludes Node.js ${version}`);
    failed++;
  }
}
console.log(`engines: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
