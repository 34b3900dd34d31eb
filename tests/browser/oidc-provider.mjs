// A real OpenID Connect provider on loopback, for the browser tests of `latchkey serve`.
//
//   node tests/browser/oidc-provider.mjs --port P --client-id ID --client-secret SECRET \
//        --redirect-uri URI [--redirect-uri URI2 ...]
//
// Issuer http://127.0.0.1:P (with --port 0 a free port, named in the ready line). It is panva's oidc-provider (a certified OP), configured for one
// confidential client: authorization code flow, PKCE S256 required, the client may authenticate
// at the token endpoint with client_secret_basic or client_secret_post, scopes
// `openid email profile`, ID tokens signed RS256 with a key made at start, `nonce` echoed.
//
// Its login page (form#login) takes any login: the login typed is the user's email and any
// password is accepted. The account's claims: sub = the email, email, email_verified: true,
// name = the part before @ capitalised. Consent is granted at once for what the client asked
// (no consent page). The ID token carries the claims (email, name) itself, not only userinfo.
//
// When it listens it prints exactly one line `ready http://127.0.0.1:P` on stdout and runs until
// killed. All its own chatter goes to stderr. It makes no outgoing requests.
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as querystring from 'node:querystring';

// oidc-provider prints its notices with console.info (stdout); stdout is for the ready line.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

function parseArgs(argv) {
  const out = { redirectUris: [] };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      i += 1;
      return argv[i];
    };
    switch (arg) {
      case '--port': out.port = Number(value()); break;
      case '--client-id': out.clientId = value(); break;
      case '--client-secret': out.clientSecret = value(); break;
      case '--redirect-uri': out.redirectUris.push(value()); break;
      default: throw new Error(`unknown argument ${arg}`);
    }
  }
  if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) throw new Error('--port P is required');
  if (!out.clientId) throw new Error('--client-id is required');
  if (!out.clientSecret) throw new Error('--client-secret is required');
  if (out.redirectUris.length === 0) throw new Error('--redirect-uri is required');
  return out;
}

function fail(message) {
  process.stderr.write(`oidc-provider.mjs: ${message}\n`);
  process.exit(2);
}

let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (err) {
  fail(err.message);
}

// Imported after console.info is redirected (a static import would run first).
const { default: Provider } = await import('oidc-provider');

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

function displayName(email) {
  const local = email.split('@')[0] || email;
  return local.charAt(0).toUpperCase() + local.slice(1);
}

const signingKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ format: 'jwk' });
signingKey.use = 'sig';
signingKey.alg = 'RS256';
signingKey.kid = crypto.randomBytes(8).toString('hex');

function configuration() {
  return {
    clients: [{
      client_id: args.clientId,
      client_secret: args.clientSecret,
      redirect_uris: args.redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    }],
    // Either method works for a client registered with client_secret_basic (oidc-provider
    // accepts a secret in the body or in the Authorization header for both).
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    responseTypes: ['code'],
    jwks: { keys: [signingKey] },
    cookies: {
      keys: [crypto.randomBytes(32).toString('hex')],
      // Cookies are scoped by host, not port: the provider's and latchkey's cookies share the
      // browser's jar for 127.0.0.1. Names of their own, so neither overwrites the other's.
      names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_resume' },
      // Plain http on loopback: oidc-provider only marks cookies Secure when the request
      // came over https (ctx.secure), so nothing to relax here beyond not setting secure.
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    scopes: ['openid', 'email', 'profile'],
    // Put the scope's claims in the ID token too, as the common providers do, so a relying
    // party can read the email from the ID token without calling userinfo.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      // Keep every feature that would fetch something off (they are off by default).
      registration: { enabled: false },
      requestObjects: { enabled: false },
      introspection: { enabled: false },
      revocation: { enabled: false },
    },
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      async claims() {
        return {
          sub,
          email: sub,
          email_verified: true,
          name: displayName(sub),
        };
      },
    }),
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 120,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = page('Sign-in error', `<section id="op-error"><h1>Sign-in error</h1><dl>${
        Object.entries(out).map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('')
      }</dl></section>`);
    },
  };
}

function page(title, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>
  body { font-family: "DejaVu Sans", sans-serif; background: #eef1f5; margin: 0; }
  main { max-width: 24rem; margin: 6rem auto; background: #fff; padding: 2rem; border-radius: 8px;
         box-shadow: 0 1px 4px rgba(0,0,0,.15); }
  h1 { font-size: 1.3rem; margin-top: 0; }
  label { display: block; margin: 1rem 0 .25rem; }
  input { width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; }
  button { margin-top: 1.5rem; padding: .6rem 1.2rem; font-size: 1rem; }
  .note { color: #666; font-size: .85rem; }
</style></head>
<body><main>${body}</main></body></html>
`;
}

function loginPage(uid, clientId, error) {
  return page('Sign in', `
<h1>Test identity provider</h1>
<p class="note">Signing in to <b>${escapeHtml(clientId)}</b>. Any email and password are accepted.</p>
${error ? `<p id="login-error">${escapeHtml(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
  <label for="login-field">Email</label>
  <input id="login-field" type="email" name="login" required autofocus>
  <label for="password-field">Password</label>
  <input id="password-field" type="password" name="password">
  <button type="submit">Sign in</button>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return querystring.parse(Buffer.concat(chunks).toString('utf8'));
}

// Grants what the authorization request asked for, so no consent page is needed.
async function grantAll(provider, details, accountId) {
  const { params, prompt } = details;
  let grant;
  if (details.grantId) {
    grant = await provider.Grant.find(details.grantId);
  }
  if (!grant) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  if (params.scope) grant.addOIDCScope(String(params.scope));
  const missing = prompt?.details || {};
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return grant.save();
}

// Made once the port is known (--port 0 picks a free one; the issuer names the real port).
let issuer;
let provider;
let handleOidc;

async function handleInteraction(req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page('Sign-in error', `<section id="op-error"><h1>Sign-in error</h1><p>${escapeHtml(err.message)}</p></section>`));
    return;
  }
  if (details.uid !== uid) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end('interaction mismatch\n');
    return;
  }
  const promptName = details.prompt.name;
  if (req.method === 'GET' && action === undefined) {
    if (promptName === 'login') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(loginPage(uid, details.params.client_id));
      return;
    }
    if (promptName === 'consent') {
      const grantId = await grantAll(provider, details, details.session.accountId);
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(`unexpected prompt ${promptName}\n`);
    return;
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const login = String(form.login || '').trim();
    if (!login) {
      res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginPage(uid, details.params.client_id, 'Type an email.'));
      return;
    }
    const grantId = await grantAll(provider, details, login);
    await provider.interactionFinished(req, res, {
      login: { accountId: login },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    return;
  }
  res.writeHead(405, { 'content-type': 'text/plain' });
  res.end('method not allowed\n');
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  const match = /^\/interaction\/([^/]+)(?:\/([a-z]+))?$/.exec(url.pathname);
  if (match) {
    handleInteraction(req, res, match[1], match[2]).catch((err) => {
      process.stderr.write(`oidc-provider.mjs interaction: ${err.stack || err}\n`);
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain' });
      }
      res.end('interaction failed\n');
    });
    return;
  }
  handleOidc(req, res);
});

server.on('error', (err) => fail(err.message));
server.listen(args.port, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, configuration());
  provider.on('server_error', (_ctx, err) => process.stderr.write(`oidc-provider server_error: ${err.stack || err}\n`));
  handleOidc = provider.callback();
  process.stdout.write(`ready ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
