'use strict';
// The download path: no binary given and none in the tool cache, so the shim fetches the release archive from a
// loopback server, checks it against manifest.json, installs it into the tool cache and runs it; the next run
// finds it there. A wrong checksum is refused before anything is written.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

const shim = require('../../dist/index.cjs');
const {
  baseEnv,
  describe,
  errorAnnotations,
  filesBelow,
  readRecord,
  runNode,
  sha256,
  shimCopy,
  startServer,
  tarGz,
  tempDir,
  writeFakeBinary,
} = require('./helpers.cjs');

const VERSION = '0.1.0';
const TIMEOUT = { timeout: 120_000 };
const TARGET = shim.releaseTarget(process.platform, process.arch);
const FILE = `imagepipe-${TARGET}.tar.gz`;

/**
 * A release archive laid out as cargo-dist lays it out (one folder named after the archive), holding the
 * stand-in binary without its executable bit, to show that the shim sets it.
 */
function releaseArchive(t) {
  const work = tempDir(t);
  const fake = fs.readFileSync(writeFakeBinary(path.join(work, 'imagepipe')));
  return tarGz(t, {
    [`imagepipe-${TARGET}/imagepipe`]: { content: fake, mode: 0o644 },
    [`imagepipe-${TARGET}/README.md`]: { content: '# imagepipe\n' },
  });
}

/** A server that publishes `archive` as GitHub does: the release URL redirects to where the asset lies. */
async function releaseServer(t, archive) {
  return startServer(t, {
    [`/v${VERSION}/${FILE}`]: (_request, response) =>
      response.writeHead(302, { location: `/assets/${FILE}?signature=x` }).end(),
    [`/assets/${FILE}?signature=x`]: (_request, response) =>
      response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(archive),
  });
}

function manifest(checksum) {
  return {
    version: VERSION,
    downloadBase: 'http://127.0.0.1:9/the-override-must-win',
    archives: { [TARGET]: { file: FILE, sha256: checksum } },
  };
}

test('a good archive is downloaded, checked, installed into the tool cache, run, and found there next time', TIMEOUT, async (t) => {
  assert.ok(TARGET, `no release target for ${process.platform} ${process.arch}`);
  const work = tempDir(t);
  const archive = releaseArchive(t);
  const server = await releaseServer(t, archive);
  const script = shimCopy(path.join(work, 'dist'), manifest(sha256(archive)));
  const toolCache = path.join(work, 'tool-cache');
  const record = path.join(work, 'record');
  const env = baseEnv(t, {
    GITHUB_ACTIONS: 'true',
    RUNNER_TOOL_CACHE: toolCache,
    IMAGEPIPE_DOWNLOAD_BASE: `${server.url}/`,
    FAKE_RECORD: record,
    FAKE_EXIT: '3',
    INPUT_STAGE: 'sign',
  });

  const first = await runNode(t, script, { env });

  assert.equal(first.code, 3, `the installed binary ran and its code came back\n${describe(first)}`);
  assert.deepEqual(server.requests, [`/v${VERSION}/${FILE}`, `/assets/${FILE}?signature=x`]);
  assert.deepEqual(readRecord(record).args, ['ci', 'step']);
  const installed = path.join(toolCache, 'imagepipe', VERSION, process.arch);
  assert.deepEqual(filesBelow(path.join(toolCache, 'imagepipe', VERSION)).sort(), [
    `${process.arch}.complete`,
    path.join(process.arch, 'README.md'),
    path.join(process.arch, 'imagepipe'),
  ]);
  assert.equal(fs.statSync(path.join(installed, 'imagepipe')).mode & 0o777, 0o755);
  assert.deepEqual(errorAnnotations(first.stdout), []);
  assert.match(first.stderr, new RegExp(`downloading ${server.url}/v${VERSION}/${FILE}`));

  fs.rmSync(`${record}.args`);
  const second = await runNode(t, script, { env: { ...env, FAKE_EXIT: '0' } });

  assert.equal(second.code, 0, describe(second));
  assert.equal(server.requests.length, 2, 'the second run asked the server for nothing');
  assert.deepEqual(readRecord(record).args, ['ci', 'step']);
  assert.doesNotMatch(second.stderr, /downloading/);
});

