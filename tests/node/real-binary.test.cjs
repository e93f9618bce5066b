'use strict';
// The real imagepipe binary (IMAGEPIPE_BIN, else target/debug/imagepipe) run through the shim exactly as each
// runner runs it: GitHub starts dist/<stage>/main.cjs or the umbrella dist/index.cjs with `INPUT_IMAGE-INFO`-style
// variables and its output and summary files; Azure starts azure-task/ImagePipeV1/index.cjs with
// `INPUT_IMAGEINFO`-style variables and reads logging commands from standard output. examples/hello goes through
// build -> post-build -> create-manifest -> sign against a real registry (HTTPS, basic auth), each stage fed the
// previous one's outputs; then the refusals, and a look for secrets in everything a step left behind.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const { execFileSync } = require('node:child_process');

const { REPO_ROOT, assertNoSecret, baseEnv, describe, errorAnnotations, runNode, tempDir } = require('./helpers.cjs');
const { startRegistry } = require('./registry.cjs');

const BINARY = path.resolve(process.env.IMAGEPIPE_BIN || path.join(REPO_ROOT, 'target', 'debug', 'imagepipe'));
const MANIFEST = path.join(REPO_ROOT, 'examples', 'hello', 'manifest.json');
const AZURE_TASK = path.join(REPO_ROOT, 'azure-task', 'ImagePipeV1', 'index.cjs');
const COSIGN_PASSWORD = 'cosign pa55 for the shim test';
const REGISTRY_USER = 'ci-user';
// `;`, `]` and `%` are what the runners' escaping changes.
const REGISTRY_PASSWORD = 'registry;pa55]word%';
const REGISTRY_AUTH = Buffer.from(`${REGISTRY_USER}:${REGISTRY_PASSWORD}`).toString('base64');
const SECRETS = [COSIGN_PASSWORD, REGISTRY_PASSWORD, REGISTRY_AUTH];
const STEP_TIMEOUT_MS = 240_000;
const TIMEOUT = { timeout: 900_000 };

function requireFile(file, hint) {
  assert.ok(fs.existsSync(file), `\`${file}\` is missing: ${hint}`);
}

function requireSetup() {
  requireFile(BINARY, 'run `cargo build`, or give the binary in IMAGEPIPE_BIN');
  requireFile(path.join(REPO_ROOT, 'dist', 'sign', 'main.cjs'), '`imagepipe ci generate` writes it');
  requireFile(AZURE_TASK, '`imagepipe ci generate` writes it');
}

/** Azure's name of input `name`: the camelCase of the kebab-case name (`image-info` is `imageInfo`). */
function azureName(name) {
  return name.replace(/-([a-z0-9])/g, (_match, letter) => letter.toUpperCase());
}

/** GitHub's `GITHUB_OUTPUT` file: `name<<DELIMITER`, the value's lines, `DELIMITER`; or `name=value`. */
function readGithubOutputs(file) {
  const outputs = {};
  if (!fs.existsSync(file)) return outputs;
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  for (let index = 0; index < lines.length; index += 1) {
    const line = lines[index];
    if (line === '') continue;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc === null) {
      const equals = line.indexOf('=');
      assert.ok(equals > 0, `an output line GitHub cannot read: ${line}`);
      outputs[line.slice(0, equals)] = line.slice(equals + 1);
      continue;
    }
    const value = [];
    for (index += 1; index < lines.length && lines[index] !== heredoc[2]; index += 1) value.push(lines[index]);
    assert.ok(index < lines.length, `output ${heredoc[1]} has no closing delimiter`);
    outputs[heredoc[1]] = value.join('\n');
  }
  return outputs;
}

function unescapeAzureData(text) {
  return text.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%AZP25/g, '%');
}

function unescapeAzureProperty(text) {
  return unescapeAzureData(text.replace(/%3B/g, ';').replace(/%5D/g, ']'));
}

/**
 * The logging commands `command` in Azure output, as the agent parses them: `{properties, data}`, property names in
 * lower case (the agent ignores their case).
 */
function azureCommands(stdout, command) {
  const found = [];
  for (const line of stdout.split('\n')) {
    const match = /##vso\[([^ \]]+)([^\]]*)\](.*)$/.exec(line);
    if (match === null || match[1].toLowerCase() !== command) continue;
    const properties = {};
    for (const property of match[2].trim().split(';').filter(Boolean)) {
      const equals = property.indexOf('=');
      properties[property.slice(0, equals).trim().toLowerCase()] = unescapeAzureProperty(property.slice(equals + 1));
    }
    found.push({ properties, data: unescapeAzureData(match[3]) });
  }
  return found;
}

