'use strict';
// The shim's pure parts, table by table: input names, hosts and their command lines, release targets, the tar
// reader (on archives GNU tar writes in each of its formats), Docker config keys and merging.

const assert = require('node:assert/strict');
const zlib = require('node:zlib');
const { test } = require('node:test');

const shim = require('../../dist/index.cjs');
const { tarGz } = require('./helpers.cjs');

test('input names are normalised the way both runners spell them', () => {
  const cases = [
    ['INPUT_IMAGE-INFO', 'IMAGEINFO'],
    ['INPUT_IMAGEINFO', 'IMAGEINFO'],
    ['image-info', 'IMAGEINFO'],
    ['imageInfo', 'IMAGEINFO'],
    ['INPUT_EXPECT-IMAGE-INFO-SHA256', 'EXPECTIMAGEINFOSHA256'],
    ['docker-registry-service-connection', 'DOCKERREGISTRYSERVICECONNECTION'],
    ['input_stage', 'STAGE'],
  ];
  for (const [name, normalised] of cases) assert.equal(shim.normaliseInputName(name), normalised, name);
});

test('an input is found under either spelling, trimmed, and an empty one counts as not given', () => {
  assert.equal(shim.getInput({ 'INPUT_IMAGEPIPE-PATH': ' /a/b \n' }, 'imagepipe-path'), '/a/b');
  assert.equal(shim.getInput({ INPUT_IMAGEPIPEPATH: '/a/b' }, 'imagepipe-path'), '/a/b');
  assert.equal(shim.getInput({ 'INPUT_IMAGEPIPE-PATH': '   ' }, 'imagepipe-path'), undefined);
  assert.equal(shim.getInput({ IMAGEPIPEPATH: '/a/b' }, 'imagepipe-path'), undefined, 'only INPUT_ variables');
  assert.equal(shim.getInput({}, 'imagepipe-path'), undefined);
});

test('the host comes from GITHUB_ACTIONS=true or TF_BUILD=True', () => {
  assert.equal(shim.detectHost({ GITHUB_ACTIONS: 'true' }), 'github');
  assert.equal(shim.detectHost({ TF_BUILD: 'True' }), 'azure');
  assert.equal(shim.detectHost({ GITHUB_ACTIONS: 'false' }), 'local');
  assert.equal(shim.detectHost({}), 'local');
});

test("error and mask lines are each host's, with its escaping", () => {
  const message = '100% wrong\r\nsecond line';
  assert.equal(shim.errorLine('github', message), '::error::100%25 wrong%0D%0Asecond line');
  assert.equal(shim.errorLine('azure', message), '##vso[task.logissue type=error]100%AZP25 wrong%0D%0Asecond line');
  assert.equal(shim.errorLine('local', 'plain'), 'error: plain');
  assert.deepEqual(shim.maskLines('github', 'p%ss;]'), ['::add-mask::p%25ss;]']);
  assert.deepEqual(shim.maskLines('azure', 'p%ss;]'), ['##vso[task.setsecret]p%AZP25ss;]']);
  assert.deepEqual(shim.maskLines('azure', 'line one\r\n\nline two\n'), [
    '##vso[task.setsecret]line one',
    '##vso[task.setsecret]line two',
  ]);
  assert.deepEqual(shim.maskLines('local', 'secret'), []);
});

test("each runner's OS and CPU has its cargo-dist target", () => {
  const cases = [
    ['linux', 'x64', 'x86_64-unknown-linux-musl'],
    ['linux', 'arm64', 'aarch64-unknown-linux-musl'],
    ['darwin', 'x64', 'x86_64-apple-darwin'],
    ['darwin', 'arm64', 'aarch64-apple-darwin'],
    ['win32', 'x64', 'x86_64-pc-windows-msvc'],
    ['win32', 'arm64', undefined],
    ['freebsd', 'x64', undefined],
  ];
  for (const [platform, arch, target] of cases) assert.equal(shim.releaseTarget(platform, arch), target);
  assert.equal(shim.binaryName('win32'), 'imagepipe.exe');
  assert.equal(shim.binaryName('linux'), 'imagepipe');
});

test('the tool cache is the runner\'s: GitHub first, then Azure, else one in the home folder', () => {
  assert.equal(shim.toolCacheRoot({ RUNNER_TOOL_CACHE: '/gh', AGENT_TOOLSDIRECTORY: '/az' }), '/gh');
  assert.equal(shim.toolCacheRoot({ AGENT_TOOLSDIRECTORY: '/az' }), '/az');
  assert.match(shim.toolCacheRoot({}), /\.cache[/\\]imagepipe[/\\]tools$/);
  assert.equal(shim.toolCacheDirectory('/gh', '0.1.0', 'x64'), '/gh/imagepipe/0.1.0/x64');
});

