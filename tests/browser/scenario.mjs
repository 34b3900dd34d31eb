// Drives headless Chromium (Debian's /usr/bin/chromium, through playwright-core) through the
// self-service page of `latchkey serve`, signing in at the loopback OpenID Connect provider
// (oidc-provider.mjs).
//
//   node tests/browser/scenario.mjs --base http://127.0.0.1:PORT --login dana@acme.example \
//        [--screenshots DIR] [--invite-email E] [--invite-role R] [--invite-expires YYYY-MM-DD] \
//        [--remove-email E] [--client acme] [--other-client globex] [--timeout MS]
//        [--only step,step,...]
//
// Prints one JSON object per line on stdout, one per step, in this order:
//   {"step": "...", "ok": true|false, "status": <HTTP status or null>, "detail": "..."}
// signed-out, sign-in, client-page, invite-review, invite-confirm, remove-review, remove-confirm,
// change-role-review, set-end-review, role-outside, pending, access, history, other-client, forged-post, forged-post-no-token, post-wrong-token,
// post-no-origin-no-token, sign-out.
// A step that fails does not stop the run; exit 0 when it ran to the end, whatever the steps
// said (the Rust test asserts on them), non-zero only when the scenario itself crashed.
// Statuses are those of the navigation's own response (after redirects), never guessed.
// Everything else (diagnostics) goes to stderr.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.LATCHKEY_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Even with the flags above, Chromium looks up Google's hosts (autofill, password leak
  // check, accounts, updates) once it sees forms; the tests only use loopback addresses, so
  // every host name resolves to nothing and no such lookup leaves the machine.
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost',
];

function parseArgs(argv) {
  const out = {
    client: 'acme',
    otherClient: 'globex',
    inviteEmail: 'new.hire@acme.example',
    inviteRole: 'member',
    inviteExpires: `${new Date().getUTCFullYear() + 1}-06-30`,
    timeout: 15000,
    // A role that exists but is not in the client's allowedRoles.
    outsideRole: 'agency-developer',
  };
  const names = {
    '--base': 'base',
    '--login': 'login',
    '--screenshots': 'screenshots',
    '--invite-email': 'inviteEmail',
    '--invite-role': 'inviteRole',
    '--invite-expires': 'inviteExpires',
    '--remove-email': 'removeEmail',
    '--history-email': 'historyEmail',
    '--change-email': 'changeEmail',
    '--change-role': 'changeRole',
    '--change-to': 'changeTo',
    '--client': 'client',
    '--other-client': 'otherClient',
    '--timeout': 'timeout',
    '--only': 'only',
    '--outside-role': 'outsideRole',
  };
  for (let i = 0; i < argv.length; i += 1) {
    const key = names[argv[i]];
    if (!key) throw new Error(`unknown argument ${argv[i]}`);
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    i += 1;
    out[key] = argv[i];
  }
  if (!out.base) throw new Error('--base is required');
  if (!out.login) throw new Error('--login is required');
  out.base = out.base.replace(/\/+$/, '');
  out.timeout = Number(out.timeout);
  out.only = out.only ? out.only.split(',') : null;
  return out;
}

const args = parseArgs(process.argv.slice(2));
const baseOrigin = new URL(args.base).origin;
const clientPath = `/clients/${args.client}`;

function emit(step, ok, status, detail) {
  process.stdout.write(`${JSON.stringify({ step, ok: Boolean(ok), status: status ?? null, detail: String(detail ?? '') })}\n`);
}

function log(message) {
  process.stderr.write(`scenario: ${message}\n`);
}