/** A GitHub runner's job: a workspace, and per step its own output and summary files. */
class GitHubJob {
  constructor(t, registry) {
    this.t = t;
    this.registry = registry;
    this.workspace = tempDir(t, 'imagepipe-github-job-');
    this.steps = 0;
    this.base = baseEnv(t, { GITHUB_ACTIONS: 'true', RUNNER_TEMP: this.workspace, IMAGEPIPE_BIN: BINARY });
    this.errorPrefix = '::error::';
  }

  /** The inputs that reach the staging registry: GitHub passes credentials as (secret) inputs. */
  registryInputs() {
    return {
      'staging-registry': this.registry.host,
      'ca-cert': this.registry.caCert,
      username: REGISTRY_USER,
      password: REGISTRY_PASSWORD,
    };
  }

  /** Runs `stage` as `uses: OWNER/imagepipe/dist/<stage>@v1`, or with `umbrella` as `uses: OWNER/imagepipe@v1`. */
  async step(stage, inputs, { umbrella = false } = {}) {
    this.steps += 1;
    const outputFile = path.join(this.workspace, `github-output-${this.steps}`);
    const summaryFile = path.join(this.workspace, `step-summary-${this.steps}`);
    const env = { ...this.base, GITHUB_OUTPUT: outputFile, GITHUB_STEP_SUMMARY: summaryFile };
    // The runner uppercases an input's name and keeps its hyphens.
    for (const [name, value] of Object.entries(umbrella ? { stage, ...inputs } : inputs)) {
      env[`INPUT_${name.toUpperCase()}`] = value;
    }
    const script = umbrella ? path.join(REPO_ROOT, 'dist', 'index.cjs') : path.join(REPO_ROOT, 'dist', stage, 'main.cjs');
    const result = await runNode(this.t, script, { env, cwd: this.workspace, timeoutMs: STEP_TIMEOUT_MS });
    const summary = fs.existsSync(summaryFile) ? fs.readFileSync(summaryFile, 'utf8') : '';
    return { ...result, stage, outputs: readGithubOutputs(outputFile), summary };
  }
}

/** An Azure agent's job: the task with the `stage` pickList, credentials from a Docker registry service connection. */
class AzureJob {
  constructor(t, registry) {
    this.t = t;
    this.registry = registry;
    this.workspace = tempDir(t, 'imagepipe-azure-job-');
    this.agentTemp = path.join(this.workspace, '_temp');
    fs.mkdirSync(this.agentTemp);
    this.endpoint = '3f2b8c1d-0a9e-4e5f-8b7c-6d5e4f3a2b1c';
    this.base = baseEnv(t, {
      TF_BUILD: 'True',
      AGENT_TEMPDIRECTORY: this.agentTemp,
      IMAGEPIPE_BIN: BINARY,
      [`ENDPOINT_AUTH_${this.endpoint}`]: JSON.stringify({
        parameters: { username: REGISTRY_USER, password: REGISTRY_PASSWORD, registry: `https://${registry.host}/` },
        scheme: 'UsernamePassword',
      }),
    });
    this.errorPrefix = '##vso[task.logissue type=error';
  }

  registryInputs() {
    return {
      'staging-registry': this.registry.host,
      'ca-cert': this.registry.caCert,
      'docker-registry-service-connection': this.endpoint,
    };
  }

  /** Runs `task: ImagePipe@1` with `stage: <stage>`: the agent sets INPUT_<NAME> from the task.json names. */
  async step(stage, inputs) {
    const env = { ...this.base };
    for (const [name, value] of Object.entries({ stage, ...inputs })) {
      env[`INPUT_${azureName(name).toUpperCase()}`] = value;
    }
    const result = await runNode(this.t, AZURE_TASK, { env, cwd: this.workspace, timeoutMs: STEP_TIMEOUT_MS });
    const outputs = {};
    for (const { properties, data } of azureCommands(result.stdout, 'task.setvariable')) {
      assert.equal(properties.isoutput, 'true', `an output variable: ${JSON.stringify(properties)}`);
      // Azure output variables are the declaration's names in camelCase (`imageInfoSha256`).
      outputs[properties.variable.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)] = data;
    }
    const summary = azureCommands(result.stdout, 'task.uploadsummary')
      .map(({ data }) => fs.readFileSync(data, 'utf8'))
      .join('\n');
    return { ...result, stage, inputs, outputs, summary };
  }
}

