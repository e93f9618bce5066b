'use strict';
// The Azure task (azure-task/ImagePipeV1/index.cjs, the generated copy of dist/index.cjs) run by
// azure-pipelines-task-lib's MockTestRunner, the harness Azure's own tasks are tested with, on this machine's
// Node (`nodePath`), so that the runner downloads no Node of its own.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');

const { REPO_ROOT, SHIM, assertNoSecret, readRecord, tempDir, writeFakeBinary } = require('./helpers.cjs');

const TASK_DIRECTORY = path.join(REPO_ROOT, 'azure-task', 'ImagePipeV1');
const TASK = path.join(TASK_DIRECTORY, 'index.cjs');
const MOCK = path.join(__dirname, 'fixtures', 'azure-task-mock.cjs');
const TIMEOUT = { timeout: 300_000 };
const BINARY = path.resolve(process.env.IMAGEPIPE_BIN || path.join(REPO_ROOT, 'target', 'debug', 'imagepipe'));
const EXAMPLE = path.join(REPO_ROOT, 'examples', 'post-build');

/** A module of azure-pipelines-task-lib, from NODE_PATH or the tools dir scripts/node-tests.sh installs it in. */
function taskLibModule(subpath) {
  const toolsDir = process.env.IMAGEPIPE_TOOLS_DIR || path.join(REPO_ROOT, 'tools');
  for (const candidate of [`azure-pipelines-task-lib/${subpath}`, path.join(toolsDir, 'node', 'node_modules', 'azure-pipelines-task-lib', subpath)]) {
    try {
      return require.resolve(candidate);
    } catch {
      // the next place
    }
  }
  throw new Error('azure-pipelines-task-lib is not installed: scripts/node-tests.sh installs it and runs these tests');
}

/**
 * Runs the task as on an agent (TF_BUILD=True) under MockTestRunner with `inputs` (named as in task.json) and `env`
 * (null removes a variable), and returns the runner, whose
 * `stdout`, `succeeded` and `errorIssues` are task-lib's reading of the run.
 */
async function runTask(inputs, env = {}) {
  const { MockTestRunner } = require(taskLibModule('mock-test'));
  const taskJson = path.join(TASK_DIRECTORY, 'task.json');
  const runner = new MockTestRunner(MOCK, fs.existsSync(taskJson) ? taskJson : undefined);
  runner.nodePath = process.execPath;
  // MockTestRunner hands its own environment to the test file; the scenario is passed in one variable.
  const saved = process.env.IMAGEPIPE_MOCK_SCENARIO;
  // A run of these tests on GitHub Actions must not make the task think it runs there.
  const scenarioEnv = { GITHUB_ACTIONS: null, TF_BUILD: 'True', ...env };
  process.env.IMAGEPIPE_MOCK_SCENARIO = JSON.stringify({ mockRun: taskLibModule('mock-run'), task: TASK, inputs, env: scenarioEnv });
  try {
    await runner.runAsync();
  } finally {
    if (saved === undefined) delete process.env.IMAGEPIPE_MOCK_SCENARIO;
    else process.env.IMAGEPIPE_MOCK_SCENARIO = saved;
  }
  return runner;
}

function describeRun(runner) {
  return `--- stdout\n${runner.stdout}--- stderr\n${runner.stderr}`;
}

test('the Azure task is the same shim as dist/index.cjs', () => {
  assert.ok(fs.existsSync(TASK), `${TASK} is missing: \`imagepipe ci generate\` writes it`);
  assert.ok(fs.readFileSync(TASK).equals(fs.readFileSync(SHIM)), `${TASK} differs from dist/index.cjs: run \`imagepipe ci generate\``);
});

test('the task runs `ci step` with the inputs as the agent names them and a service connection as DOCKER_CONFIG', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const record = path.join(work, 'record');
  const password = 'mock;pass]word';
  const endpoint = 'registry-endpoint-1';

  const runner = await runTask(
    {
      stage: 'sign',
      imageInfo: 'out/image-info.json',
      imagepipePath: writeFakeBinary(path.join(work, 'imagepipe')),
      dockerRegistryServiceConnection: endpoint,
    },
    {
      TF_BUILD: 'True',
      AGENT_TEMPDIRECTORY: work,
      // Nothing of this machine's own Docker config joins the temporary one.
      HOME: work,
      DOCKER_CONFIG: null,
      FAKE_RECORD: record,
      [`ENDPOINT_AUTH_${endpoint}`]: JSON.stringify({
        parameters: { username: 'mock-user', password, registry: 'staging.example.com' },
        scheme: 'UsernamePassword',
      }),
    },
  );

  assert.ok(runner.succeeded, describeRun(runner));
  assert.deepEqual(runner.errorIssues, []);
  // task-lib's mock runner writes debug lines of its own before the task starts.
  const lines = runner.stdout.split('\n').filter((line) => !line.startsWith('##vso[task.debug]'));
  assert.equal(lines[0], `##vso[task.setsecret]${password}`, describeRun(runner));
  assert.match(runner.stdout, /^fake imagepipe args: \[ci\] \[step\]$/m);
  assert.match(runner.stdout, /^INPUT_IMAGEINFO=out\/image-info\.json$/m);
  assert.match(runner.stdout, /^INPUT_STAGE=sign$/m);
  const seen = readRecord(record);
  assert.deepEqual(seen.args, ['ci', 'step']);
  assert.equal(
    seen.dockerConfig.auths['staging.example.com'].auth,
    Buffer.from(`mock-user:${password}`).toString('base64'),
  );
  assert.ok(!fs.existsSync(seen.env.DOCKER_CONFIG), 'the temporary Docker config is gone');
  assertNoSecret(runner.stdout + runner.stderr, password, 'the task log');
});

