'use strict';
// Azure: input docker-registry-service-connection names an endpoint whose `ENDPOINT_AUTH_<id>` JSON the agent
// sets. The shim masks the password before anything else, gives the binary a temporary DOCKER_CONFIG holding
// the login (and the logins already there), and removes that folder afterwards, also when the binary fails.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

const { SHIM, assertNoSecret, baseEnv, describe, errorAnnotations, readRecord, runNode, tempDir, writeFakeBinary } =
  require('./helpers.cjs');

const TIMEOUT = { timeout: 120_000 };
const ENDPOINT = '5b0c6e1a-9d3f-4c8e-a2b7-0f1e2d3c4b5a';
// A password with the characters Azure's escaping changes, and the ones a command line would stumble over.
const PASSWORD = 'pa%ss;wo]rd "with" $pace';
const USER = 'pipeline-user';

function endpointAuth(parameters = {}, scheme = 'UsernamePassword') {
  return JSON.stringify({
    parameters: { username: USER, password: PASSWORD, registry: 'https://staging.example.com:5000/', ...parameters },
    scheme,
  });
}

/** The environment of an Azure task step whose service connection input names ENDPOINT. */
function azureEnv(t, work, extra = {}) {
  const agentTemp = path.join(work, 'agent-temp');
  fs.mkdirSync(agentTemp);
  return baseEnv(t, {
    TF_BUILD: 'True',
    AGENT_TEMPDIRECTORY: agentTemp,
    IMAGEPIPE_BIN: writeFakeBinary(path.join(work, 'imagepipe')),
    FAKE_RECORD: path.join(work, 'record'),
    INPUT_DOCKERREGISTRYSERVICECONNECTION: ENDPOINT,
    [`ENDPOINT_AUTH_${ENDPOINT}`]: endpointAuth(),
    INPUT_STAGE: 'sign',
    ...extra,
  });
}

const MASK = `##vso[task.setsecret]${PASSWORD.replace(/%/g, '%AZP25')}`;
const AUTH = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');

for (const exitCode of [0, 3]) {
  test(`the binary gets a Docker config with the login, masked first, removed afterwards (binary exits ${exitCode})`, TIMEOUT, async (t) => {
    const work = tempDir(t);
    const env = azureEnv(t, work, { FAKE_EXIT: String(exitCode) });

    const result = await runNode(t, SHIM, { env });

    assert.equal(result.code, exitCode, describe(result));
    assert.equal(result.lines[0], MASK, `the password is masked before anything else\n${describe(result)}`);
    assert.equal(result.lines[1], `##vso[task.setsecret]${AUTH}`, 'and so is its encoding in the config');
    const seen = readRecord(env.FAKE_RECORD);
    assert.match(seen.env.DOCKER_CONFIG, new RegExp(`^${env.AGENT_TEMPDIRECTORY}/imagepipe-docker-`));
    assert.deepEqual(seen.dockerConfig, { auths: { 'staging.example.com:5000': { auth: AUTH } } });
    assert.deepEqual(seen.dockerConfigEntries, ['config.json']);
    const { DOCKER_CONFIG: _given, ...rest } = seen.env;
    assert.deepEqual(rest, env, 'apart from DOCKER_CONFIG the environment is untouched, ENDPOINT_AUTH_* included');
    assert.ok(!fs.existsSync(seen.env.DOCKER_CONFIG), 'the temporary Docker config is gone');
    assert.deepEqual(fs.readdirSync(env.AGENT_TEMPDIRECTORY), []);
    assertNoSecret(result.stdout + result.stderr, PASSWORD, 'the step log');
    assertNoSecret(result.stdout + result.stderr, AUTH, 'the step log');
  });
}