function succeeded(step) {
  assert.equal(step.code, 0, `${step.stage}: ${describe(step)}`);
  assert.deepEqual(errorAnnotations(step.stdout), [], step.stage);
  assert.equal(step.outputs.stage, step.stage, `${step.stage} sets the output stage`);
  for (const name of ['image-info', 'image-info-sha256']) {
    assert.ok(step.stage === 'build' || step.outputs[name], `${step.stage} sets ${name}: ${JSON.stringify(step.outputs)}`);
  }
}

/** Every mask command comes before any other line the step printed, and secrets nowhere else. */
function assertSecretsKept(step) {
  const lines = step.stdout.split('\n').filter((line) => line !== '');
  const isMask = (line) => line.startsWith('::add-mask::') || line.startsWith('##vso[task.setsecret]');
  const firstOther = lines.findIndex((line) => !isMask(line));
  const lateMasks = lines.slice(firstOther === -1 ? lines.length : firstOther).filter(isMask);
  assert.deepEqual(lateMasks, [], `${step.stage}: every mask before the first other line\n${step.stdout}`);
  for (const secret of SECRETS) {
    assertNoSecret(step.stdout, secret, `${step.stage}'s standard output`);
    assertNoSecret(step.stderr, secret, `${step.stage}'s standard error`);
    assert.ok(!step.summary.includes(secret), `${step.stage}'s summary shows a secret`);
    for (const [name, value] of Object.entries(step.outputs)) {
      assert.ok(!value.includes(secret), `${step.stage}'s output ${name} holds a secret`);
    }
  }
}

