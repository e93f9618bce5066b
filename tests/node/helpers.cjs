'use strict';
// What the Node tests share: temp folders, a stand-in binary, a copy of the shim, running it as a runner does,
// release archives and a loopback HTTP server. Every process and server started here is stopped by the test
// that started it (t.after), and every wait is bounded.

const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const SHIM = path.join(REPO_ROOT, 'dist', 'index.cjs');
/** How long one run of the shim may take before the test kills it and fails. */
const RUN_TIMEOUT_MS = 60_000;

/** A new folder that is removed after test `t`. */
function tempDir(t, prefix = 'imagepipe-node-test-') {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(directory, { recursive: true, force: true }));
  return directory;
}

/**
 * A small environment for the shim, as a runner would give it, with its own HOME so that nothing of this
 * machine's (a Docker config, a tool cache) is read. Nothing of the test runner's own environment leaks in, such
 * as an IMAGEPIPE_BIN meant for other tests.
 */
function baseEnv(t, extra = {}) {
  const home = tempDir(t, 'imagepipe-home-');
  return { PATH: process.env.PATH, HOME: home, LANG: 'C.UTF-8', ...extra };
}

/**
 * A stand-in for imagepipe, a sh script: prints its arguments, the INPUT_* variables it got, a line on standard
 * error; with FAKE_RECORD set it records its whole environment, the Docker config it was given and where its
 * standard streams lead; FAKE_READ_STDIN makes it echo a line of its input; it ends with FAKE_EXIT, or by signal
 * FAKE_SIGNAL, or waits for SIGTERM with FAKE_WAIT_FOR_TERM.
 */
const FAKE_BINARY = `#!/bin/sh
echo "fake imagepipe args:$(printf ' [%s]' "$@")"
echo "fake imagepipe says this on standard error" >&2
# dash drops variables whose names are no identifiers (INPUT_IMAGE-INFO); the process's environment has them all.
tr '\\000' '\\n' < /proc/$$/environ | grep '^INPUT_' | sort
if [ -n "$FAKE_RECORD" ]; then
  printf '%s\\n' "$@" > "$FAKE_RECORD.args"
  cp /proc/$$/environ "$FAKE_RECORD.environ"
  : > "$FAKE_RECORD.fds"
  for fd in 0 1 2; do
    mine=$(readlink /proc/$$/fd/$fd)
    parents=$(readlink /proc/$PPID/fd/$fd)
    echo "$fd $mine $parents" >> "$FAKE_RECORD.fds"
  done
  if [ -n "$DOCKER_CONFIG" ]; then
    cp "$DOCKER_CONFIG/config.json" "$FAKE_RECORD.docker-config.json"
    ls -A "$DOCKER_CONFIG" > "$FAKE_RECORD.docker-config-entries"
    cat "$DOCKER_CONFIG/cli-plugins/marker" > "$FAKE_RECORD.plugin-marker" 2>/dev/null || true
  fi
fi
if [ -n "$FAKE_READ_STDIN" ]; then
  read -r line
  echo "fake imagepipe read: $line"
fi
if [ -n "$FAKE_WAIT_FOR_TERM" ]; then
  # sleep in the background and wait, so that the trap runs as soon as the signal arrives; the sleep holds none of
  # the output pipes, so that it cannot keep the test waiting once the script is gone
  sleep 30 </dev/null >/dev/null 2>&1 &
  sleeper=$!
  trap 'kill $sleeper; echo "fake imagepipe got SIGTERM"; exit 5' TERM
  echo "fake imagepipe waiting"
  wait $sleeper
  exit 6
fi
if [ -n "$FAKE_SIGNAL" ]; then
  kill -"$FAKE_SIGNAL" $$
fi
exit "\${FAKE_EXIT:-0}"
`;

/** Writes the stand-in binary at `file` with `mode` and returns `file`. */
function writeFakeBinary(file, mode = 0o755) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, FAKE_BINARY, { mode });
  fs.chmodSync(file, mode);
  return file;
}

/** What the stand-in binary recorded under `record` (the value given as FAKE_RECORD). */
function readRecord(record) {
  const optional = (suffix) => {
    try {
      return fs.readFileSync(record + suffix, 'utf8');
    } catch {
      return undefined;
    }
  };
  const environ = fs.readFileSync(`${record}.environ`, 'utf8');
  const env = {};
  for (const entry of environ.split('\0').filter(Boolean)) {
    const equals = entry.indexOf('=');
    env[entry.slice(0, equals)] = entry.slice(equals + 1);
  }
  const dockerConfig = optional('.docker-config.json');
  return {
    args: fs.readFileSync(`${record}.args`, 'utf8').split('\n').slice(0, -1),
    env,
    fds: fs
      .readFileSync(`${record}.fds`, 'utf8')
      .trim()
      .split('\n')
      .map((line) => line.split(' ')),
    dockerConfig: dockerConfig === undefined ? undefined : JSON.parse(dockerConfig),
    dockerConfigEntries: optional('.docker-config-entries')?.trim().split('\n'),
    pluginMarker: optional('.plugin-marker'),
  };
}

