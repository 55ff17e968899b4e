// The console's browser checks: Debian's chromium, driven by playwright-core
// (its executablePath; no browser download), axe-core for accessibility.
// Run by tests/console.rs (and tests/e2e/e2e.py, for the end-to-end run's
// sessions) with a plan file naming the servers, tokens and sessions.
//
// Usage: node tests/console/browser.mjs PLAN.json
// Prints one line per check and "N passed, N failed"; exits 1 on a failure.

import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const shots = plan.screenshots;
mkdirSync(shots, { recursive: true });

let passed = 0;
let failed = 0;
function check(ok, what, detail) {
  if (ok) {
    passed += 1;
    console.log(`  ok: ${what}`);
  } else {
    failed += 1;
    console.log(`  FAIL: ${what}${detail === undefined ? '' : '\n        ' + String(detail).slice(0, 2000)}`);
  }
}

const browser = await chromium.launch({
  executablePath: plan.chromium,
  // Root in a container has no user namespaces for the sandbox.
  args: ['--no-sandbox'],
});

/** A page whose tab holds the audit token (entered in the form, as a person would). */
async function signedIn(base, width = 1280) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => check(false, 'no script error on the page', e.message));
  const response = await page.goto(base + '/console/');
  check(response.status() === 401, `${width}px: /console/ without a token answers 401`, response.status());
  await page.fill('#token', plan.tokens.audit);
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector('form#search');
  return { context, page };
}

