// The accessibility check of pgtrail serve's pages: opens each URL given in
// headless Chromium, runs axe-core in it (through the DevTools protocol over
// --remote-debugging-pipe: no other package), and prints, as JSON, each
// URL's violations ({url: [{id, impact, help, nodes}]}).
//
//     node run.mjs CHROMIUM URL...
//
// Exit 0 when every page was checked (violations or not), 1 when a page
// could not be (the message on stderr).

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const [browser, ...urls] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'pgtrail-axe-'));
const chromium = spawn(
  browser,
  ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', `--user-data-dir=${profile}`,
    '--remote-debugging-pipe', 'about:blank'],
  { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
);
let stderr = '';
chromium.stdio[2].on('data', (chunk) => { stderr += chunk; });

// The protocol: JSON messages separated by NUL, commands on fd 3, answers
// and events on fd 4.
let next = 0;
const pending = new Map();
const listeners = [];
let buffer = '';
chromium.stdio[4].on('data', (chunk) => {
  buffer += chunk.toString('utf8');
  let end;
  while ((end = buffer.indexOf('\0')) >= 0) {
    const message = JSON.parse(buffer.slice(0, end));
    buffer = buffer.slice(end + 1);
    if (message.id !== undefined && pending.has(message.id)) {
      const { resolve, reject } = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) reject(new Error(`${JSON.stringify(message.error)}`));
      else resolve(message.result);
    } else {
      for (const listener of [...listeners]) listener(message);
    }
  }
});

function send(method, params = {}, sessionId = undefined) {
  next += 1;
  const message = { id: next, method, params };
  if (sessionId) message.sessionId = sessionId;
  return new Promise((resolve, reject) => {
    pending.set(message.id, { resolve, reject });
    chromium.stdio[3].write(`${JSON.stringify(message)}\0`);
  });
}

function once(method, sessionId) {
  return new Promise((resolve) => {
    const listener = (message) => {
      if (message.method === method && message.sessionId === sessionId) {
        listeners.splice(listeners.indexOf(listener), 1);
        resolve(message.params);
      }
    };
    listeners.push(listener);
  });
}

const check = `${axeSource}
;axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({
  id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.html),
})))`;

let code = 0;
try {
  const results = {};
  for (const url of urls) {
    const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
    await send('Page.enable', {}, sessionId);
    const loaded = once('Page.loadEventFired', sessionId);
    const navigated = await send('Page.navigate', { url }, sessionId);
    if (navigated.errorText) throw new Error(`${url}: ${navigated.errorText}`);
    await loaded;
    // (DevTools evaluation is not subject to the page's Content-Security-Policy.)
    const { result, exceptionDetails } = await send(
      'Runtime.evaluate',
      { expression: check, awaitPromise: true, returnByValue: true },
      sessionId,
    );
    if (exceptionDetails) throw new Error(`${url}: ${JSON.stringify(exceptionDetails)}`);
    results[url] = result.value;
    await send('Target.closeTarget', { targetId });
  }
  process.stdout.write(JSON.stringify(results));
} catch (error) {
  process.stderr.write(`axe check failed: ${error.message}\n${stderr}`);
  code = 1;
} finally {
  // The profile is removed once the browser has let go of it.
  await new Promise((resolve) => {
    chromium.once('exit', resolve);
    chromium.kill();
    setTimeout(resolve, 5000);
  });
  try {
    rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // A leftover directory under the system's temporary directory.
  }
}
process.exit(code);
