// A stand-in for `latchkey serve`, ONLY for developing tests/browser/scenario.mjs and
// tests/browser/oidc-provider.mjs without the Rust server. It is not latchkey and proves nothing
// about it: it follows the HTML contract of the page (tests/browser/README.md) with data kept in
// memory, so the scenario can be run end to end and every step seen ok.
//
//   node fake-latchkey.mjs --port P --issuer http://127.0.0.1:Q --client-id ID \
//        --client-secret SECRET [--token-auth basic|post] [--flaw NAME ...]
//
// --flaw makes it wrong on purpose, to see that the scenario notices (each step that should
// fail does): no-csrf (POSTs are not checked), open-clients (another client's page is shown),
// no-pkce (no code_challenge sent: the provider must refuse), secure-cookie (the session cookie
// is marked Secure, to see what Chromium does with it on http://127.0.0.1).
//
// It is a real OpenID Connect relying party: discovery, authorization code flow with PKCE S256,
// state and nonce, token exchange with client_secret_basic or client_secret_post, and the ID
// token's RS256 signature, iss, aud, exp and nonce checked against the provider's JWKS before
// its email is used. Forms carry a per-session csrf token, checked on every POST.
// Prints `ready http://127.0.0.1:P` on stdout when listening.
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as querystring from 'node:querystring';

function parseArgs(argv) {
  const out = { tokenAuth: 'basic', port: 0, flaws: new Set() };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      i += 1;
      return argv[i];
    };
    switch (arg) {
      case '--port': out.port = Number(value()); break;
      case '--issuer': out.issuer = value(); break;
      case '--client-id': out.clientId = value(); break;
      case '--client-secret': out.clientSecret = value(); break;
      case '--token-auth': out.tokenAuth = value(); break;
      case '--flaw': out.flaws.add(value()); break;
      default: throw new Error(`unknown argument ${arg}`);
    }
  }
  if (!out.issuer || !out.clientId || !out.clientSecret) {
    throw new Error('--issuer, --client-id and --client-secret are required');
  }
  if (!['basic', 'post'].includes(out.tokenAuth)) throw new Error('--token-auth is basic or post');
  return out;
}

const args = parseArgs(process.argv.slice(2));
let base; // http://127.0.0.1:P, once listening

// ---- data ------------------------------------------------------------------------------------

const clients = new Map([
  ['acme', {
    display: 'Acme Corp',
    admins: new Set(['dana@acme.example']),
    roles: ['member', 'finance-viewer', 'client-admin'],
    people: new Map([
      ['dana@acme.example', { name: 'Dana', role: 'client-admin', expires: '' }],
      ['erin@acme.example', { name: 'Erin', role: 'member', expires: '2027-03-31' }],
      ['frank@acme.example', { name: 'Frank', role: 'finance-viewer', expires: '' }],
    ]),
  }],
  ['globex', {
    display: 'Globex',
    admins: new Set(['gina@globex.example']),
    roles: ['member'],
    people: new Map([['gina@globex.example', { name: 'Gina', role: 'client-admin', expires: '' }]]),
  }],
]);

const sessions = new Map(); // sid -> { email, csrf }
const logins = new Map(); // state -> { verifier, nonce, at }
const proposals = new Map(); // id -> { email, client, kind, ..., done }
let commitCounter = 0;

// ---- helpers ---------------------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const random = (n = 32) => b64url(crypto.randomBytes(n));

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