test('logins already in DOCKER_CONFIG stay, docker plugins stay reachable, and the original folder is untouched', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const original = path.join(work, 'docker-config');
  fs.mkdirSync(path.join(original, 'cli-plugins'), { recursive: true });
  fs.writeFileSync(path.join(original, 'cli-plugins', 'marker'), 'plugin');
  const before = { auths: { 'public.example.com': { auth: 'cHVibGlj' } }, credsStore: 'desktop' };
  fs.writeFileSync(path.join(original, 'config.json'), JSON.stringify(before));
  const env = azureEnv(t, work, { DOCKER_CONFIG: original });

  const result = await runNode(t, SHIM, { env });

  assert.equal(result.code, 0, describe(result));
  const seen = readRecord(env.FAKE_RECORD);
  assert.notEqual(seen.env.DOCKER_CONFIG, original);
  assert.deepEqual(seen.dockerConfig, {
    auths: { 'public.example.com': { auth: 'cHVibGlj' }, 'staging.example.com:5000': { auth: AUTH } },
    credsStore: 'desktop',
    credHelpers: { 'staging.example.com:5000': '' },
  });
  assert.deepEqual(seen.dockerConfigEntries.sort(), ['cli-plugins', 'config.json']);
  assert.equal(seen.pluginMarker, 'plugin');
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(original, 'config.json'), 'utf8')), before);
  assert.equal(fs.readFileSync(path.join(original, 'cli-plugins', 'marker'), 'utf8'), 'plugin', 'cleaning up left the linked folder');
  assert.ok(!fs.existsSync(seen.env.DOCKER_CONFIG));
});

test('Docker Hub logins go under its historical key', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const env = azureEnv(t, work, { [`ENDPOINT_AUTH_${ENDPOINT}`]: endpointAuth({ registry: 'https://index.docker.io/v1/' }) });

  const result = await runNode(t, SHIM, { env });

  assert.equal(result.code, 0, describe(result));
  assert.deepEqual(Object.keys(readRecord(env.FAKE_RECORD).dockerConfig.auths), ['https://index.docker.io/v1/']);
});

test('the endpoint id is matched whatever the case of the variable the agent set', TIMEOUT, async (t) => {
  const work = tempDir(t);
  const env = azureEnv(t, work);
  delete env[`ENDPOINT_AUTH_${ENDPOINT}`];
  env[`ENDPOINT_AUTH_${ENDPOINT.toUpperCase()}`] = endpointAuth();

  const result = await runNode(t, SHIM, { env });

  assert.equal(result.code, 0, describe(result));
  assert.equal(result.lines[0], MASK);
});

const REFUSALS = [
  ['an unknown endpoint', { [`ENDPOINT_AUTH_${ENDPOINT}`]: undefined }, `no service connection \`${ENDPOINT}\` is known to this job (ENDPOINT_AUTH_${ENDPOINT} is not set)`],
  ['an endpoint that is not JSON', { [`ENDPOINT_AUTH_${ENDPOINT}`]: `{"parameters":{"password":"${PASSWORD}"` }, `ENDPOINT_AUTH_${ENDPOINT} is not JSON`],
  ['another scheme', { [`ENDPOINT_AUTH_${ENDPOINT}`]: endpointAuth({}, 'ServicePrincipal') }, `service connection \`${ENDPOINT}\` uses the scheme \`ServicePrincipal\`; only UsernamePassword is supported`],
  ['no registry', { [`ENDPOINT_AUTH_${ENDPOINT}`]: endpointAuth({ registry: '' }) }, `service connection \`${ENDPOINT}\` has no registry`],
];
for (const [what, change, message] of REFUSALS) {
  test(`${what} is refused with exit 2 before the binary starts, the password never shown`, TIMEOUT, async (t) => {
    const work = tempDir(t);
    const env = azureEnv(t, work);
    for (const [name, value] of Object.entries(change)) {
      if (value === undefined) delete env[name];
      else env[name] = value;
    }

    const result = await runNode(t, SHIM, { env });

    assert.equal(result.code, 2, describe(result));
    assert.deepEqual(errorAnnotations(result.stdout), [
      `##vso[task.logissue type=error]input 'docker-registry-service-connection': ${message}`,
    ]);
    assert.ok(!fs.existsSync(`${env.FAKE_RECORD}.args`), 'the binary did not run');
    assert.deepEqual(fs.readdirSync(env.AGENT_TEMPDIRECTORY), []);
    assertNoSecret(result.stdout + result.stderr, PASSWORD, 'the step log');
  });
}
