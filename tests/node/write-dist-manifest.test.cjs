'use strict';
// scripts/write-dist-manifest.mjs turns a folder of cargo-dist artifacts into the manifest the shim downloads
// by; the committed dist/manifest.json is checked against the crate's version.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

const shim = require('../../dist/index.cjs');
const {
  REPO_ROOT,
  baseEnv,
  describe,
  readRecord,
  runNode,
  sha256,
  shimCopy,
  startServer,
  tarGz,
  tempDir,
  writeFakeBinary,
} = require('./helpers.cjs');

const SCRIPT = path.join(REPO_ROOT, 'scripts', 'write-dist-manifest.mjs');
const TIMEOUT = { timeout: 120_000 };
const TARGETS = [
  'x86_64-unknown-linux-musl',
  'aarch64-unknown-linux-musl',
  'x86_64-apple-darwin',
  'aarch64-apple-darwin',
  'x86_64-pc-windows-msvc',
];

/**
 * A release folder as cargo-dist's host job has it: one archive per target with its `.sha256` (both of
 * sha256sum's forms), and files the manifest must ignore. The archive for this machine's target holds the
 * stand-in binary, so that the shim can run what the manifest pins.
 */
function artifacts(t) {
  const directory = tempDir(t, 'imagepipe-artifacts-');
  const fake = fs.readFileSync(writeFakeBinary(path.join(tempDir(t), 'imagepipe')));
  const sums = {};
  TARGETS.forEach((target, index) => {
    const file = `imagepipe-${target}.tar.gz`;
    const bytes = tarGz(t, { [`imagepipe-${target}/imagepipe`]: { content: fake, mode: 0o755 } });
    fs.writeFileSync(path.join(directory, file), bytes);
    const separator = index % 2 === 0 ? '  ' : ' *';
    fs.writeFileSync(path.join(directory, `${file}.sha256`), `${sha256(bytes)}${separator}${file}\n`);
    sums[target] = sha256(bytes);
  });
  fs.writeFileSync(path.join(directory, 'source.tar.gz'), 'source');
  fs.writeFileSync(path.join(directory, 'source.tar.gz.sha256'), `${sha256(Buffer.from('source'))}  source.tar.gz\n`);
  fs.writeFileSync(path.join(directory, 'dist-manifest.json'), '{}');
  return { directory, sums };
}

function runScript(t, args) {
  return runNode(t, SCRIPT, { env: { PATH: process.env.PATH }, args });
}

test('the manifest pins every archive by target, keeps the download base, and lets the shim download and run it', TIMEOUT, async (t) => {
  const { directory, sums } = artifacts(t);
  const out = tempDir(t);
  const output = path.join(out, 'manifest.json');
  fs.writeFileSync(output, JSON.stringify({ version: '0.0.1', downloadBase: 'https://mirror.invalid/releases', archives: {} }));

  const result = await runScript(t, ['v0.2.0', directory, '--output', output]);

  assert.equal(result.code, 0, describe(result));
  const written = fs.readFileSync(output, 'utf8');
  const expectedArchives = Object.fromEntries(
    [...TARGETS].sort().map((target) => [target, { file: `imagepipe-${target}.tar.gz`, sha256: sums[target] }]),
  );
  assert.equal(
    written,
    `${JSON.stringify({ version: '0.2.0', downloadBase: 'https://mirror.invalid/releases', archives: expectedArchives }, null, 2)}\n`,
  );
  assert.deepEqual(fs.readdirSync(out), ['manifest.json'], 'no temporary file stays');

  // The shim downloads with it: this machine's archive, from a loopback server, checked and run.
  const target = shim.releaseTarget(process.platform, process.arch);
  const file = `imagepipe-${target}.tar.gz`;
  const server = await startServer(t, {
    [`/v0.2.0/${file}`]: (_request, response) => response.end(fs.readFileSync(path.join(directory, file))),
  });
  const work = tempDir(t);
  const script = shimCopy(path.join(work, 'dist'), JSON.parse(written));
  const record = path.join(work, 'record');
  const env = baseEnv(t, {
    RUNNER_TOOL_CACHE: path.join(work, 'cache'),
    IMAGEPIPE_DOWNLOAD_BASE: server.url,
    FAKE_RECORD: record,
  });
  const run = await runNode(t, script, { env });
  assert.equal(run.code, 0, describe(run));
  assert.deepEqual(readRecord(record).args, ['ci', 'step']);
});

test('several outputs get the same pins; a new file gets the default download base', TIMEOUT, async (t) => {
  const { directory } = artifacts(t);
  const out = tempDir(t);
  const outputs = [path.join(out, 'a.json'), path.join(out, 'b.json')];

  const result = await runScript(t, ['0.3.0-rc.1', directory, '--output', outputs[0], '--output', outputs[1]]);

  assert.equal(result.code, 0, describe(result));
  const [a, b] = outputs.map((file) => fs.readFileSync(file, 'utf8'));
  assert.equal(a, b);
  const manifest = JSON.parse(a);
  assert.equal(manifest.version, '0.3.0-rc.1');
  assert.equal(manifest.downloadBase, 'https://github.com/imagepipe/imagepipe/releases/download');
  assert.deepEqual(Object.keys(manifest.archives).sort(), [...TARGETS].sort());
});