function cookies(req) {
  const out = {};
  for (const part of (req.headers.cookie || '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = decodeURIComponent(part.slice(i + 1).trim());
  }
  return out;
}

function sessionOf(req) {
  const sid = cookies(req).lk_session;
  return sid ? sessions.get(sid) : undefined;
}

function sameToken(a, b) {
  const x = Buffer.from(String(a || ''));
  const y = Buffer.from(String(b || ''));
  return x.length === y.length && x.length > 0 && crypto.timingSafeEqual(x, y);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return querystring.parse(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html, headers = {}) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(html);
}

function redirect(res, location, headers = {}) {
  res.writeHead(303, { location, 'content-length': '0', ...headers });
  res.end();
}

function layout(title, session, body) {
  const who = session
    ? `<span>${escapeHtml(session.email)}</span>
       <form id="sign-out" method="post" action="/logout"><input type="hidden" name="csrf" value="${escapeHtml(session.csrf)}"><button type="submit">Sign out</button></form>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} · latchkey (fake)</title>
<style>
  body { font-family: "DejaVu Sans", sans-serif; margin: 0; background: #f6f7f9; color: #222; }
  header { background: #243447; color: #fff; padding: .8rem 2rem; display: flex; gap: 1rem; align-items: center; }
  header h1 { font-size: 1.1rem; margin: 0; flex: 1; }
  header form { display: inline; }
  main { max-width: 60rem; margin: 2rem auto; background: #fff; padding: 1.5rem 2rem; border-radius: 6px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #ddd; }
  form#invite { display: grid; grid-template-columns: 10rem 1fr; gap: .5rem 1rem; max-width: 36rem; }
  form.remove { display: flex; gap: .5rem; }
  section#review, section#done { background: #eef6ee; padding: 1rem; border-radius: 4px; }
  section#refused, section#forbidden { background: #fbeaea; padding: 1rem; border-radius: 4px; }
  .fake { color: #c33; font-size: .8rem; }
</style></head>
<body><header><h1>latchkey <span class="fake">(stand-in for scenario development)</span></h1>${who}</header>
<main>${body}</main></body></html>
`;
}

function forbidden(res, session, why) {
  send(res, 403, layout('Forbidden', session, `<section id="forbidden"><h2>Forbidden</h2><p>${escapeHtml(why)}</p></section>`));
}

// ---- OpenID Connect relying party ---------------------------------------------------------------

let discovery;
async function provider() {
  if (!discovery) {
    const resp = await fetch(`${args.issuer}/.well-known/openid-configuration`);
    if (!resp.ok) throw new Error(`discovery: ${resp.status}`);
    discovery = await resp.json();
    if (discovery.issuer !== args.issuer) throw new Error(`discovery: issuer ${discovery.issuer}`);
    const jwks = await fetch(discovery.jwks_uri);
    discovery.keys = (await jwks.json()).keys;
  }
  return discovery;
}

function verifyIdToken(idToken, op, nonce) {
  const parts = idToken.split('.');
  if (parts.length !== 3) throw new Error('id_token is not a JWS');
  const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  if (header.alg !== 'RS256') throw new Error(`id_token alg ${header.alg}`);
  const jwk = op.keys.find((k) => k.kid === header.kid && k.kty === 'RSA');
  if (!jwk) throw new Error('id_token kid not in the JWKS');
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const ok = crypto.verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), key, Buffer.from(parts[2], 'base64url'));
  if (!ok) throw new Error('id_token signature does not verify');
  const now = Math.floor(Date.now() / 1000);
  if (claims.iss !== args.issuer) throw new Error(`id_token iss ${claims.iss}`);
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes(args.clientId)) throw new Error('id_token aud');
  if (!(claims.exp > now - 30)) throw new Error('id_token expired');
  if (claims.nonce !== nonce) throw new Error('id_token nonce');
  if (!claims.email || claims.email_verified !== true) throw new Error('id_token has no verified email');
  return claims;
}