async function axe(page, what) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const serious = result.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  check(serious.length === 0, `axe: no serious violations on ${what}`,
    serious.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(', ')})`).join('\n'));
}

async function noOverflow(page, width, what) {
  const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
  check(scroll <= width, `${what} fits ${width}px without sideways scrolling`, `scrollWidth ${scroll}`);
}

async function openSession(page, base, id) {
  await page.evaluate((href) => {
    const a = document.createElement('a');
    a.href = href;
    a.textContent = 'go';
    document.querySelector('main').append(a);
    a.click();
  }, '/console/sessions/' + encodeURIComponent(id));
  // The page before has a #timeline too: wait until this session's page
  // has replaced it.
  await page.waitForFunction(
    (id) => document.querySelector('#session-id')?.innerText === id && document.querySelector('#timeline'),
    id,
  );
}

const text = (page, selector) => page.locator(selector).innerText();
const has = (shown, wanted) => shown.toLowerCase().includes(wanted.toLowerCase());

// What each kind of session's page must show (rendered text, any case).
const defaultExpectations = {
  approved: ['Metadata source', 'cimd', 'https://auth.example.com', 'Client identity document', 'sent inline',
    'SHA-256', 'Identity proof', 'k1', 'Authentication result', 'Verified', 'Policy decision', 'approved',
    'files:read', 'Grant issued', 'Expires', 'Tool call', 'read_file', 'allowed'],
  reduced: ['DocumentOnly', 'reduced', 'files:write', 'Denied, and why', 'Session revoked', 'agent misbehaved', 'revoked'],
  denied: ['Authentication result', 'Failed', 'denied'],
  delegated: ['Delegation', 'alice@example.com', 'appr-42', 'Actor chain', 'agent:builder', 'agent:orchestrator',
    'repo:admin', 'not available to delegated agents', 'reduced'],
};

// ------------------------------------------------------------ refusals
if (plan.honest && plan.tokens.decide) {
  console.log('refusals');
  const context = await browser.newContext();
  const page = await context.newPage();
  let response = await page.goto(plan.honest + '/console/sessions/' + plan.sessions.approved);
  const body = await page.content();
  check(response.status() === 401 && !body.includes(plan.client_id),
    'a session page without a token is refused and shows nothing of the session', response.status());
  const wrong = await page.evaluate(async ([url, token]) => {
    const r = await fetch(url, { headers: { authorization: 'Bearer ' + token } });
    return r.status;
  }, [plan.honest + '/console/', plan.tokens.decide]);
  check(wrong === 403, 'a decide token is refused (403)', wrong);
  const bogus = await page.evaluate(async (url) => (await fetch(url, { headers: { authorization: 'Bearer nope' } })).status,
    plan.honest + '/console/live');
  check(bogus === 401, 'the live view refuses a bad token', bogus);
  const headers = response.headers();
  check((headers['content-security-policy'] || '').includes("script-src 'self'") && !(headers['content-security-policy'] || '').includes('unsafe'),
    'a strict Content-Security-Policy', headers['content-security-policy']);
  await page.screenshot({ path: join(shots, 'token.png') });
  await context.close();
}

// ------------------------------------------------------------ search and trails
for (const width of plan.widths || [1280, 390]) {
  console.log(`search and trails at ${width}px`);
  const { context, page } = await signedIn(plan.honest, width);
  check(await page.evaluate(() => document.cookie === ''), 'no cookie is set');
  check(!page.url().includes(plan.tokens.audit), 'the token is not in the URL', page.url());
  check(await page.evaluate(() => sessionStorage.getItem('trustpath.audit-token')) === plan.tokens.audit,
    'the token is kept in sessionStorage');

  // Search by session, as a person would.
  const approved = plan.sessions.approved;
  await page.fill('#session_id', approved);
  await page.click('form#search button[type=submit]');
  await page.waitForFunction((id) => document.querySelector('#rows a')?.textContent === id, approved);
  const rows = await page.locator('#rows tr').count();
  check(rows >= 2, `search by session finds its entries (${rows})`);
  check(page.url().includes('session_id=') && !page.url().includes('token'), 'the search is in the URL, the token is not', page.url());
  await page.screenshot({ path: join(shots, `search-${width}.png`), fullPage: true });
  await noOverflow(page, width, 'the search page');
  if (width === 1280) await axe(page, 'the search page');

  // Follow the link into the session's trust path.
  await page.locator('#rows a', { hasText: approved }).first().click();
  await page.waitForSelector('#timeline');
  check((await text(page, '#session-id')) === approved, 'the row links to its session page');

  for (const [name, id] of Object.entries(plan.sessions)) {
    if (name === 'hostile') continue;
    await openSession(page, plan.honest, id);
    const trail = await text(page, '#timeline');
    const steps = await page.locator('#timeline > li').count();
    const expect = (plan.expect && plan.expect[name]) || defaultExpectations[name] || [];
    const missing = expect.filter((t) => !has(trail, t));
    check(missing.length === 0, `${name} session (${steps} steps) shows every step`, 'missing: ' + missing.join(' | '));
    await noOverflow(page, width, `the ${name} session page`);
    await page.screenshot({ path: join(shots, `session-${name}-${width}.png`), fullPage: true });
    if (width === 1280 && name === 'delegated') await axe(page, 'a session page');
  }

  if (width === 1280 && plan.sessions.hostile) {
    const hostile = plan.sessions.hostile;
    await openSession(page, plan.honest, hostile);
    check((await text(page, '#session-id')) === hostile, 'a session id holding <script> renders as text');
    check(await page.evaluate(() => window.__pwned === undefined), 'and runs nothing');
    const scripts = await page.evaluate(() => Array.from(document.scripts, (s) => s.src));
    check(scripts.length === 1 && scripts[0].endsWith('/console/assets/console.js'), 'the only script is the console\'s own', scripts);
    await page.screenshot({ path: join(shots, 'session-hostile.png'), fullPage: true });
  }

  if (width === 1280) {
    // The stored JSON, byte for byte, one click away.
    await openSession(page, plan.honest, approved);
    const first = page.locator('#timeline > li').first();
    const seq = await first.getAttribute('data-seq');
    await first.locator('details.stored summary').click();
    const shown = await first.locator('pre.stored-json').innerText();
    const entry = await page.evaluate(async ([seq, token]) => {
      const r = await fetch('/v1/log/entries/' + seq, { headers: { authorization: 'Bearer ' + token } });
      return r.json();
    }, [seq, plan.tokens.audit]);
    const stored = entry.disclosures && entry.disclosures.length
      ? entry.commitment + '\t' + JSON.stringify(entry.disclosures) : entry.commitment;
    let at = 0;
    while (at < shown.length && shown[at] === stored[at]) at += 1;
    check(shown === stored, 'the stored JSON is the stored entry, byte for byte',
      `differs at ${at}: shown ${JSON.stringify(shown.slice(at - 20, at + 40))} stored ${JSON.stringify(stored.slice(at - 20, at + 40))}`);

    // Proof in the browser: every entry of an honest session verifies.
    const buttons = page.locator('#timeline button.verify');
    const n = await buttons.count();
    for (let i = 0; i < n; i += 1) await buttons.nth(i).click();
    await page.waitForFunction(() => Array.from(document.querySelectorAll('output.verify-result'))
      .every((o) => o.classList.contains('ok') || o.classList.contains('failed')));
    const results = await page.locator('output.verify-result').allInnerTexts();
    check(results.length === n && results.every((r) => r.startsWith('✓ Verified')), `verify passes for all ${n} honest entries`, results.join('\n'));
    await page.screenshot({ path: join(shots, 'verified.png'), fullPage: true });
  }
  await context.close();
}

// ------------------------------------------------------------ without JavaScript
if (plan.honest && plan.sessions && plan.sessions.approved) {
  console.log('without JavaScript');
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const response = await page.goto(plan.honest + '/console/sessions/' + plan.sessions.approved);
  check(response.status() === 401, 'a trail asks for the token', response.status());
  await page.fill('#token', plan.tokens.audit);
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector('#timeline');
  const trail = await text(page, '#timeline');
  check(has(trail, 'Connection decision') && has(trail, 'Tool call'), 'the trail renders on the server, without JavaScript');
  await page.goto(plan.honest + '/console/?outcome=denied');
  await page.fill('#token', plan.tokens.audit);
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector('#results');
  const outcomes = await page.locator('#rows tr td:nth-child(4)').allInnerTexts();
  check(outcomes.length > 0 && outcomes.every((o) => has(o, 'denied')), 'and so does a search', outcomes.join(', '));
  check(await page.evaluate(() => document.cookie === ''), 'no cookie without JavaScript either');
  await context.close();
}

// ------------------------------------------------------------ an entry altered on disk
if (plan.tampered) {
  console.log('an entry altered on disk');
  const { context, page } = await signedIn(plan.tampered);
  await openSession(page, plan.tampered, plan.sessions.denied);
  const altered = page.locator(`#timeline > li[data-seq="${plan.altered_seq}"]`);
  await altered.locator('button.verify').click();
  const out = altered.locator('output.verify-result');
  await page.waitForFunction((seq) => {
    const o = document.querySelector(`output.verify-result[data-seq="${seq}"]`);
    return o.classList.contains('ok') || o.classList.contains('failed');
  }, String(plan.altered_seq));
  check(await out.evaluate((o) => o.classList.contains('failed')), 'verify fails for the altered entry', await out.innerText());
  const others = page.locator(`#timeline > li:not([data-seq="${plan.altered_seq}"]) button.verify`);
  if (await others.count()) {
    await others.first().click();
    await page.waitForSelector(`#timeline > li:not([data-seq="${plan.altered_seq}"]) output.verify-result.ok, #timeline > li:not([data-seq="${plan.altered_seq}"]) output.verify-result.failed`);
    const other = await page.locator(`#timeline > li:not([data-seq="${plan.altered_seq}"]) output.verify-result`).first();
    check(await other.evaluate((o) => o.classList.contains('ok')), 'while an untouched entry beside it verifies', await other.innerText());
  }
  await page.screenshot({ path: join(shots, 'tampered.png'), fullPage: true });
  await context.close();
}