const REFUSALS = [
  [
    'a checksum that does not match its archive',
    (directory) => fs.writeFileSync(path.join(directory, 'imagepipe-x86_64-apple-darwin.tar.gz.sha256'), `${'0'.repeat(64)}  imagepipe-x86_64-apple-darwin.tar.gz\n`),
    /`imagepipe-x86_64-apple-darwin\.tar\.gz` has sha256 [0-9a-f]{64}, but `imagepipe-x86_64-apple-darwin\.tar\.gz\.sha256` says 0{64}/,
  ],
  [
    'a checksum file naming another archive',
    (directory) => fs.writeFileSync(path.join(directory, 'imagepipe-x86_64-apple-darwin.tar.gz.sha256'), `${'0'.repeat(64)}  imagepipe-aarch64-apple-darwin.tar.gz\n`),
    /the checksum file of `imagepipe-x86_64-apple-darwin\.tar\.gz` names `imagepipe-aarch64-apple-darwin\.tar\.gz`/,
  ],
  [
    'a checksum file that is not a checksum',
    (directory) => fs.writeFileSync(path.join(directory, 'imagepipe-x86_64-apple-darwin.tar.gz.sha256'), 'not found\n'),
    /the checksum file of `imagepipe-x86_64-apple-darwin\.tar\.gz` is not one line/,
  ],
  [
    'an archive without its checksum file',
    (directory) => fs.rmSync(path.join(directory, 'imagepipe-x86_64-apple-darwin.tar.gz.sha256')),
    /`imagepipe-x86_64-apple-darwin\.tar\.gz` has no `imagepipe-x86_64-apple-darwin\.tar\.gz\.sha256` beside it/,
  ],
  [
    'a missing target',
    (directory) => {
      for (const file of ['imagepipe-x86_64-pc-windows-msvc.tar.gz', 'imagepipe-x86_64-pc-windows-msvc.tar.gz.sha256']) {
        fs.rmSync(path.join(directory, file));
      }
    },
    /has no archive for `x86_64-pc-windows-msvc`/,
  ],
];
for (const [what, spoil, message] of REFUSALS) {
  test(`${what} is refused with exit 2 and the old manifest stays`, TIMEOUT, async (t) => {
    const { directory } = artifacts(t);
    spoil(directory);
    const output = path.join(tempDir(t), 'manifest.json');
    fs.writeFileSync(output, 'the old manifest');

    const result = await runScript(t, ['0.2.0', directory, '--output', output]);

    assert.equal(result.code, 2, describe(result));
    assert.match(result.stderr, /^write-dist-manifest: error: /);
    assert.match(result.stderr, message);
    assert.equal(fs.readFileSync(output, 'utf8'), 'the old manifest');
  });
}

test('a version that is no release version, and a wrong invocation, are refused with exit 2', TIMEOUT, async (t) => {
  const { directory } = artifacts(t);
  for (const args of [['latest', directory], ['0.2.0'], ['0.2.0', directory, '--output'], ['0.2.0', directory, '--force']]) {
    const result = await runScript(t, args);
    assert.equal(result.code, 2, `${args.join(' ')}\n${describe(result)}`);
  }
});

test("the committed dist/manifest.json pins the crate's version, the contract's download base, and only well-formed archives", () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'dist', 'manifest.json'), 'utf8'));
  const cargo = fs.readFileSync(path.join(REPO_ROOT, 'Cargo.toml'), 'utf8');
  const crateVersion = /^\[package\][^[]*?^version\s*=\s*"([^"]+)"/m.exec(cargo)?.[1];
  assert.equal(manifest.version, crateVersion);
  assert.equal(manifest.downloadBase, 'https://github.com/imagepipe/imagepipe/releases/download');
  for (const [target, archive] of Object.entries(manifest.archives)) {
    assert.ok(TARGETS.includes(target), target);
    assert.match(archive.sha256, /^[0-9a-f]{64}$/, target);
  }
});

test("the script requires exactly the targets the shim maps runners to", async () => {
  const { REQUIRED_TARGETS } = await import(require('node:url').pathToFileURL(SCRIPT).href);
  const shimTargets = ['linux x64', 'linux arm64', 'darwin x64', 'darwin arm64', 'win32 x64'].map((pair) =>
    shim.releaseTarget(...pair.split(' ')),
  );
  assert.deepEqual([...REQUIRED_TARGETS].sort(), [...shimTargets].sort());
  assert.deepEqual([...REQUIRED_TARGETS].sort(), [...TARGETS].sort());
});
