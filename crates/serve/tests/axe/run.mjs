// pgtrail serve's pages in headless Chromium, driven through the DevTools
// protocol over --remote-debugging-pipe (no package but axe-core):
//
//     node run.mjs CHROMIUM URL...
//         runs axe-core in each page and prints, as JSON, each URL's
//         violations ({url: [{id, impact, help, nodes}]});
//     node run.mjs --download DIR COOKIE CHROMIUM URL LINK_TEXT...
//         opens the page (with the cookie NAME=VALUE), clicks each link
//         whose text is given, as a person would, and prints, as JSON, the
//         file each click downloaded into DIR ({text: path}).
//
// Exit 0 when every page was checked (violations or not) or every file
// downloaded, 1 otherwise (the message on stderr).

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const args = process.argv.slice(2);
const download = args[0] === '--download' ? { dir: args[1], cookie: args[2] } : null;
const [browser, ...urls] = download ? args.slice(3) : args;
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

async function open(url) {
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  await send('Page.enable', {}, sessionId);
  const loaded = once('Page.loadEventFired', sessionId);
  const navigated = await send('Page.navigate', { url }, sessionId);
  if (navigated.errorText) throw new Error(`${url}: ${navigated.errorText}`);
  await loaded;
  return { targetId, sessionId };
}

// Clicks each link (by its text) of the page at `url` and waits for the
// file it downloads.
async function downloads(url, texts) {
  const [name, ...value] = download.cookie.split('=');
  await send('Storage.setCookies', { cookies: [{ name, value: value.join('='), url }] });
  await send('Browser.setDownloadBehavior', { behavior: 'allowAndName', downloadPath: download.dir, eventsEnabled: true });
  const { sessionId } = await open(url);
  const files = {};
  for (const text of texts) {
    // One listener from before the click: a small file can be complete
    // before the click's answer arrives.
    let guid = null;
    const states = new Map();
    const done = new Promise((resolve, reject) => {
      const settle = () => {
        const state = guid && states.get(guid);
        if (!state || state === 'inProgress') return;
        listeners.splice(listeners.indexOf(listener), 1);
        if (state === 'completed') resolve();
        else reject(new Error(`${url}: the download of "${text}" was ${state}`));
      };
      const listener = (m) => {
        if (m.method === 'Browser.downloadWillBegin' && guid === null) guid = m.params.guid;
        if (m.method === 'Browser.downloadProgress') states.set(m.params.guid, m.params.state);
        settle();
      };
      listeners.push(listener);
    });
    const clicked = await send('Runtime.evaluate', {
      expression: `(() => { const a = [...document.querySelectorAll('a')].find((a) => a.textContent.trim() === ${JSON.stringify(text)}); if (!a) return false; a.click(); return true; })()`,
      returnByValue: true,
    }, sessionId);
    if (!clicked.result.value) throw new Error(`${url}: no link "${text}"`);
    await done;
    files[text] = join(download.dir, guid);
  }
  return files;
}

// Never hang a test: a minute at most.
setTimeout(() => {
  process.stderr.write(`run.mjs: gave up after 60 s\n${stderr}`);
  chromium.kill();
  process.exit(1);
}, 60000).unref();

let code = 0;
try {
  if (download) {
    const [url, ...texts] = urls;
    process.stdout.write(JSON.stringify(await downloads(url, texts)));
  }
  const results = {};
  for (const url of download ? [] : urls) {
    const { targetId, sessionId } = await open(url);
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
  if (!download) process.stdout.write(JSON.stringify(results));
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
