#!/usr/bin/env node
// Drives the operators' dashboard (GET /dashboard) in headless Chromium.
//
//   node tests/browser/dashboard.mjs --url http://127.0.0.1:PORT --token TOKEN --screenshot PATH
//        [--expect-node NODE_ID] [--replay-id DLQ_ID] [--check-refused] [--check-charts]
//
// Logs in with the token, waits for the node row (any node row when --expect-node is
// not given), optionally replays one dead letter and waits for its row to go, and writes
// a full-page screenshot.  --check-refused first tries a wrong token and expects the
// login form to say "token refused".  --check-charts waits until the "Last 15 minutes"
// charts draw from live samples: the events chart shows a rate above 0 and its line
// changes while load runs (the caller runs `merit simulate` meanwhile).  Prints one JSON line and exits 0, or prints the
// failure and exits 1.  Chromium: $CHROMIUM or /usr/bin/chromium.
import { chromium } from 'playwright-core';

const OVERALL_MS = 100_000;
const STEP_MS = 20_000;

function parseArgs(argv) {
  const out = { checkRefused: false, checkCharts: false };
  const takes = { '--url': 'url', '--token': 'token', '--screenshot': 'screenshot', '--expect-node': 'expectNode', '--replay-id': 'replayId' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--check-refused') { out.checkRefused = true; continue; }
    if (a === '--check-charts') { out.checkCharts = true; continue; }
    const key = takes[a];
    if (!key || i + 1 >= argv.length) throw new Error(`unknown or incomplete argument: ${a}`);
    out[key] = argv[++i];
  }
  for (const k of ['url', 'token', 'screenshot']) if (!out[k]) throw new Error(`--${k} is required`);
  return out;
}

function attr(v) { return JSON.stringify(String(v)); } // a quoted CSS attribute value

// runs one step, naming it in the error when it fails
async function step(name, fn) {
  try { return await fn(); } catch (e) {
    throw new Error(`${name}: ${e && e.message ? e.message.split('\n')[0] : e}`);
  }
}

let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
}
const redact = (s) => String(s).split(args.token).join('<token>');

let browser = null;
let page = null;
const fail = async (msg) => {
  console.log(JSON.stringify({ ok: false, error: redact(msg) }));
  if (page) { try { await page.screenshot({ path: args.screenshot, fullPage: true, timeout: 5000 }); } catch { /* best effort */ } }
  if (browser) { try { await browser.close(); } catch { /* ignore */ } }
  process.exit(1);
};
const overall = setTimeout(() => { fail(`timed out after ${OVERALL_MS / 1000} s`); }, OVERALL_MS);

async function assertTokenNotInPage(where) {
  const html = await page.content();
  if (html.includes(args.token)) throw new Error(`the admin token appears in the page HTML (${where})`);
  if (page.url().includes(args.token)) throw new Error(`the admin token appears in the page URL (${where})`);
}

async function login(token) {
  await page.locator('#login-token').waitFor({ state: 'visible', timeout: STEP_MS });
  await page.fill('#login-token', token);
  await page.click('#login-submit');
}

async function dlqCount() {
  const t = (await page.textContent('#dlq-count')) || '';
  const n = parseInt(t.replace(/[^0-9]/g, ''), 10);
  return Number.isFinite(n) ? n : await page.locator('#dlq .dlq-row').count();
}

