'use strict';
// A real registry for the Node tests, started as tests/common/registry.rs starts it: Debian's docker-registry
// (distribution 2.8) as a child process on a free loopback port, its storage in a temp folder, HTTPS with a
// certificate from a fresh CA (openssl) and basic auth from an htpasswd file (bcrypt, `htpasswd -Bbn`).
// scripts/install-test-deps.sh installs all three programs; a missing one fails the test, naming that script.

const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const { tempDir } = require('./helpers.cjs');

const START_TIMEOUT_MS = 20_000;
const PORT_ATTEMPTS = 3;

const CA_CONFIG = `[req]
distinguished_name = subject
x509_extensions = ca
prompt = no
[subject]
CN = imagepipe node test CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
`;

const SERVER_EXTENSIONS = `basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

/** `program`'s path, or an error naming the setup script. */
function requireProgram(program) {
  for (const directory of (process.env.PATH || '').split(path.delimiter)) {
    const candidate = path.join(directory, program);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // the next folder
    }
  }
  throw new Error(`\`${program}\` is not on PATH: scripts/install-test-deps.sh installs it`);
}

function run(program, args, options = {}) {
  return execFileSync(requireProgram(program), args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000, ...options });
}

/** A CA and a server certificate for 127.0.0.1 in `directory`, as tests/common/tls.rs makes them. */
function generateTls(directory) {
  fs.writeFileSync(path.join(directory, 'ca.cnf'), CA_CONFIG);
  fs.writeFileSync(path.join(directory, 'server.ext'), SERVER_EXTENSIONS);
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const options = { cwd: directory };
  run('openssl', ['req', '-x509', '-config', 'ca.cnf', '-days', '2', ...newKey, '-keyout', 'ca.key', '-out', 'ca.pem'], options);
  run('openssl', ['req', '-new', '-config', 'ca.cnf', '-subj', '/CN=localhost', ...newKey, '-keyout', 'server.key', '-out', 'server.csr'], options);
  run('openssl', ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem'], options);
  return { caCert: path.join(directory, 'ca.pem'), cert: path.join(directory, 'server.pem'), key: path.join(directory, 'server.key') };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Paths as JSON strings, which YAML reads as they are. */
function configYaml(port, root, tls, htpasswd) {
  const quoted = (value) => JSON.stringify(value);
  return `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${quoted(path.join(root, 'storage'))}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: imagepipe-node-test-secret
  tls:
    certificate: ${quoted(tls.cert)}
    key: ${quoted(tls.key)}
auth:
  htpasswd:
    realm: imagepipe-node-test
    path: ${quoted(htpasswd)}
`;
}

/** Resolves once something answers on `port` with an HTTP status line, as an HTTPS server does to plain HTTP. */
function answers(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const done = (result) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n'));
    socket.on('data', (chunk) => {
      data += chunk;
      if (data.includes('\n')) done(data.startsWith('HTTP/'));
    });
    socket.on('end', () => done(data.startsWith('HTTP/')));
  });
}

async function waitUntilAnswering(child, port, log) {
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      return `exited (${child.exitCode ?? child.signalCode}) before answering`;
    }
    if (await answers(port)) return undefined;
    if (Date.now() - started > START_TIMEOUT_MS) return `did not answer within ${START_TIMEOUT_MS} ms; its log:\n${log()}`;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * An HTTPS registry requiring `user`/`password`, stopped after test `t`. Returns its `host` (127.0.0.1:PORT), the
 * CA certificate clients need (`caCert`) and its `log()`.
 */
async function startRegistry(t, { user, password }) {
  const program = requireProgram('docker-registry');
  const root = tempDir(t, 'imagepipe-registry-');
  const tls = generateTls(root);
  const htpasswd = path.join(root, 'htpasswd');
  fs.writeFileSync(htpasswd, run('htpasswd', ['-Bbn', user, password]));
  const logFile = path.join(root, 'registry.log');
  const log = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '');

  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt += 1) {
    const port = await freePort();
    const config = path.join(root, 'config.yml');
    fs.writeFileSync(config, configYaml(port, root, tls, htpasswd));
    const logFd = fs.openSync(logFile, 'w');
    const child = spawn(program, ['serve', config], { stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    const stop = () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          resolve();
          return;
        }
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
    const problem = await waitUntilAnswering(child, port, log);
    if (problem === undefined) {
      t.after(stop);
      return { host: `127.0.0.1:${port}`, caCert: tls.caCert, log };
    }
    await stop();
    // Another process may have taken the port between our probe and the registry's bind.
    if (!log().includes('address already in use')) throw new Error(`the registry on port ${port} ${problem}`);
  }
  throw new Error(`the registry found no free port in ${PORT_ATTEMPTS} attempts`);
}

module.exports = { startRegistry, requireProgram };
