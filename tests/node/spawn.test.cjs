'use strict';
// The shim starts `imagepipe ci step [STAGE]` with the runner's environment as it is and its own standard streams,
// and ends with the binary's exit code. A stand-in binary records what it was given.

const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');

const { SHIM, baseEnv, describe, errorAnnotations, readRecord, runNode, shimCopy, tempDir, writeFakeBinary } =
  require('./helpers.cjs');

const MANIFEST = { version: '0.1.0', downloadBase: 'http://127.0.0.1:9/unused', archives: {} };
const TIMEOUT = { timeout: 120_000 };

test('the umbrella action runs `ci step` without a stage, with the environment exactly as the runner set it', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const record = path.join(work, 'record');
  const env = baseEnv(t, {
    IMAGEPIPE_BIN: writeFakeBinary(path.join(work, 'imagepipe')),
    FAKE_RECORD: record,
    GITHUB_ACTIONS: 'true',
    'INPUT_IMAGE-INFO': 'out/image-info.json',
    INPUT_STAGE: 'post-build',
    'INPUT_SIGNATURE-MODE': '  tag  ',
    INPUT_VAR: 'a=1\nb=2',
    ODD: 'a value with = and ; and\nnewline',
  });

  const result = await runNode(t, SHIM, { env });

  assert.equal(result.code, 0, describe(result));
  const seen = readRecord(record);
  assert.deepEqual(seen.args, ['ci', 'step']);
  assert.deepEqual(seen.env, env, 'the binary gets the environment unchanged: no variable added, removed or trimmed');
  assert.match(result.stdout, /^fake imagepipe args: \[ci\] \[step\]$/m);
  assert.match(result.stdout, /^INPUT_IMAGE-INFO=out\/image-info\.json$/m);
});

test('a per-stage action passes its stage', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const record = path.join(work, 'record');
  shimCopy(path.join(work, 'dist'), MANIFEST, ['sign', 'create-manifest']);
  const env = baseEnv(t, { IMAGEPIPE_BIN: writeFakeBinary(path.join(work, 'imagepipe')), FAKE_RECORD: record });

  for (const stage of ['sign', 'create-manifest']) {
    const result = await runNode(t, path.join(work, 'dist', stage, 'main.cjs'), { env });
    assert.equal(result.code, 0, describe(result));
    assert.deepEqual(readRecord(record).args, ['ci', 'step', stage]);
  }
});

test("the binary's exit code is the step's", TIMEOUT, async (t) => {
  const work = tempDir(t);
  const fake = writeFakeBinary(path.join(work, 'imagepipe'));
  for (const code of [0, 1, 2, 3, 42]) {
    const result = await runNode(t, SHIM, { env: baseEnv(t, { IMAGEPIPE_BIN: fake, FAKE_EXIT: String(code) }) });
    assert.equal(result.code, code, describe(result));
    assert.deepEqual(errorAnnotations(result.stdout), [], 'the binary reports its own errors; the shim adds none');
  }
});

test('standard input, output and error are the runner\'s own, not copies', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const record = path.join(work, 'record');
  const env = baseEnv(t, {
    IMAGEPIPE_BIN: writeFakeBinary(path.join(work, 'imagepipe')),
    FAKE_RECORD: record,
    FAKE_READ_STDIN: '1',
  });

  const result = await runNode(t, SHIM, { env, input: 'a line for the binary\n' });

  assert.equal(result.code, 0, describe(result));
  assert.match(result.stdout, /^fake imagepipe read: a line for the binary$/m);
  assert.match(result.stderr, /^fake imagepipe says this on standard error$/m);
  // Each of the binary's descriptors 0, 1, 2 is the very pipe the shim (its parent) has there.
  for (const [fd, child, parent] of readRecord(record).fds) {
    assert.match(child, /^(pipe|socket):/, `fd ${fd}`);
    assert.equal(child, parent, `fd ${fd} is inherited`);
  }
});

test('a binary ended by a signal fails the step with exit code 1 and one annotation', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const env = baseEnv(t, {
    IMAGEPIPE_BIN: writeFakeBinary(path.join(work, 'imagepipe')),
    FAKE_SIGNAL: 'KILL',
    GITHUB_ACTIONS: 'true',
  });

  const result = await runNode(t, SHIM, { env });

  assert.equal(result.code, 1, describe(result));
  const errors = errorAnnotations(result.stdout);
  assert.equal(errors.length, 1, describe(result));
  assert.match(errors[0], /^::error::.*ci step` was ended by SIGKILL$/);
});

test("a runner's cancel (SIGTERM) reaches the binary, and the shim waits for it", TIMEOUT, async (t) => {
  const work = tempDir(t);
  const env = baseEnv(t, { IMAGEPIPE_BIN: writeFakeBinary(path.join(work, 'imagepipe')), FAKE_WAIT_FOR_TERM: '1' });
  let sent = false;

  const result = await runNode(t, SHIM, {
    env,
    onStdout: (_chunk, shim) => {
      if (!sent && /fake imagepipe waiting/.test(_chunk)) {
        sent = true;
        shim.kill('SIGTERM');
      }
    },
  });

  assert.ok(sent, describe(result));
  assert.match(result.stdout, /^fake imagepipe got SIGTERM$/m);
  assert.equal(result.code, 5, `the binary's own exit code after the signal\n${describe(result)}`);
});

test('input imagepipe-path wins over IMAGEPIPE_BIN, under either runner\'s name', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const record = path.join(work, 'record');
  const chosen = writeFakeBinary(path.join(work, 'chosen', 'imagepipe'));
  const other = path.join(work, 'not-a-binary');
  for (const name of ['INPUT_IMAGEPIPE-PATH', 'INPUT_IMAGEPIPEPATH']) {
    const env = baseEnv(t, { [name]: ` ${chosen} `, IMAGEPIPE_BIN: other, FAKE_RECORD: record });
    const result = await runNode(t, SHIM, { env });
    assert.equal(result.code, 0, `${name}\n${describe(result)}`);
  }
});

test('a binary that is not there is named in one annotation, exit 2, nothing downloaded', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const missing = path.join(work, 'no-such-imagepipe');
  const cases = [
    [{ GITHUB_ACTIONS: 'true', 'INPUT_IMAGEPIPE-PATH': missing }, `::error::input 'imagepipe-path': \`${missing}\` is not a file`],
    [{ TF_BUILD: 'True', IMAGEPIPE_BIN: missing }, `##vso[task.logissue type=error]IMAGEPIPE_BIN: \`${missing}\` is not a file`],
  ];
  for (const [extra, expected] of cases) {
    const result = await runNode(t, SHIM, { env: baseEnv(t, extra) });
    assert.equal(result.code, 2, describe(result));
    assert.deepEqual(errorAnnotations(result.stdout), [expected]);
    assert.doesNotMatch(result.stderr, /downloading/);
  }
});

test('without a pinned archive the shim says how to give the binary instead', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const script = shimCopy(path.join(work, 'dist'), MANIFEST);
  const env = baseEnv(t, { GITHUB_ACTIONS: 'true', RUNNER_TOOL_CACHE: path.join(work, 'cache') });

  const result = await runNode(t, script, { env });

  assert.equal(result.code, 1, describe(result));
  const errors = errorAnnotations(result.stdout);
  assert.equal(errors.length, 1, describe(result));
  assert.match(errors[0], /pins no release archive of imagepipe 0\.1\.0 for `[a-z0-9_-]+`; give the binary with the input 'imagepipe-path' or IMAGEPIPE_BIN$/);
});