test('a failing binary fails the task, as task-lib reads it', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const runner = await runTask(
    { stage: 'sign', imagepipePath: writeFakeBinary(path.join(work, 'imagepipe')) },
    { TF_BUILD: 'True', FAKE_EXIT: '3' },
  );

  assert.ok(runner.failed, describeRun(runner));
  assert.match(runner.stdout, /^##vso\[task\.complete result=Failed;\]the imagepipe step failed with exit code 3$/m);
});

test('a binary that is not there is an error issue of the task', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const missing = path.join(work, 'missing');
  const runner = await runTask({ stage: 'sign', imagepipePath: missing }, { TF_BUILD: 'True' });

  assert.ok(runner.failed, describeRun(runner));
  // MockTestRunner collects `task.issue`, the name task-lib writes; the documented `task.logissue` is the same
  // command to the agent, so it is read here from the log.
  assert.match(runner.stdout, new RegExp(`^##vso\\[task\\.logissue type=error\\]input 'imagepipe-path': \`${missing}\` is not a file$`, 'm'));
});

/** The output variables in the task's log, as task-lib's own command parser reads them. */
function outputVariables(runner) {
  const { commandFromString } = require(taskLibModule('taskcommand'));
  const variables = {};
  for (const line of runner.stdout.split('\n')) {
    const start = line.indexOf('##vso[task.setvariable ');
    if (start === -1) continue;
    const command = commandFromString(line.slice(start));
    assert.equal(command.properties.isoutput, 'true', line);
    variables[command.properties.variable] = command.message;
  }
  return variables;
}

test('the real binary under MockTestRunner: post-build sets its outputs, as task-lib reads them', TIMEOUT, async (t) => {
  assert.ok(fs.existsSync(BINARY), `no imagepipe binary at \`${BINARY}\`: run \`cargo build\`, or set IMAGEPIPE_BIN`);
  const work = tempDir(t);
  const output = path.join(work, 'image-info.json');

  const runner = await runTask({
    stage: 'post-build',
    manifest: path.join(EXAMPLE, 'manifest.json'),
    fragments: path.join(EXAMPLE, 'fragments'),
    output,
    imagepipePath: BINARY,
  }, { AGENT_TEMPDIRECTORY: work });

  assert.ok(runner.succeeded, describeRun(runner));
  const variables = outputVariables(runner);
  assert.deepEqual(Object.keys(variables).sort(), ['imageInfo', 'imageInfoSha256', 'stage']);
  assert.equal(variables.stage, 'post-build');
  assert.equal(path.resolve(variables.imageInfo), output);
  assert.equal(variables.imageInfoSha256, crypto.createHash('sha256').update(fs.readFileSync(output)).digest('hex'));
  const summaries = runner.stdout.split('\n').filter((line) => line.startsWith('##vso[task.uploadsummary]'));
  assert.equal(summaries.length, 1, describeRun(runner));
  const summary = summaries[0].slice('##vso[task.uploadsummary]'.length);
  assert.equal(path.dirname(summary), work, 'the summary is written in the agent\'s temp folder');
  assert.match(fs.readFileSync(summary, 'utf8'), /imagepipe post-build/);
});

test('the real binary under MockTestRunner: sign fed post-build\'s image-info fails the task, exit 3', TIMEOUT, async (t) => {
  assert.ok(fs.existsSync(BINARY), `no imagepipe binary at \`${BINARY}\`: run \`cargo build\`, or set IMAGEPIPE_BIN`);
  const work = tempDir(t);
  const imageInfo = path.join(work, 'image-info.json');
  execFileSync(BINARY, ['post-build', '--manifest', path.join(EXAMPLE, 'manifest.json'), '--fragments', path.join(EXAMPLE, 'fragments'), '--output', imageInfo], { stdio: 'ignore', timeout: 60_000 });
  const password = 'mock-runner cosign password';
  execFileSync(BINARY, ['generate-key', '--output-prefix', path.join(work, 'cosign')], { env: { PATH: process.env.PATH, COSIGN_PASSWORD: password }, stdio: 'ignore', timeout: 60_000 });

  const runner = await runTask({
    stage: 'sign',
    imageInfo,
    key: path.join(work, 'cosign.key'),
    cosignPassword: password,
    stagingRegistry: `oci:${path.join(work, 'staging')}`,
    imagepipePath: BINARY,
  }, { AGENT_TEMPDIRECTORY: work });

  assert.ok(runner.failed, describeRun(runner));
  assert.match(runner.stdout, /^##vso\[task\.complete result=Failed;\]the imagepipe step failed with exit code 3$/m, describeRun(runner));
  const { commandFromString } = require(taskLibModule('taskcommand'));
  const issues = runner.stdout
    .split('\n')
    .filter((line) => line.startsWith('##vso[task.logissue'))
    .map((line) => commandFromString(line));
  assert.equal(issues.length, 1, describeRun(runner));
  assert.equal(issues[0].properties.type, 'error');
  assert.match(issues[0].message, /create-manifest/);
  assertNoSecret(runner.stdout + runner.stderr, password, 'the task log');
});