try {
  const base = args.url.replace(/\/+$/, '');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
    timeout: STEP_MS,
  });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);

  const pageErrors = [];
  const consoleLeaks = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.text().includes(args.token)) consoleLeaks.push(m.type()); });
  // No request may carry the admin token in its URL (the live feed takes a ticket).
  const urlLeaks = [];
  const feeds = [];
  page.on('request', (r) => {
    const url = r.url();
    if (url.includes(args.token) || url.includes(encodeURIComponent(args.token))) urlLeaks.push(url.split('?')[0]);
    if (url.includes('/dashboard/events')) feeds.push(/[?&]ticket=/.test(url));
  });
  // discard asks for confirmation; nothing here should trigger dialogs, but never hang on one
  page.on('dialog', (d) => d.dismiss().catch(() => {}));

  const resp = await step('open /dashboard', () => page.goto(`${base}/dashboard`, { waitUntil: 'domcontentloaded', timeout: STEP_MS }));
  if (!resp || !resp.ok()) throw new Error(`GET /dashboard answered ${resp ? resp.status() : 'nothing'}`);

  if (args.checkRefused) {
    await step('log in with a wrong token', () => login(args.token + '-wrong'));
    await step('expect "token refused"', () => page.waitForFunction(() => {
      const e = document.getElementById('login-error');
      const l = document.getElementById('login');
      return l && !l.hidden && e && /token refused/.test(e.textContent || '');
    }, null, { timeout: STEP_MS }));
  }

  await step('log in', () => login(args.token));
  const nodeSel = args.expectNode ? `#nodes .node-row[data-node-id=${attr(args.expectNode)}]` : '#nodes .node-row';
  // either the node row shows up, or the login form comes back saying why
  const outcome = await step(`wait for ${nodeSel}`, () => page.waitForFunction((sel) => {
    if (document.querySelector(sel)) return 'ok';
    const l = document.getElementById('login');
    const e = document.getElementById('login-error');
    return l && !l.hidden && e && e.textContent ? 'login: ' + e.textContent : false;
  }, nodeSel, { timeout: STEP_MS }).then((h) => h.jsonValue()));
  if (outcome !== 'ok') throw new Error(`log in refused (${outcome})`);
  const nodes = await page.$$eval('#nodes .node-row', (rows) => rows.map((r) => r.getAttribute('data-node-id')));

  await step('wait for the dead-letter list', () => page.locator('#dlq[data-loaded]').waitFor({ state: 'attached', timeout: STEP_MS }));
  const dlqBefore = await dlqCount();
  let dlqAfter = dlqBefore;
  let replayed = false;

  if (args.replayId) {
    const row = page.locator(`#dlq .dlq-row[data-id=${attr(args.replayId)}]`);
    await step(`find dead letter ${args.replayId}`, () => row.waitFor({ state: 'visible', timeout: STEP_MS }));
    await step('click Replay', () => row.locator('.dlq-replay').click());
    await step(`wait for dead letter ${args.replayId} to go`, () => row.waitFor({ state: 'detached', timeout: STEP_MS }));
    replayed = true;
    dlqAfter = await dlqCount();
  }

  let charts = null;
  if (args.checkCharts) {
    const line = () => page.evaluate(() => {
      const c = document.querySelector('#chart-events');
      const p = c && c.querySelector('polyline');
      return { points: Number(c ? c.dataset.points : 0), peak: Number(c ? c.dataset.peak : 0), line: p ? p.getAttribute('points') : '' };
    });
    await step('wait for a live sample with events in', () => page.waitForFunction(() => {
      const c = document.querySelector('#chart-events');
      return c && Number(c.dataset.peak) > 0 && c.querySelector('polyline');
    }, null, { timeout: 40_000 }));
    const first = await line();
    await step('wait for the events chart to move with the next sample', () => page.waitForFunction((before) => {
      const p = document.querySelector('#chart-events polyline');
      return p && p.getAttribute('points') !== before;
    }, first.line, { timeout: 20_000 }));
    const second = await line();
    const drawn = await page.$$eval('#charts .chart', (cs) => cs.map((c) => ({ id: c.id, lines: c.querySelectorAll('polyline').length })));
    charts = { before: first, after: second, drawn };
  }

  let correlation = null;
  if (args.checkCharts) {
    // Follow one saga's correlation id: the lists narrow to that operation.
    const link = page.locator('#sagas .saga-row .corr-link').first();
    await step('wait for a saga with a correlation id', () => link.waitFor({ state: 'visible', timeout: STEP_MS }));
    const followed = await link.getAttribute('data-correlation');
    const before = await page.locator('#sagas .saga-row').count();
    await step('follow the correlation id', () => link.click());
    await step('wait for the correlation filter', () => page.locator('#corr-chip-sagas:not([hidden])').waitFor({ state: 'attached', timeout: STEP_MS }));
    await step('wait for the sagas of that correlation only', () => page.waitForFunction((c) => {
      const links = [...document.querySelectorAll('#sagas .saga-row .corr-link')];
      return links.length > 0 && links.every((l) => l.getAttribute('data-correlation') === c);
    }, followed, { timeout: STEP_MS }));
    const after = await page.locator('#sagas .saga-row').count();
    correlation = { followed, before, after };
  }

  // let the remaining cards fill in before the picture; these are best effort
  await Promise.all(['#sagas[data-loaded]', '#config[data-loaded]'].map((s) =>
    page.locator(s).waitFor({ state: 'attached', timeout: 10_000 }).catch(() => {})));
  await page.waitForTimeout(300);
  await page.evaluate(() => window.scrollTo(0, 0)); // the sticky header belongs at the top of the picture

  await step('wait for the live feed', () => page.locator('#live.on').waitFor({ state: 'attached', timeout: STEP_MS }));
  if (!feeds.length || !feeds.every(Boolean)) throw new Error('the live feed was not opened with a ticket');
  if (urlLeaks.length) throw new Error(`the admin token appears in a request URL (${urlLeaks[0]})`);
  await assertTokenNotInPage('after login');
  if (consoleLeaks.length) throw new Error('the admin token was written to the console');
  if (pageErrors.length) throw new Error(`uncaught page error: ${pageErrors[0]}`);
  const storage = await page.evaluate(() => sessionStorage.getItem('merit-admin-token'));
  if (storage !== args.token) throw new Error('the token is not kept in sessionStorage under merit-admin-token');

  await page.screenshot({ path: args.screenshot, fullPage: true, timeout: STEP_MS });
  clearTimeout(overall);
  console.log(JSON.stringify({ nodes, dlq_before: dlqBefore, dlq_after: dlqAfter, replayed, charts, correlation }));
  await browser.close();
  process.exit(0);
} catch (e) {
  clearTimeout(overall);
  await fail(e && e.message ? e.message.split('\n')[0] : String(e));
}