// eslint-disable-next-line no-control-regex
const oneLine = (s) => String(s ?? '').replace(/\u001b\[[0-9;]*m/g, '').replace(/\s+/g, ' ').trim();

// The names of the cookies a request carried (from the headers Chromium really sent).
async function cookieNames(request) {
  const header = (await request.allHeaders()).cookie || '';
  return header.split(';').map((c) => c.split('=')[0].trim()).filter(Boolean).sort();
}
// The cookies the signed-in client page was loaded with (set by the client-page step).
let sessionCookies;

// ---- the attacker's page, for the forged posts -------------------------------------------------

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

function attackerPage(withToken) {
  const fields = {
    email: 'mallory@evil.example',
    display_name: 'Mallory',
    role: args.inviteRole,
    expires: args.inviteExpires,
    reason: 'Forged by another site',
  };
  if (withToken) fields.csrf = 'forged-0123456789abcdef0123456789abcdef';
  const inputs = Object.entries(fields)
    .map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`).join('\n');
  return `<!doctype html><html><head><meta charset="utf-8"><title>Free prizes</title></head>
<body><h1>You won!</h1>
<form id="forged" method="post" action="${escapeHtml(`${args.base}${clientPath}/invite`)}">
${inputs}
</form>
<script>window.addEventListener('load', () => document.getElementById('forged').submit());</script>
</body></html>`;
}

function startAttacker() {
  const server = http.createServer((req, res) => {
    const withToken = req.url.startsWith('/with-token');
    if (!withToken && !req.url.startsWith('/no-token')) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(attackerPage(withToken));
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// ---- the browser ---------------------------------------------------------------------------

let page;

async function screenshot(name) {
  if (!args.screenshots) return;
  try {
    await page.screenshot({ path: path.join(args.screenshots, name), fullPage: false });
  } catch (err) {
    log(`screenshot ${name}: ${err.message}`);
  }
}

async function visible(selector) {
  const loc = page.locator(selector);
  return (await loc.count()) > 0 && loc.first().isVisible();
}

async function text(selector) {
  const loc = page.locator(selector);
  return (await loc.count()) > 0 ? oneLine(await loc.first().innerText()) : '';
}

// Runs `action` (which starts a navigation, a click or a form post) and waits for the document
// that the main frame ends on: the response of the last redirect on latchkey's origin (its
// status is the step's), then that document loaded. The old document is marked first, so a
// page that is reloaded at the same URL is not taken for the new one.
async function navigate(action, { origin = baseOrigin } = {}) {
  await page.evaluate(() => { window.__latchkeyOld = true; }).catch(() => {});
  const main = page.mainFrame();
  const response = page.waitForResponse((r) => {
    try {
      const req = r.request();
      return req.isNavigationRequest() && req.frame() === main
        && new URL(r.url()).origin === origin && !(r.status() >= 300 && r.status() < 400);
    } catch {
      return false;
    }
  });
  await action();
  const resp = await response;
  await page.waitForFunction(
    (o) => !window.__latchkeyOld && window.location.origin === o && document.readyState === 'complete',
    origin,
  );
  return resp;
}

// Where the page is now, for details of failed steps.
async function where() {
  let body = '';
  try {
    body = oneLine(await page.locator('body').innerText()).slice(0, 300);
  } catch { /* no document */ }
  return `at ${page.url()}: ${body}`;
}

const results = new Map();

async function step(name, fn) {
  // --only a,b,c: the other steps are neither run nor printed.
  if (args.only && !args.only.includes(name)) return;
  try {
    const { ok, status, detail } = await fn();
    emit(name, ok, status, detail);
    results.set(name, ok);
    if (!ok) await screenshot(`fail-${name}.png`);
  } catch (err) {
    const detail = `${oneLine(err.message).slice(0, 400)} (${await where()})`;
    emit(name, false, null, detail);
    results.set(name, false);
    await screenshot(`fail-${name}.png`);
  }
}

async function fillInvite(email, role, { addRole } = {}) {
  const form = page.locator('form#invite');
  if ((await form.count()) === 0) throw new Error('no form#invite');
  await form.locator('input[name=email]').fill(email);
  await form.locator('input[name=display_name]').fill('New Hire');
  if (addRole) {
    await page.evaluate((r) => {
      const select = document.querySelector('form#invite select[name=role]');
      const option = document.createElement('option');
      option.value = r;
      option.textContent = r;
      select.appendChild(option);
      select.value = r;
    }, role);
  } else {
    await form.locator('select[name=role]').selectOption(role);
  }
  await form.locator('input[name=expires]').fill(args.inviteExpires);
  await form.locator('input[name=reason]').fill('New hire, finance onboarding');
  return form;
}

async function reviewResult(resp) {
  const ok = (await visible('section#review')) && (await page.locator('form#confirm').count()) > 0;
  return { ok, status: resp.status(), detail: (await text('section#review')) || await where() };
}

async function confirmResult() {
  const button = page.locator('form#confirm button[type=submit]');
  if ((await button.count()) === 0) throw new Error('no form#confirm button[type=submit]');
  const resp = await navigate(() => button.first().click());
  const ok = await visible('section#done');
  const commit = ok ? await page.locator('section#done').first().getAttribute('data-commit') : null;
  return { ok: ok && Boolean(commit), status: resp.status(), detail: commit ?? await where() };
}

async function forged(withToken, attackerBase) {
  // Only until the attacker's page commits: it posts its form as soon as it has loaded.
  const resp = await navigate(() => page.goto(`${attackerBase}/${withToken ? 'with-token' : 'no-token'}`, { waitUntil: 'commit' }));
  // The forgery only tests the csrf token if the browser sent the session along, i.e. the
  // cookies the signed-in client page was loaded with (127.0.0.1 on another port is same-site).
  const sent = await cookieNames(resp.request());
  let cookiesSent;
  let cookie;
  if (sessionCookies === undefined) {
    cookiesSent = false;
    cookie = `cookies sent: ${sent.join(' ') || 'none'} (the session's are unknown: client-page failed)`;
  } else {
    const missing = sessionCookies.filter((c) => !sent.includes(c));
    cookiesSent = sessionCookies.length > 0 && missing.length === 0;
    cookie = missing.length
      ? `the session's cookies were NOT all sent (missing ${missing.join(' ')})`
      : `the session's cookies were sent (${sessionCookies.join(' ')})`;
  }
  const forbidden = await visible('section#forbidden');
  const review = (await page.locator('section#review').count()) > 0;
  const ok = resp.status() === 403 && forbidden && !review && cookiesSent;
  const said = forbidden ? await text('section#forbidden') : await where();
  return {
    ok,
    status: resp.status(),
    detail: `${resp.request().method()} ${new URL(resp.url()).pathname}; ${cookie}; ${said}`,
  };
}

async function run() {
  if (args.screenshots) fs.mkdirSync(args.screenshots, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-chromium-'));
  const attacker = await startAttacker();
  const attackerBase = `http://127.0.0.1:${attacker.address().port}`;
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 800 },
      timeout: 60000,
    });
    context.setDefaultTimeout(args.timeout);
    context.setDefaultNavigationTimeout(args.timeout);
    page = context.pages()[0] || await context.newPage();
    page.on('pageerror', (err) => log(`page error at ${page.url()}: ${err.message}`));

    await step('signed-out', async () => {
      const resp = await page.goto(`${args.base}/`);
      const ok = await visible('a#sign-in');
      await screenshot('signed-out.png');
      return { ok, status: resp.status(), detail: ok ? `a#sign-in href=${await page.locator('a#sign-in').first().getAttribute('href')}` : await where() };
    });

    await step('sign-in', async () => {
      if ((await page.locator('a#sign-in').count()) === 0) {
        await page.goto(`${args.base}/`);
      }
      await page.locator('a#sign-in').first().click();
      // The provider's login page (oidc-provider.mjs: form#login, input[name=login]).
      const loginField = page.locator('input[name=login]');
      await loginField.waitFor({ state: 'visible' });
      const providerUrl = new URL(page.url());
      await screenshot('login.png');
      await loginField.fill(args.login);
      const password = page.locator('input[name=password]');
      if (await password.count()) await password.fill('any password will do');
      const resp = await navigate(() => page.locator('form:has(input[name=login]) [type=submit]').first().click());
      const at = new URL(page.url());
      const link = page.locator(`ul#clients a[href="${clientPath}"]`);
      const ok = at.pathname === '/' && (await page.locator('ul#clients').count()) > 0 && (await link.count()) > 0;
      await screenshot('signed-in.png');
      return {
        ok,
        status: resp.status(),
        detail: ok
          ? `signed in at ${providerUrl.origin} as ${args.login}; clients: ${await text('ul#clients')}`
          : await where(),
      };
    });

    await step('client-page', async () => {
      const resp = await page.goto(`${args.base}${clientPath}`);
      const ok = (await page.locator('table#people').count()) > 0;
      if (ok) sessionCookies = await cookieNames(resp.request());
      await screenshot('client.png');
      const emails = await page.locator('table#people tr[data-email]').evaluateAll(
        (rows) => rows.map((r) => r.getAttribute('data-email')),
      );
      return { ok, status: resp.status(), detail: ok ? emails.join(',') : await where() };
    });

    await step('invite-review', async () => {
      if (!page.url().startsWith(`${args.base}${clientPath}`)) await page.goto(`${args.base}${clientPath}`);
      const form = await fillInvite(args.inviteEmail, args.inviteRole);
      const resp = await navigate(() => form.locator('button[type=submit]').first().click());
      const result = await reviewResult(resp);
      await screenshot('review.png');
      return result;
    });

    await step('invite-confirm', async () => {
      const result = await confirmResult();
      await screenshot('done.png');
      return result;
    });

    if (args.removeEmail) {
      await step('remove-review', async () => {
        await page.goto(`${args.base}${clientPath}`);
        const form = page.locator(`form.remove[data-email="${args.removeEmail}"]`);
        if ((await form.count()) === 0) throw new Error(`no form.remove[data-email="${args.removeEmail}"]`);
        const reason = form.locator('[name=reason]');
        if (await reason.count()) await reason.first().fill('Left the company');
        const resp = await navigate(() => form.locator('button[type=submit]').first().click());
        const result = await reviewResult(resp);
        await screenshot('remove-review.png');
        return result;
      });
      await step('remove-confirm', async () => {
        const result = await confirmResult();
        await screenshot('remove-done.png');
        return result;
      });
    } else {
      emit('remove-review', false, null, 'skipped: no --remove-email');
      emit('remove-confirm', false, null, 'skipped: no --remove-email');
    }

    // A person's other two actions, reviewed but not confirmed (nothing is committed).
    if (args.changeEmail) {
      const grantForm = (cls) => page.locator(
        `form.${cls}[data-email="${args.changeEmail}"][data-role="${args.changeRole}"]`,
      );
      await step('change-role-review', async () => {
        await page.goto(`${args.base}${clientPath}`);
        const form = grantForm('change');
        if ((await form.count()) === 0) throw new Error(`no form.change for ${args.changeEmail} ${args.changeRole}`);
        await form.locator('select[name=to]').selectOption(args.changeTo);
        const resp = await navigate(() => form.locator('button[type=submit]').first().click());
        return reviewResult(resp);
      });
      await step('set-end-review', async () => {
        await page.goto(`${args.base}${clientPath}`);
        const form = grantForm('expiry');
        if ((await form.count()) === 0) throw new Error(`no form.expiry for ${args.changeEmail} ${args.changeRole}`);
        await form.locator('input[name=expires]').fill(args.inviteExpires);
        const resp = await navigate(() => form.locator('button[type=submit]').first().click());
        return reviewResult(resp);
      });
    }

    await step('role-outside', async () => {
      await page.goto(`${args.base}${clientPath}`);
      const form = await fillInvite(`newperson2@${args.client}.example`, args.outsideRole, { addRole: true });
      const resp = await navigate(() => form.locator('button[type=submit]').first().click());
      const refused = await visible('section#refused');
      await screenshot('refused.png');
      return {
        ok: resp.status() === 422 && refused,
        status: resp.status(),
        detail: refused ? await text('section#refused') : await where(),
      };
    });

    // Changes pushed as branches for review, as the client page lists them.
    await step('pending', async () => {
      const resp = await page.goto(`${args.base}${clientPath}`);
      const ok = resp.status() === 200 && (await page.locator('section#pending').count()) > 0;
      return { ok, status: resp.status(), detail: ok ? await text('section#pending') : await where() };
    });

    // From the ledger: who had access to the client now, and one person's history.
    await step('access', async () => {
      const resp = await page.goto(`${args.base}${clientPath}/access?at=now`);
      const ok = resp.status() === 200 && (await page.locator('section#access').count()) > 0;
      await screenshot('access.png');
      return { ok, status: resp.status(), detail: ok ? await text('section#access') : await where() };
    });
    if (args.historyEmail) {
      await step('history', async () => {
        const resp = await page.goto(`${args.base}${clientPath}/people/${encodeURIComponent(args.historyEmail)}/history`);
        const ok = resp.status() === 200 && (await page.locator('section#history').count()) > 0;
        return { ok, status: resp.status(), detail: ok ? await text('section#history') : await where() };
      });
    }

    await step('other-client', async () => {
      const resp = await page.goto(`${args.base}/clients/${args.otherClient}`);
      const forbidden = await visible('section#forbidden');
      await screenshot('forbidden.png');
      return {
        ok: resp.status() === 403 && forbidden,
        status: resp.status(),
        detail: forbidden ? await text('section#forbidden') : await where(),
      };
    });

    await step('forged-post', async () => {
      const result = await forged(true, attackerBase);
      await screenshot('forged-post.png');
      return result;
    });

    await step('forged-post-no-token', () => forged(false, attackerBase));

    // The same session posting from our own origin (or with no Origin header, as some
    // proxies strip it) but without the session's token: only the token can refuse it.
    const tokenless = (headers, csrf) => async () => {
      const form = { email: 'sneaky@acme.example', display_name: 'Sneaky', role: args.inviteRole, reason: 'forged' };
      if (csrf !== undefined) form.csrf = csrf;
      const resp = await context.request.post(`${args.base}${clientPath}/invite`, { form, headers, maxRedirects: 0 });
      const body = await resp.text();
      const ok = resp.status() === 403 && body.includes('id="forbidden"') && !body.includes('id="review"');
      return { ok, status: resp.status(), detail: oneLine(body).slice(0, 300) };
    };
    await step('post-wrong-token', tokenless({ Origin: baseOrigin }, 'f'.repeat(64)));
    await step('post-no-origin-no-token', tokenless({}, undefined));

    await step('sign-out', async () => {
      await page.goto(`${args.base}/`);
      const button = page.locator('form#sign-out button');
      if ((await button.count()) === 0) throw new Error('no form#sign-out button');
      const out = await navigate(() => button.first().click());
      const signedOut = await visible('a#sign-in');
      await screenshot('signed-out-again.png');
      // Then the client page must not be shown: latchkey redirects (to /login or /) or shows
      // a#sign-in. The first hop's status is the step's.
      const resp = await page.goto(`${args.base}${clientPath}`);
      const chain = [];
      for (let req = resp.request(); req; req = req.redirectedFrom()) chain.unshift(req);
      const hops = [];
      for (const req of chain) {
        const r = await req.response();
        const u = new URL(req.url());
        hops.push(`${r ? r.status() : '?'} ${u.origin === baseOrigin ? '' : u.origin}${u.pathname}`);
      }
      const first = await chain[0].response();
      const firstStatus = first ? first.status() : null;
      const redirected = firstStatus >= 300 && firstStatus < 400;
      const showsSignIn = await visible('a#sign-in');
      const showsPeople = (await page.locator('table#people').count()) > 0
        && new URL(page.url()).pathname === clientPath;
      const ok = signedOut && (redirected || showsSignIn) && !showsPeople;
      return {
        ok,
        status: firstStatus,
        detail: `after sign-out (${out.status()}) ${signedOut ? 'a#sign-in shown' : 'no a#sign-in'}; then ${hops.join(' -> ')}`,
      };
    });
  } finally {
    if (context) await context.close().catch((err) => log(`close: ${err.message}`));
    attacker.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  const failed = [...results].filter(([, ok]) => !ok).map(([name]) => name);
  log(failed.length ? `not ok: ${failed.join(', ')}` : 'every step ok');
}

run().then(() => {
  process.exitCode = 0;
}, (err) => {
  log(`crashed: ${err.stack || err}`);
  process.exit(1);
});