/** A cosign key pair in `folder` (setup, on the command line): the private key's path. */
function generateKey(folder) {
  execFileSync(BINARY, ['generate-key', '--output-prefix', path.join(folder, 'cosign')], {
    env: { PATH: process.env.PATH, HOME: folder, COSIGN_PASSWORD },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  return path.join(folder, 'cosign.key');
}

/** build -> post-build -> create-manifest -> sign of examples/hello in `job`, then sign fed post-build's image-info. */
async function release(job, { umbrellaStage } = {}) {
  const key = generateKey(job.workspace);
  const registry = { ...job.registryInputs(), 'staging-prefix': 'staging/run-1' };
  const steps = [];
  const step = async (stage, inputs) => {
    const ran = await job.step(stage, inputs, { umbrella: stage === umbrellaStage });
    steps.push(ran);
    return ran;
  };

  const build = await step('build', { manifest: MANIFEST, builder: 'native', fragments: 'fragments', ...registry });
  succeeded(build);
  const postBuild = await step('post-build', {
    manifest: MANIFEST,
    fragments: build.outputs.fragments,
    output: 'image-info.json',
  });
  succeeded(postBuild);
  fs.copyFileSync(path.join(job.workspace, 'image-info.json'), path.join(job.workspace, 'post-build.json'));

  const createManifest = await step('create-manifest', {
    manifest: MANIFEST,
    'image-info': postBuild.outputs['image-info'],
    'expect-image-info-sha256': postBuild.outputs['image-info-sha256'],
    ...registry,
  });
  succeeded(createManifest);
  const indexes = JSON.parse(createManifest.outputs.indexes);
  assert.equal(indexes.length, 2, `hello/base and hello/app: ${indexes}`);

  const signInputs = (imageInfo, sha256) => ({
    'image-info': imageInfo,
    'expect-image-info-sha256': sha256,
    key,
    'cosign-password': COSIGN_PASSWORD,
    ...registry,
  });
  const sign = await step('sign', signInputs(createManifest.outputs['image-info'], createManifest.outputs['image-info-sha256']));
  succeeded(sign);
  const signed = JSON.parse(sign.outputs.signed);
  assert.equal(signed.length, 8, `6 platform images and 2 indexes: ${signed}`);
  for (const index of indexes) assert.ok(signed.includes(index), `${index} is signed`);
  assert.notEqual(sign.outputs['image-info-sha256'], createManifest.outputs['image-info-sha256'], 'sign recorded its work');
  // The summary: a table of every image with its digest (shortened) and its signatures.
  for (const [stage, ran] of [['create-manifest', createManifest], ['sign', sign]]) {
    assert.match(ran.summary, new RegExp(`imagepipe ${stage}`), `${stage} wrote its summary`);
    for (const index of indexes) {
      const digest = index.slice(index.indexOf('@') + 1, index.indexOf('@') + 1 + 'sha256:'.length + 12);
      assert.ok(ran.summary.includes(digest), `${stage}'s summary lists ${digest}\n${ran.summary}`);
    }
  }
  const signatureCounts = sign.summary
    .split('\n')
    .filter((line) => line.startsWith('| `hello/'))
    .map((line) => line.split('|').at(-2).trim());
  assert.deepEqual(signatureCounts, Array(8).fill('1'), `every image signed once, says sign's summary\n${sign.summary}`);

  // sign fed the image-info post-build wrote: create-manifest is not in its ledger, a precondition (exit 3).
  const refused = await step('sign', signInputs(path.join(job.workspace, 'post-build.json'), postBuild.outputs['image-info-sha256']));
  assert.equal(refused.code, 3, describe(refused));
  const errors = errorAnnotations(refused.stdout);
  assert.equal(errors.length, 1, describe(refused));
  assert.ok(errors[0].startsWith(job.errorPrefix), errors[0]);
  assert.match(errors[0], /create-manifest/, 'the refusal names the missing stage');

  for (const ran of steps) assertSecretsKept(ran);
  return steps;
}

test('GitHub: build -> post-build -> create-manifest -> sign through dist/, outputs and summaries read back, no secret shown', TIMEOUT, async (t) => {
  requireSetup();
  const registry = await startRegistry(t, { user: REGISTRY_USER, password: REGISTRY_PASSWORD });
  const job = new GitHubJob(t, registry);

  const steps = await release(job, { umbrellaStage: 'create-manifest' });

  const sign = steps.find((ran) => ran.stage === 'sign' && ran.code === 0);
  assert.equal(sign.stdout.split('\n')[0].startsWith('::add-mask::'), true, sign.stdout);
});

test('Azure: the same release through the task, credentials from a Docker registry service connection', TIMEOUT, async (t) => {
  requireSetup();
  const registry = await startRegistry(t, { user: REGISTRY_USER, password: REGISTRY_PASSWORD });
  const job = new AzureJob(t, registry);

  const steps = await release(job);

  for (const ran of steps.filter((step) => step.inputs['docker-registry-service-connection'])) {
    assert.equal(ran.stdout.split('\n')[0], `##vso[task.setsecret]${REGISTRY_PASSWORD.replace(/%/g, '%AZP25')}`, `${ran.stage}: the shim masks first`);
  }
  assert.deepEqual(fs.readdirSync(job.agentTemp).filter((name) => name.startsWith('imagepipe-docker-')), [], 'no Docker config stays');
});

test('GitHub: a wrong enum input is named as written in YAML, exit 2, no output set', TIMEOUT, async (t) => {
  requireSetup();
  const job = new GitHubJob(t, { host: '127.0.0.1:9', caCert: '' });

  const wrong = await job.step('sign', {
    'image-info': 'image-info.json',
    'staging-registry': 'oci:staging',
    key: 'cosign.key',
    'signature-mode': 'tags',
  });

  assert.equal(wrong.code, 2, describe(wrong));
  assert.deepEqual(wrong.lines, ["::error::input 'signature-mode': expected one of tag, referrers, auto, found 'tags'"]);
  assert.deepEqual(wrong.outputs, {});
});

test('Azure: a wrong enum input is refused naming it as Azure YAML writes it, as a logissue annotation, exit 2', TIMEOUT, async (t) => {
  requireSetup();
  const job = new AzureJob(t, { host: '127.0.0.1:9', caCert: '' });

  const wrong = await job.step('sign', {
    'image-info': 'image-info.json',
    'staging-registry': 'oci:staging',
    key: 'cosign.key',
    'signature-mode': 'tags',
  });

  assert.equal(wrong.code, 2, describe(wrong));
  const errors = errorAnnotations(wrong.stdout);
  assert.equal(errors.length, 1, describe(wrong));
  // An Azure pipeline writes the input as `signatureMode:`, so the message names it that way.
  assert.match(errors[0], /^##vso\[task\.logissue type=error;?\]input 'signatureMode': expected one of tag, referrers, auto, found 'tags'$/);
  assert.deepEqual(wrong.outputs, {});
});
