// Checks oidc-provider.mjs by itself, without a browser, ONLY while developing the test harness:
//
//   node tests/browser/selftest/provider-check.mjs
//
// Starts the provider, then plays a relying party with fetch (cookies carried by hand): the
// code flow with PKCE S256 and a nonce, the login form, the token exchange with
// client_secret_basic and with client_secret_post, and the ways it must refuse (no PKCE, a
// wrong verifier, a wrong secret, a redirect_uri not registered, a code used twice). Prints
// what it saw and the ID token's claims, and exits non-zero on the first surprise.
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLIENT_ID = 'check-client';
const SECRET = 'check-secret-0123456789';
const REDIRECT = 'http://127.0.0.1:9/callback'; // never visited: redirects are read, not followed

const b64url = (b) => Buffer.from(b).toString('base64url');
let failures = 0;
function expect(what, cond, info = '') {
  console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}${info ? `: ${info}` : ''}`);
  if (!cond) failures += 1;
}

const op = spawn(process.execPath, [path.join(path.dirname(here), 'oidc-provider.mjs'),
  '--port', '0', '--client-id', CLIENT_ID, '--client-secret', SECRET, '--redirect-uri', REDIRECT],
{ stdio: ['ignore', 'pipe', 'ignore'] });
const stdoutLines = [];
const issuer = await new Promise((resolve, reject) => {
  const rl = readline.createInterface({ input: op.stdout });
  rl.on('line', (line) => {
    stdoutLines.push(line);
    const m = /^ready (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
    if (m) resolve(m[1]);
  });
  op.once('exit', (code) => reject(new Error(`provider exited ${code}`)));
  setTimeout(() => reject(new Error('no ready line')), 20000);
});

class Jar {
  constructor() { this.cookies = new Map(); }
  take(resp) {
    for (const c of resp.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      this.cookies.set(pair.slice(0, i), pair.slice(i + 1));
    }
  }
  header() { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }
}

async function get(jar, url) {
  const resp = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } });
  jar.take(resp);
  return resp;
}

// Runs the front channel up to the redirect back to the client; returns that URL.
async function authorize({ pkce = true, redirectUri = REDIRECT, login = 'dana@acme.example' } = {}) {
  const jar = new Jar();
  const verifier = b64url(crypto.randomBytes(32));
  const nonce = b64url(crypto.randomBytes(16));
  const state = b64url(crypto.randomBytes(16));
  const params = new URLSearchParams({
    response_type: 'code', client_id: CLIENT_ID, redirect_uri: redirectUri,
    scope: 'openid email profile', state, nonce,
  });
  if (pkce) {
    params.set('code_challenge', b64url(crypto.createHash('sha256').update(verifier).digest()));
    params.set('code_challenge_method', 'S256');
  }
  let resp = await get(jar, `${discovery.authorization_endpoint}?${params}`);
  let location = resp.headers.get('location');
  if (resp.status !== 303 || !location?.includes('/interaction/')) {
    return { status: resp.status, location, body: await resp.text() };
  }
  const loginUrl = new URL(location, issuer);
  resp = await get(jar, loginUrl);
  const page = await resp.text();
  expect('login page shows form#login with input[name=login]', /id="login"/.test(page) && /name="login"/.test(page));
  resp = await fetch(new URL(`${loginUrl.pathname}/login`, issuer), {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie: jar.header(), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ login, password: 'whatever' }),
  });
  jar.take(resp);
  location = resp.headers.get('location');
  // Resume at the authorization endpoint until it sends the browser back to the client.
  for (let hops = 0; hops < 5 && location && !location.startsWith(redirectUri); hops += 1) {
    resp = await get(jar, new URL(location, issuer));
    location = resp.headers.get('location');
  }
  return { status: resp.status, location, verifier, nonce, state };
}

async function token(code, verifier, method, secret = SECRET) {
  const body = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT });
  if (verifier) body.set('code_verifier', verifier);
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (method === 'basic') {
    headers.authorization = `Basic ${Buffer.from(`${CLIENT_ID}:${secret}`).toString('base64')}`;
  } else {
    body.set('client_id', CLIENT_ID);
    body.set('client_secret', secret);
  }
  const resp = await fetch(discovery.token_endpoint, { method: 'POST', headers, body });
  return { status: resp.status, json: await resp.json() };
}

function verifyJwt(jwt) {
  const [h, p, s] = jwt.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  const ok = header.alg === 'RS256' && jwk && crypto.verify('sha256', Buffer.from(`${h}.${p}`),
    crypto.createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(s, 'base64url'));
  return { ok, header, claims: JSON.parse(Buffer.from(p, 'base64url')) };
}

let discovery;
let jwks;
try {
  expect('stdout is exactly one ready line', stdoutLines.length === 1, stdoutLines[0]);
  discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  jwks = await (await fetch(discovery.jwks_uri)).json();
  expect('discovery issuer', discovery.issuer === issuer, discovery.issuer);
  expect('S256 only', JSON.stringify(discovery.code_challenge_methods_supported) === '["S256"]');
  expect('basic and post at the token endpoint',
    ['client_secret_basic', 'client_secret_post'].every((m) => discovery.token_endpoint_auth_methods_supported.includes(m)));
  expect('scopes openid email profile',
    ['openid', 'email', 'profile'].every((s) => discovery.scopes_supported.includes(s)));

  for (const method of ['basic', 'post']) {
    const front = await authorize();
    const back = new URL(front.location);
    expect(`[${method}] redirected back with code and state`, back.searchParams.get('code') && back.searchParams.get('state') === front.state,
      `${front.status} ${back.origin}${back.pathname}?${[...back.searchParams.keys()].join('&')}`);
    const code = back.searchParams.get('code');
    const t = await token(code, front.verifier, method);
    expect(`[${method}] token exchange`, t.status === 200 && t.json.id_token, `${t.status} ${t.json.error || ''}`);
    const { ok, header, claims } = verifyJwt(t.json.id_token);
    expect(`[${method}] ID token RS256 signature verifies against the JWKS`, ok, JSON.stringify(header));
    expect(`[${method}] nonce echoed`, claims.nonce === front.nonce);
    expect(`[${method}] claims`, claims.sub === 'dana@acme.example' && claims.email === 'dana@acme.example'
      && claims.email_verified === true && claims.name === 'Dana' && claims.iss === issuer && claims.aud === CLIENT_ID,
    JSON.stringify(claims));
    const me = await fetch(discovery.userinfo_endpoint, { headers: { authorization: `Bearer ${t.json.access_token}` } });
    expect(`[${method}] userinfo`, me.status === 200, JSON.stringify(await me.json()));
    const again = await token(code, front.verifier, method);
    expect(`[${method}] a code is used once`, again.status === 400 && again.json.error === 'invalid_grant', `${again.status} ${again.json.error}`);
  }

  const noPkce = await authorize({ pkce: false });
  const noPkceBack = noPkce.location ? new URL(noPkce.location) : undefined;
  expect('no PKCE: refused', noPkceBack?.searchParams.get('error') === 'invalid_request',
    noPkceBack?.searchParams.get('error_description'));

  const wrong = await authorize();
  const wrongCode = new URL(wrong.location).searchParams.get('code');
  const wrongVerifier = await token(wrongCode, b64url(crypto.randomBytes(32)), 'basic');
  expect('wrong code_verifier: refused', wrongVerifier.status === 400 && wrongVerifier.json.error === 'invalid_grant',
    `${wrongVerifier.status} ${wrongVerifier.json.error}`);

  const secretCheck = await authorize();
  const secretCode = new URL(secretCheck.location).searchParams.get('code');
  const badSecret = await token(secretCode, secretCheck.verifier, 'post', 'not-the-secret');
  expect('wrong client secret: refused', badSecret.status === 401 && badSecret.json.error === 'invalid_client',
    `${badSecret.status} ${badSecret.json.error}`);

  const elsewhere = await authorize({ redirectUri: 'http://127.0.0.1:9/elsewhere' });
  expect('unregistered redirect_uri: an error page, no redirect', elsewhere.status === 400 && !elsewhere.location,
    `${elsewhere.status} ${elsewhere.location || ''}`);

  const other = await authorize({ login: 'sam.o-neil@globex.example' });
  const otherCode = new URL(other.location).searchParams.get('code');
  const otherClaims = verifyJwt((await token(otherCode, other.verifier, 'basic')).json.id_token).claims;
  expect('name is the part before @ capitalised', otherClaims.name === 'Sam.o-neil', otherClaims.name);
} catch (err) {
  console.log(`FAIL ${err.stack || err}`);
  failures += 1;
} finally {
  op.kill();
}
console.log(failures ? `${failures} failed` : 'provider-check: all ok');
process.exit(failures ? 1 : 0);