async function login(req, res) {
  const op = await provider();
  const state = random();
  const nonce = random();
  const verifier = random(48);
  const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
  logins.set(state, { verifier, nonce, at: Date.now() });
  const url = new URL(op.authorization_endpoint);
  const params = new URLSearchParams({
    response_type: 'code',
    client_id: args.clientId,
    redirect_uri: `${base}/callback`,
    scope: 'openid email profile',
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  if (args.flaws.has('no-pkce')) {
    params.delete('code_challenge');
    params.delete('code_challenge_method');
  }
  url.search = params.toString();
  // The state is also bound to this browser, so a callback started elsewhere is refused.
  redirect(res, url.href, { 'set-cookie': `lk_login=${state}; Path=/callback; HttpOnly; SameSite=Lax; Max-Age=600` });
}

async function callback(req, res, url) {
  const op = await provider();
  const state = url.searchParams.get('state');
  const code = url.searchParams.get('code');
  const pending = state && logins.get(state);
  if (!pending || cookies(req).lk_login !== state) {
    forbidden(res, undefined, 'The sign-in state is unknown or was started in another browser.');
    return;
  }
  logins.delete(state);
  if (url.searchParams.get('error')) {
    forbidden(res, undefined, `The identity provider said: ${url.searchParams.get('error')}`);
    return;
  }
  const iss = url.searchParams.get('iss');
  if (iss !== null && iss !== args.issuer) {
    forbidden(res, undefined, 'The authorization response came from another issuer.');
    return;
  }
  const body = new URLSearchParams({
    grant_type: 'authorization_code',
    code,
    redirect_uri: `${base}/callback`,
    code_verifier: pending.verifier,
  });
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (args.tokenAuth === 'basic') {
    const enc = (s) => encodeURIComponent(s);
    headers.authorization = `Basic ${Buffer.from(`${enc(args.clientId)}:${enc(args.clientSecret)}`).toString('base64')}`;
  } else {
    body.set('client_id', args.clientId);
    body.set('client_secret', args.clientSecret);
  }
  const resp = await fetch(op.token_endpoint, { method: 'POST', headers, body });
  const tokens = await resp.json();
  if (!resp.ok) {
    forbidden(res, undefined, `Token exchange failed: ${tokens.error}: ${tokens.error_description}`);
    return;
  }
  const claims = verifyIdToken(tokens.id_token, op, pending.nonce);
  const sid = random();
  sessions.set(sid, { email: claims.email.toLowerCase(), name: claims.name, csrf: random() });
  redirect(res, '/', {
    'set-cookie': [
      `lk_session=${sid}; Path=/; HttpOnly; SameSite=Lax${args.flaws.has('secure-cookie') ? '; Secure' : ''}`,
      'lk_login=; Path=/callback; Max-Age=0',
    ],
  });
}

// ---- pages -----------------------------------------------------------------------------------

function home(res, session) {
  if (!session) {
    send(res, 200, layout('Welcome', undefined, '<h2>Self-service access</h2><p><a id="sign-in" href="/login">Sign in</a></p>'));
    return;
  }
  const mine = [...clients].filter(([, c]) => c.admins.has(session.email));
  send(res, 200, layout('Your clients', session, `<h2>Your clients</h2>
<ul id="clients">${mine.map(([name, c]) => `<li><a href="/clients/${escapeHtml(name)}">${escapeHtml(c.display)}</a></li>`).join('')}</ul>`));
}

function clientPage(res, session, name, client) {
  const rows = [...client.people].map(([email, p]) => `<tr data-email="${escapeHtml(email)}">
  <td>${escapeHtml(email)}</td><td>${escapeHtml(p.name)}</td><td>${escapeHtml(p.role)}</td><td>${escapeHtml(p.expires || '—')}</td>
  <td><form class="remove" data-email="${escapeHtml(email)}" method="post" action="/clients/${escapeHtml(name)}/people/${encodeURIComponent(email)}/remove">
    <input type="hidden" name="csrf" value="${escapeHtml(session.csrf)}">
    <input name="reason" placeholder="Reason">
    <button type="submit">Remove</button></form></td></tr>`).join('\n');
  send(res, 200, layout(client.display, session, `<h2>${escapeHtml(client.display)}</h2>
<table id="people"><thead><tr><th>Email</th><th>Name</th><th>Role</th><th>Expires</th><th></th></tr></thead>
<tbody>${rows}</tbody></table>
<h3>Invite someone</h3>
<form id="invite" method="post" action="/clients/${escapeHtml(name)}/invite">
  <input type="hidden" name="csrf" value="${escapeHtml(session.csrf)}">
  <label for="i-email">Email</label><input id="i-email" type="email" name="email">
  <label for="i-name">Display name</label><input id="i-name" name="display_name">
  <label for="i-role">Role</label><select id="i-role" name="role">${client.roles.map((r) => `<option value="${escapeHtml(r)}">${escapeHtml(r)}</option>`).join('')}</select>
  <label for="i-expires">Expires</label><input id="i-expires" type="date" name="expires">
  <label for="i-reason">Reason</label><input id="i-reason" name="reason">
  <span></span><button type="submit">Review</button>
</form>`));
}

function review(res, session, proposal, summary) {
  const id = random(12);
  proposals.set(id, { ...proposal, by: session.email, done: false });
  send(res, 200, layout('Review', session, `<section id="review"><h2>Review</h2>${summary}</section>
<form id="confirm" method="post" action="/proposals/${id}/confirm">
  <input type="hidden" name="csrf" value="${escapeHtml(session.csrf)}">
  <button type="submit">Confirm</button></form>`));
}

function refused(res, session, problems) {
  send(res, 422, layout('Refused', session, `<section id="refused"><h2>Not possible</h2><ul>${
    problems.map((p) => `<li>${escapeHtml(p)}</li>`).join('')}</ul></section>`));
}

function validExpiry(value) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) return false;
  const d = new Date(`${value}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === value && d.getTime() > Date.now();
}

function invite(res, session, name, client, form) {
  const problems = [];
  const email = String(form.email || '').trim().toLowerCase();
  const displayName = String(form.display_name || '').trim();
  const role = String(form.role || '');
  const expires = String(form.expires || '');
  const reason = String(form.reason || '').trim();
  if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) problems.push('The email is not an email address.');
  else if (client.people.has(email)) problems.push(`${email} already has access.`);
  if (!displayName) problems.push('A display name is needed.');
  if (!client.roles.includes(role)) problems.push(`The role ${role} is outside the roles you may grant for ${client.display}.`);
  if (!validExpiry(expires)) problems.push('The expiry must be a date in the future.');
  if (!reason) problems.push('A reason is needed.');
  if (problems.length) {
    refused(res, session, problems);
    return;
  }
  review(res, session, { kind: 'invite', client: name, email, displayName, role, expires, reason },
    `<p>Invite <b>${escapeHtml(email)}</b> (${escapeHtml(displayName)}) to ${escapeHtml(client.display)} as <b>${escapeHtml(role)}</b> until ${escapeHtml(expires)}.</p><p>Reason: ${escapeHtml(reason)}</p>`);
}

function remove(res, session, name, client, email, form) {
  if (!client.people.has(email)) {
    refused(res, session, [`${email} has no access to ${client.display}.`]);
    return;
  }
  if (email === session.email) {
    refused(res, session, ['You cannot remove yourself.']);
    return;
  }
  const reason = String(form.reason || '').trim();
  review(res, session, { kind: 'remove', client: name, email, reason },
    `<p>Remove <b>${escapeHtml(email)}</b> from ${escapeHtml(client.display)}.</p>${reason ? `<p>Reason: ${escapeHtml(reason)}</p>` : ''}`);
}

function confirm(res, session, id) {
  const p = proposals.get(id);
  if (!p || p.by !== session.email || p.done) {
    forbidden(res, session, 'This proposal is not yours, or was already confirmed.');
    return;
  }
  p.done = true;
  const client = clients.get(p.client);
  if (p.kind === 'invite') client.people.set(p.email, { name: p.displayName, role: p.role, expires: p.expires });
  else client.people.delete(p.email);
  commitCounter += 1;
  const sha = crypto.createHash('sha1').update(`${commitCounter}:${JSON.stringify(p)}`).digest('hex');
  send(res, 200, layout('Done', session, `<section id="done" data-commit="${sha}"><h2>Done</h2>
<p>Committed as <code>${sha}</code>.</p><p><a href="/clients/${escapeHtml(p.client)}">Back to ${escapeHtml(client.display)}</a></p></section>`));
}

// ---- routing ---------------------------------------------------------------------------------

async function route(req, res) {
  const url = new URL(req.url, base);
  const path = url.pathname;
  const session = sessionOf(req);
  if (req.method === 'GET' && path === '/') return home(res, session);
  if (req.method === 'GET' && path === '/login') return login(req, res);
  if (req.method === 'GET' && path === '/callback') return callback(req, res, url);
  if (req.method === 'GET' && path === '/favicon.ico') { res.writeHead(404); res.end(); return undefined; }

  let m = /^\/clients\/([a-z0-9-]+)$/.exec(path);
  if (req.method === 'GET' && m) {
    if (!session) return redirect(res, '/login');
    const client = clients.get(m[1]);
    if (!client) return forbidden(res, session, 'No such client.');
    if (!client.admins.has(session.email) && !args.flaws.has('open-clients')) return forbidden(res, session, 'You do not manage this client.');
    return clientPage(res, session, m[1], client);
  }
  if (req.method !== 'POST') {
    send(res, 404, layout('Not found', session, '<p>Not found.</p>'));
    return undefined;
  }

  const form = await readForm(req);
  if (!session) return forbidden(res, undefined, 'Not signed in.');
  if (!sameToken(form.csrf, session.csrf) && !args.flaws.has('no-csrf')) {
    return forbidden(res, session, `Signed in as ${session.email}, but the form's csrf token is ${form.csrf === undefined ? 'missing' : 'wrong'}.`);
  }
  if (path === '/logout') {
    sessions.delete(cookies(req).lk_session);
    return redirect(res, '/', { 'set-cookie': 'lk_session=; Path=/; Max-Age=0' });
  }
  m = /^\/proposals\/([A-Za-z0-9_-]+)\/confirm$/.exec(path);
  if (m) return confirm(res, session, m[1]);
  m = /^\/clients\/([a-z0-9-]+)\/(invite|people\/([^/]+)\/remove)$/.exec(path);
  if (m) {
    const client = clients.get(m[1]);
    if (!client || !client.admins.has(session.email)) return forbidden(res, session, 'You do not manage this client.');
    if (m[2] === 'invite') return invite(res, session, m[1], client, form);
    return remove(res, session, m[1], client, decodeURIComponent(m[3]).toLowerCase(), form);
  }
  send(res, 404, layout('Not found', session, '<p>Not found.</p>'));
  return undefined;
}

const server = http.createServer((req, res) => {
  route(req, res).catch((err) => {
    process.stderr.write(`fake-latchkey: ${req.method} ${req.url}: ${err.stack || err}\n`);
    if (!res.headersSent) send(res, 500, `<pre>${escapeHtml(err.message)}</pre>`);
    else res.end();
  });
});
server.listen(args.port, '127.0.0.1', () => {
  base = `http://127.0.0.1:${server.address().port}`;
  process.stdout.write(`ready ${base}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
