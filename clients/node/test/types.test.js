// The TypeScript declarations (index.d.ts) compile against real pg and
// drizzle-orm code: test/types-check.ts, compiled with tsc --noEmit.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

test('index.d.ts types pg Pool, Client and drizzle-orm callers', () => {
  const tsc = path.join(path.dirname(require.resolve('typescript/package.json')), 'bin', 'tsc');
  const result = spawnSync(
    process.execPath,
    [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--skipLibCheck', '--types', 'node', path.join(__dirname, 'types-check.ts')],
    { encoding: 'utf8', cwd: path.join(__dirname, '..') }
  );
  assert.equal(result.status, 0, `tsc: ${result.stdout}${result.stderr}`);
});