const LONG = `imagepipe-x86_64-unknown-linux-musl/${'deep/'.repeat(25)}file.txt`;

for (const format of ['gnu', 'ustar', 'pax']) {
  test(`the tar reader reads GNU tar's ${format} format, long names included`, (t) => {
    const archive = tarGz(t, {
      'imagepipe-x86_64-unknown-linux-musl/imagepipe': { content: '#!/bin/sh\n', mode: 0o755 },
      [LONG]: { content: 'long' },
      'empty': { content: '' },
    }, format);

    const entries = shim.readTar(zlib.gunzipSync(archive));

    const files = Object.fromEntries(
      entries.filter((entry) => entry.type === 'file').map((entry) => [entry.name, entry]),
    );
    assert.deepEqual(Object.keys(files).sort(), ['empty', 'imagepipe-x86_64-unknown-linux-musl/imagepipe', LONG].sort());
    assert.equal(files['imagepipe-x86_64-unknown-linux-musl/imagepipe'].data.toString(), '#!/bin/sh\n');
    assert.equal(files['imagepipe-x86_64-unknown-linux-musl/imagepipe'].mode & 0o777, 0o755);
    assert.equal(files[LONG].data.toString(), 'long');
    assert.equal(files.empty.data.length, 0);
  });
}

test('the installed files are those beside the binary, named from its folder', () => {
  const entry = (name, data = 'x', type = 'file') => ({ name, type, mode: 0o644, data: Buffer.from(data) });
  const nested = shim.releaseFiles(
    [entry('dist/', '', 'directory'), entry('dist/imagepipe', 'bin'), entry('./dist/README.md'), entry('elsewhere')],
    'imagepipe',
  );
  assert.deepEqual(nested.map((file) => file.path).sort(), ['README.md', 'imagepipe']);
  const flat = shim.releaseFiles([entry('imagepipe.exe'), entry('LICENSE')], 'imagepipe.exe');
  assert.deepEqual(flat.map((file) => file.path).sort(), ['LICENSE', 'imagepipe.exe']);
  assert.throws(() => shim.releaseFiles([entry('a/b/imagepipe')], 'imagepipe'), /holds no `imagepipe`/);
  for (const unsafe of ['../imagepipe', '/etc/imagepipe', 'dist/../../imagepipe', 'c:\\imagepipe']) {
    assert.throws(() => shim.releaseFiles([entry('imagepipe'), entry(unsafe)], 'imagepipe'), /unsafe path/, unsafe);
  }
});

test('a registry is keyed in the Docker config by host, Docker Hub by its historical URL', () => {
  const cases = [
    ['myregistry.azurecr.io', 'myregistry.azurecr.io'],
    ['https://MyRegistry.example.com/', 'myregistry.example.com'],
    ['https://registry.example.com:5000/v2/', 'registry.example.com:5000'],
    ['127.0.0.1:5000', '127.0.0.1:5000'],
    ['https://index.docker.io/v1/', 'https://index.docker.io/v1/'],
    ['docker.io', 'https://index.docker.io/v1/'],
    ['registry-1.docker.io', 'https://index.docker.io/v1/'],
  ];
  for (const [registry, key] of cases) assert.equal(shim.dockerConfigKey(registry), key, registry);
});

test('the service connection joins the logins already there, and wins over a credential store', () => {
  assert.deepEqual(shim.mergedDockerConfig({}, 'reg.example', 'QQ=='), { auths: { 'reg.example': { auth: 'QQ==' } } });
  const existing = {
    auths: { 'other.example': { auth: 'Tw==' }, 'reg.example': { auth: 'old' } },
    credsStore: 'desktop',
    credHelpers: { 'ecr.example': 'ecr-login' },
    experimental: 'enabled',
  };
  assert.deepEqual(shim.mergedDockerConfig(existing, 'reg.example', 'QQ=='), {
    auths: { 'other.example': { auth: 'Tw==' }, 'reg.example': { auth: 'QQ==' } },
    credsStore: 'desktop',
    credHelpers: { 'ecr.example': 'ecr-login', 'reg.example': '' },
    experimental: 'enabled',
  });
  assert.equal(existing.auths['reg.example'].auth, 'old', 'the existing config is not changed in place');
});

test('`ci step` takes the stage only from a per-stage action', () => {
  assert.deepEqual(shim.stepArguments(undefined), ['ci', 'step']);
  assert.deepEqual(shim.stepArguments('sign'), ['ci', 'step', 'sign']);
});