/**
 * A copy of the shim in `directory` as an action folder holds it: `index.cjs`, `manifest.json` (`manifest`),
 * and `<stage>/main.cjs` for each of `stages`, the one line `imagepipe ci generate` writes.
 */
function shimCopy(directory, manifest, stages = []) {
  fs.mkdirSync(directory, { recursive: true });
  fs.copyFileSync(SHIM, path.join(directory, 'index.cjs'));
  fs.writeFileSync(path.join(directory, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  for (const stage of stages) {
    fs.mkdirSync(path.join(directory, stage), { recursive: true });
    fs.writeFileSync(path.join(directory, stage, 'main.cjs'), `require('../index.cjs').run('${stage}');\n`);
  }
  return path.join(directory, 'index.cjs');
}

/**
 * Runs `node script` as a runner starts a JavaScript step, with exactly `env`, in `cwd`, `input` on standard
 * input, and collects its output. Resolves to `{code, signal, stdout, stderr, lines}`; a run past `timeoutMs` is killed and
 * fails the test. `onStdout` sees each chunk of output as it comes, with the child.
 */
function runNode(t, script, { env, input = '', timeoutMs = RUN_TIMEOUT_MS, onStdout, args = [], cwd } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (onStdout) onStdout(chunk, child);
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.stdin.on('error', () => {}); // a script that never reads its input closes it early
    child.stdin.end(input);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`\`node ${script}\` did not end within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, lines: stdout.split('\n').filter((line) => line !== '') });
    });
  });
}

/** The output of a run, for assertion messages. */
function describe(result) {
  return `exit ${result.code}\n--- stdout\n${result.stdout}--- stderr\n${result.stderr}`;
}

/**
 * A gzipped tar archive made by GNU tar from the files in `files` ({relative path: {content, mode}}), in tar
 * `format` (gnu, as cargo-dist's `tar` crate writes; ustar; pax).
 */
function tarGz(t, files, format = 'gnu') {
  const root = tempDir(t, 'imagepipe-archive-');
  const names = [];
  for (const [name, { content, mode = 0o644 }] of Object.entries(files)) {
    const file = path.join(root, 'content', name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
    fs.chmodSync(file, mode);
    names.push(name);
  }
  const archive = path.join(root, 'archive.tar.gz');
  execFileSync('tar', [`--format=${format}`, '--owner=0', '--group=0', '-czf', archive, '-C', path.join(root, 'content'), ...names]);
  return fs.readFileSync(archive);
}

function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

/**
 * An HTTP server on 127.0.0.1 and a free port, answering from `routes` ({path: (request, response) => void});
 * anything else is a 404. `requests` lists every path asked for. Closed after test `t`.
 */
async function startServer(t, routes) {
  const requests = [];
  const server = http.createServer((request, response) => {
    requests.push(request.url);
    const route = routes[request.url];
    if (route === undefined) {
      response.writeHead(404).end('not found');
      return;
    }
    route(request, response);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  t.after(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${server.address().port}`, requests };
}

/** Every file below `directory` (relative paths), or [] when it does not exist. */
function filesBelow(directory) {
  if (!fs.existsSync(directory)) return [];
  return fs
    .readdirSync(directory, { recursive: true, withFileTypes: true })
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(directory, path.join(entry.parentPath ?? entry.path, entry.name)));
}

/** The lines of `text` that are error annotations of any host. */
function errorAnnotations(text) {
  return text.split('\n').filter((line) => /^(::error|##vso\[task\.(log)?issue type=error)/.test(line));
}

/** Asserts that `secret` occurs in `text` only inside the host's mask commands. */
function assertNoSecret(text, secret, what) {
  const unmasked = text
    .split('\n')
    .filter((line) => !line.startsWith('##vso[task.setsecret]') && !line.startsWith('::add-mask::'))
    .join('\n');
  assert.ok(!unmasked.includes(secret), `${what} shows a secret outside its mask command:\n${text}`);
}

module.exports = {
  REPO_ROOT,
  SHIM,
  tempDir,
  baseEnv,
  writeFakeBinary,
  readRecord,
  shimCopy,
  runNode,
  describe,
  tarGz,
  sha256,
  startServer,
  filesBelow,
  errorAnnotations,
  assertNoSecret,
};