for (const [host, hostEnv, prefix, cacheVariable] of [
  ['GitHub', { GITHUB_ACTIONS: 'true' }, '::error::', 'RUNNER_TOOL_CACHE'],
  ['Azure', { TF_BUILD: 'True' }, '##vso[task.logissue type=error]', 'AGENT_TOOLSDIRECTORY'],
]) {
  test(`${host}: a wrong checksum is refused in one line naming URL, expected and found sha256; nothing is installed`, TIMEOUT, async (t) => {
    const work = tempDir(t);
    const archive = releaseArchive(t);
    const server = await releaseServer(t, archive);
    const pinned = sha256(Buffer.from('another archive'));
    const script = shimCopy(path.join(work, 'dist'), manifest(pinned));
    const toolCache = path.join(work, 'tool-cache');
    const record = path.join(work, 'record');
    const env = baseEnv(t, {
      ...hostEnv,
      [cacheVariable]: toolCache,
      IMAGEPIPE_DOWNLOAD_BASE: server.url,
      FAKE_RECORD: record,
    });

    const result = await runNode(t, script, { env });

    assert.equal(result.code, 1, describe(result));
    const url = `${server.url}/v${VERSION}/${FILE}`;
    assert.deepEqual(errorAnnotations(result.stdout), [
      `${prefix}checksum mismatch for ${url}: expected sha256 ${pinned}, found sha256 ${sha256(archive)}`,
    ]);
    assert.deepEqual(filesBelow(toolCache), [], 'the tool cache holds nothing');
    assert.ok(!fs.existsSync(`${record}.args`), 'the archive\'s binary never ran');
  });
}

test('a server error is one annotation naming the URL and the status', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const server = await startServer(t, {});
  const script = shimCopy(path.join(work, 'dist'), manifest(sha256(Buffer.from('x'))));
  const toolCache = path.join(work, 'tool-cache');
  const env = baseEnv(t, { GITHUB_ACTIONS: 'true', RUNNER_TOOL_CACHE: toolCache, IMAGEPIPE_DOWNLOAD_BASE: server.url });

  const result = await runNode(t, script, { env });

  assert.equal(result.code, 1, describe(result));
  assert.deepEqual(errorAnnotations(result.stdout), [
    `::error::downloading ${server.url}/v${VERSION}/${FILE}: HTTP 404`,
  ]);
  assert.deepEqual(filesBelow(toolCache), []);
});

test('installing atomically: a version another job installed meanwhile is kept, and no temp folder stays', (t) => {
  const root = tempDir(t);
  const directory = path.join(root, 'imagepipe', VERSION, 'x64');
  const files = [{ path: 'imagepipe', mode: 0o644, data: Buffer.from('#!/bin/sh\nexit 0\n') }];

  shim.installAtomically(files, directory, 'imagepipe');
  fs.writeFileSync(path.join(directory, 'imagepipe'), 'the first install');
  shim.installAtomically(files, directory, 'imagepipe');

  assert.equal(fs.readFileSync(path.join(directory, 'imagepipe'), 'utf8'), 'the first install');
  assert.deepEqual(fs.readdirSync(path.dirname(directory)).sort(), ['x64', 'x64.complete']);
});

test('an archive that matches its checksum but is no tar.gz is refused in one line naming the URL', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const notAnArchive = Buffer.from('<html>a proxy error page</html>');
  const server = await releaseServer(t, notAnArchive);
  const script = shimCopy(path.join(work, 'dist'), manifest(sha256(notAnArchive)));
  const toolCache = path.join(work, 'tool-cache');
  const env = baseEnv(t, { GITHUB_ACTIONS: 'true', RUNNER_TOOL_CACHE: toolCache, IMAGEPIPE_DOWNLOAD_BASE: server.url });

  const result = await runNode(t, script, { env });

  assert.equal(result.code, 1, describe(result));
  const errors = errorAnnotations(result.stdout);
  assert.equal(errors.length, 1, describe(result));
  assert.ok(errors[0].startsWith(`::error::unpacking ${server.url}/v${VERSION}/${FILE}: `), errors[0]);
  assert.deepEqual(filesBelow(toolCache), []);
});
