// Runs the browser scenario end to end against the stand-in server (fake-latchkey.mjs), ONLY to
// develop tests/browser/scenario.mjs and oidc-provider.mjs without the Rust server:
//
//   node tests/browser/selftest/run.mjs [--screenshots DIR] [--flaw NAME ...]
//
// Starts oidc-provider.mjs, then fake-latchkey.mjs once with client_secret_basic and once with
// client_secret_post at the token endpoint, runs scenario.mjs against each, prints its lines
// and exits non-zero unless every step was ok both times. With --flaw (see fake-latchkey.mjs)
// the stand-in is wrong on purpose, once, and the steps that notice are printed not ok.
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const browserDir = path.dirname(here);
let screenshots;
const flaws = [];
for (let i = 2; i < process.argv.length; i += 2) {
  const value = process.argv[i + 1];
  if (value === undefined) throw new Error(`${process.argv[i]} needs a value`);
  if (process.argv[i] === '--screenshots') screenshots = value;
  else if (process.argv[i] === '--flaw') flaws.push('--flaw', value);
  else throw new Error(`unknown argument ${process.argv[i]}`);
}
const modes = flaws.length ? ['basic'] : ['basic', 'post'];

const STEPS = ['signed-out', 'sign-in', 'client-page', 'invite-review', 'invite-confirm',
  'remove-review', 'remove-confirm', 'role-outside', 'other-client', 'forged-post',
  'forged-post-no-token', 'sign-out'];

const children = [];

function start(script, args) {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`${script}: no ready line in 20 s`)), 20000);
    lines.once('line', (line) => {
      clearTimeout(timer);
      const m = /^ready (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (m) resolve({ child, url: m[1] });
      else reject(new Error(`${script}: said ${line}`));
    });
    child.once('exit', (code) => reject(new Error(`${script} exited ${code}`)));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function runScenario(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(browserDir, 'scenario.mjs'), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const steps = [];
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      process.stdout.write(`  ${line}\n`);
      steps.push(JSON.parse(line));
    });
    child.on('exit', (code) => (code === 0 ? resolve(steps) : reject(new Error(`scenario exited ${code}`))));
  });
}

async function main() {
  const clientId = 'latchkey-selftest';
  const clientSecret = 'selftest-secret-0123456789';
  const ports = [await freePort(), await freePort()];
  const op = await start(path.join(browserDir, 'oidc-provider.mjs'), [
    '--port', '0', '--client-id', clientId, '--client-secret', clientSecret,
    ...ports.flatMap((p) => ['--redirect-uri', `http://127.0.0.1:${p}/callback`]),
  ]);
  console.log(`provider ${op.url}`);
  let bad = 0;
  for (const [i, tokenAuth] of modes.entries()) {
    const fake = await start(path.join(here, 'fake-latchkey.mjs'), [
      '--port', String(ports[i]), '--issuer', op.url, '--client-id', clientId,
      '--client-secret', clientSecret, '--token-auth', tokenAuth, ...flaws,
    ]);
    console.log(`fake latchkey ${fake.url} (client_secret_${tokenAuth})`);
    const steps = await runScenario([
      '--base', fake.url, '--login', 'dana@acme.example',
      '--invite-email', 'new.hire@acme.example', '--invite-role', 'finance-viewer',
      '--invite-expires', `${new Date().getUTCFullYear() + 1}-03-31`,
      '--remove-email', 'erin@acme.example',
      ...(screenshots ? ['--screenshots', path.join(screenshots, tokenAuth)] : []),
    ]);
    fake.child.kill();
    const names = steps.map((s) => s.step);
    if (names.join(' ') !== STEPS.join(' ')) {
      console.log(`steps were ${names.join(' ')}`);
      bad += 1;
    }
    bad += steps.filter((s) => !s.ok).length;
  }
  return bad;
}

main().then((bad) => {
  for (const c of children) c.kill();
  console.log(bad ? `${bad} not ok` : 'selftest: every step ok');
  process.exit(bad ? 1 : 0);
}, (err) => {
  for (const c of children) c.kill();
  console.error(err.stack || err);
  process.exit(2);
});