// ------------------------------------------------------------ live follow
if (plan.live_request) {
  console.log('live follow');
  const { context, page } = await signedIn(plan.honest);
  await page.check('#follow');
  await page.waitForFunction(() => document.getElementById('follow-status').textContent.startsWith('Following'));
  const status = await page.evaluate(async ([url, token, body]) => {
    const r = await fetch(url, {
      method: 'POST', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return r.status;
  }, [plan.honest + '/v1/decisions', plan.tokens.admin, plan.live_request]);
  check(status === 200, 'a new decision is made while following', status);
  try {
    await page.waitForFunction((id) => Array.from(document.querySelectorAll('#rows tr.live a')).some((a) => a.textContent === id),
      plan.live_request.session_id, { timeout: 15000 });
    check(true, 'the new decision appears without reloading');
  } catch (e) {
    check(false, 'the new decision appears without reloading', e.message);
  }
  await page.screenshot({ path: join(shots, 'live.png') });
  await context.close();
}

// ------------------------------------------------------------ sessions by search only (the end-to-end run)
for (const { session, expect } of plan.search_only || []) {
  console.log(`the end-to-end run's session ${session}`);
  const { context, page } = await signedIn(plan.honest);
  await page.fill('#session_id', session);
  await page.click('form#search button[type=submit]');
  await page.waitForFunction((id) => document.querySelector('#rows a')?.textContent === id, session);
  check(true, 'search finds it');
  await page.locator('#rows a', { hasText: session }).first().click();
  await page.waitForSelector('#timeline');
  const trail = await text(page, '#timeline');
  const missing = (expect || []).filter((t) => !has(trail, t));
  check(missing.length === 0, 'its trust path shows every step', 'missing: ' + missing.join(' | '));
  await page.screenshot({ path: join(shots, 'e2e-session.png'), fullPage: true });
  await context.close();
}

await browser.close();
console.log(`\nconsole browser checks: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
