'use strict';
/**
 * The Node shim of imagepipe's GitHub Action and Azure Pipelines task (DESIGN.md §6, issue 11).
 *
 * Both runners start a JavaScript step as `node <file>`. This file gets hold of the imagepipe binary and runs
 * `imagepipe ci step [STAGE]`, which reads the step's inputs (`INPUT_*`) from the environment itself: the shim
 * passes the environment on untouched and decides nothing about a stage. The binary comes from, in order:
 *   1. the input `imagepipe-path`, else the environment variable IMAGEPIPE_BIN;
 *   2. the runner's tool cache, `<RUNNER_TOOL_CACHE | AGENT_TOOLSDIRECTORY>/imagepipe/<version>/<arch>/`;
 *   3. the release archive for this OS and CPU, downloaded from `<base>/v<version>/<file>` (base: the variable
 *      IMAGEPIPE_DOWNLOAD_BASE, else `downloadBase` of manifest.json), checked against the SHA-256 pinned in
 *      manifest.json and unpacked into the tool cache, where the next step on this machine finds it.
 *
 * manifest.json lies beside this file. A release fills its `archives` (scripts/write-dist-manifest.mjs writes it
 * from cargo-dist's checksums); until a release exists it pins none, and only 1. and 2. can work.
 *
 * Node built-ins only: the file ships as it is, with no bundler and no node_modules. The same bytes run as
 * dist/index.cjs (GitHub) and azure-task/ImagePipeV1/index.cjs (Azure). It must never load
 * azure-pipelines-task-lib: that library's loader deletes `INPUT_*` and `ENDPOINT_AUTH_*` from the environment,
 * which the binary still has to read.
 */

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { spawn } = require('node:child_process');

const MANIFEST_FILE = 'manifest.json';
const TOOL_NAME = 'imagepipe';
/** cargo-dist's target triple of each platform a release has a binary for, keyed by Node's `platform arch`. */
const RELEASE_TARGETS = {
  'linux x64': 'x86_64-unknown-linux-musl',
  'linux arm64': 'aarch64-unknown-linux-musl',
  'darwin x64': 'x86_64-apple-darwin',
  'darwin arm64': 'aarch64-apple-darwin',
  'win32 x64': 'x86_64-pc-windows-msvc',
};
/** A release archive is a few MiB; anything far larger is not one, and would only fill the memory. */
const MAX_ARCHIVE_BYTES = 256 * 1024 * 1024;
const MAX_REDIRECTS = 5;
/** How long a download may go without receiving a byte. */
const DOWNLOAD_IDLE_TIMEOUT_MS = 60_000;
/** Where Docker, `docker login` and imagepipe keep Docker Hub's credentials. */
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';
const DOCKER_HUB_HOSTS = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];
/** The signals a runner sends to cancel a step; they are passed on to the binary. */
const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM'];

/** A failure the shim reports as one line, with the exit code it ends with (DESIGN.md §8: 2 = invalid input). */
class ShimError extends Error {
  constructor(message, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The CI host and its workflow commands

/** `github`, `azure` or `local`, by the variables each runner sets (DESIGN.md §6). */
function detectHost(env) {
  if (env.GITHUB_ACTIONS === 'true') return 'github';
  if ((env.TF_BUILD || '').toLowerCase() === 'true') return 'azure';
  return 'local';
}

/** GitHub's escaping of a workflow command's message (actions/toolkit `escapeData`). */
function escapeGithubData(text) {
  return text.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/** Azure's escaping of a logging command's message (azure-pipelines-task-lib `escapedata`). */
function escapeAzureData(text) {
  return text.replace(/%/g, '%AZP25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/** The line that shows `message` as an error annotation on `host`. */
function errorLine(host, message) {
  switch (host) {
    case 'github':
      return `::error::${escapeGithubData(message)}`;
    case 'azure':
      return `##vso[task.logissue type=error]${escapeAzureData(message)}`;
    default:
      return `error: ${message}`;
  }
}

/**
 * The lines that tell `host` to mask `secret` in every later log line (none where nothing masks). Both runners
 * mask line by line, so a secret of several lines is masked a line at a time, as the binary does.
 */
function maskLines(host, secret) {
  const lines = secret.split(/\r?\n/).filter((line) => line.trim() !== '');
  switch (host) {
    case 'github':
      return lines.map((line) => `::add-mask::${escapeGithubData(line)}`);
    case 'azure':
      return lines.map((line) => `##vso[task.setsecret]${escapeAzureData(line)}`);
    default:
      return [];
  }
}

/**
 * Writes one line to standard output and waits until it is handed to the OS. Runners read workflow commands from
 * standard output, and a mask must be in the log before the binary, which shares that output, can print anything.
 */
function emit(line) {
  return new Promise((resolve) => process.stdout.write(`${line}\n`, () => resolve()));
}

/** An error annotation on standard output under a CI host; on standard error elsewhere, as a CLI would. */
async function reportError(host, message) {
  const line = errorLine(host, message);
  if (host === 'local') {
    process.stderr.write(`${line}\n`);
  } else {
    await emit(line);
  }
}

/** Progress for the step's log, on standard error, which both runners show beside standard output. */
function note(message) {
  process.stderr.write(`imagepipe shim: ${message}\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs

/**
 * The name an input is looked up by: without `INPUT_`, without anything but letters and digits, in upper case.
 * GitHub names `image-info` `INPUT_IMAGE-INFO` and Azure `imageInfo` `INPUT_IMAGEINFO`; both become `IMAGEINFO`.
 */
function normaliseInputName(name) {
  return name
    .replace(/^INPUT_/i, '')
    .replace(/[^A-Za-z0-9]/g, '')
    .toUpperCase();
}

/** The trimmed value of input `name` (kebab-case, as in YAML), or undefined when it is not given or empty. */
function getInput(env, name) {
  const wanted = normaliseInputName(name);
  for (const [key, value] of Object.entries(env)) {
    if (!/^INPUT_/i.test(key) || normaliseInputName(key) !== wanted) continue;
    const trimmed = (value || '').trim();
    if (trimmed !== '') return trimmed;
  }
  return undefined;
}

/** The value of environment variable `name`, matched without regard to case (Azure endpoint ids vary in case). */
function getVariableIgnoringCase(env, name) {
  if (env[name] !== undefined) return env[name];
  const upper = name.toUpperCase();
  const key = Object.keys(env).find((candidate) => candidate.toUpperCase() === upper);
  return key === undefined ? undefined : env[key];
}

// ---------------------------------------------------------------------------------------------------------------
// Finding the binary

/** The cargo-dist target of the release binary for `platform` and `arch` (Node's names), or undefined. */
function releaseTarget(platform, arch) {
  return RELEASE_TARGETS[`${platform} ${arch}`];
}

function binaryName(platform = process.platform) {
  return platform === 'win32' ? `${TOOL_NAME}.exe` : TOOL_NAME;
}

/**
 * The tool cache's root. Without a runner's, a folder in the user's home: never one in the shared temp folder,
 * where another user could place a binary for us to run.
 */
function toolCacheRoot(env) {
  return env.RUNNER_TOOL_CACHE || env.AGENT_TOOLSDIRECTORY || path.join(os.homedir(), '.cache', TOOL_NAME, 'tools');
}

/** `<root>/imagepipe/<version>/<arch>`, the layout of @actions/tool-cache and Azure's tool lib. */
function toolCacheDirectory(root, version, arch = process.arch) {
  return path.join(root, TOOL_NAME, version, arch);
}

function isFile(file) {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** manifest.json beside the shim: the version to run and the pinned checksum of each release archive. */
function readManifest(shimDirectory) {
  const file = path.join(shimDirectory, MANIFEST_FILE);
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ShimError(`reading \`${file}\`: ${error.message}`);
  }
  if (typeof manifest.version !== 'string' || !/^[0-9A-Za-z.+-]+$/.test(manifest.version)) {
    throw new ShimError(`\`${file}\` has no valid \`version\``);
  }
  return { ...manifest, file, archives: manifest.archives || {} };
}

/** An explicitly given binary, which must exist: a typo there should not turn into a download. */
function explicitBinary(file, source) {
  const resolved = path.resolve(file);
  if (!isFile(resolved)) {
    throw new ShimError(`${source}: \`${resolved}\` is not a file`, 2);
  }
  return resolved;
}

/** The binary to run, installing the release into the tool cache first when it is not there yet. */
async function findBinary(env, shimDirectory) {
  const input = getInput(env, 'imagepipe-path');
  if (input !== undefined) return explicitBinary(input, "input 'imagepipe-path'");
  if (env.IMAGEPIPE_BIN) return explicitBinary(env.IMAGEPIPE_BIN, 'IMAGEPIPE_BIN');

  const manifest = readManifest(shimDirectory);
  const directory = toolCacheDirectory(toolCacheRoot(env), manifest.version);
  const binary = path.join(directory, binaryName());
  if (!isFile(binary)) await installRelease(env, manifest, directory);
  return binary;
}

/** Downloads the release archive manifest.json pins for this machine, checks it, and unpacks it into `directory`. */
async function installRelease(env, manifest, directory) {
  const giveIt = "give the binary with the input 'imagepipe-path' or IMAGEPIPE_BIN";
  const target = releaseTarget(process.platform, process.arch);
  if (target === undefined) {
    throw new ShimError(`imagepipe has no release binary for ${process.platform} ${process.arch}; ${giveIt}`);
  }
  const archive = manifest.archives[target];
  if (!archive || typeof archive.file !== 'string' || typeof archive.sha256 !== 'string') {
    throw new ShimError(
      `\`${manifest.file}\` pins no release archive of imagepipe ${manifest.version} for \`${target}\`; ${giveIt}`,
    );
  }
  const base = (env.IMAGEPIPE_DOWNLOAD_BASE || manifest.downloadBase || '').replace(/\/+$/, '');
  if (base === '') throw new ShimError(`\`${manifest.file}\` has no \`downloadBase\``);
  const url = `${base}/v${manifest.version}/${archive.file}`;

  note(`downloading ${url}`);
  const bytes = await download(url);
  const found = sha256(bytes);
  if (found !== archive.sha256.toLowerCase()) {
    throw new ShimError(`checksum mismatch for ${url}: expected sha256 ${archive.sha256}, found sha256 ${found}`);
  }
  let files;
  try {
    files = releaseFiles(readTar(zlib.gunzipSync(bytes)), binaryName());
  } catch (error) {
    throw new ShimError(`unpacking ${url}: ${error.message}`);
  }
  installAtomically(files, directory, binaryName());
  note(`installed imagepipe ${manifest.version} in ${directory}`);
}

function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

/** GET `url` into memory, following redirects (GitHub sends release assets from another host). */
function download(url, redirectsLeft = MAX_REDIRECTS) {
  return new Promise((resolve, reject) => {
    const client = url.startsWith('https:') ? https : url.startsWith('http:') ? http : undefined;
    if (client === undefined) {
      reject(new ShimError(`downloading ${url}: only http and https URLs can be downloaded`));
      return;
    }
    const fail = (reason) => reject(new ShimError(`downloading ${url}: ${reason}`));
    // No keep-alive agent: an idle pooled socket would only hold the process open after the download.
    const options = { agent: false, headers: { 'user-agent': 'imagepipe-shim' }, timeout: DOWNLOAD_IDLE_TIMEOUT_MS };
    const request = client.get(url, options, (response) => {
      const status = response.statusCode;
      if (status >= 300 && status < 400 && response.headers.location) {
        response.resume();
        if (redirectsLeft === 0) {
          fail(`more than ${MAX_REDIRECTS} redirects`);
          return;
        }
        resolve(download(new URL(response.headers.location, url).href, redirectsLeft - 1));
        return;
      }
      if (status !== 200) {
        response.resume();
        fail(`HTTP ${status}`);
        return;
      }
      const chunks = [];
      let received = 0;
      response.on('data', (chunk) => {
        received += chunk.length;
        if (received > MAX_ARCHIVE_BYTES) {
          request.destroy(new Error(`larger than ${MAX_ARCHIVE_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => {
        // An aborted body ends too; a truncated archive then fails its checksum, with the URL in the message.
        resolve(Buffer.concat(chunks));
      });
      response.on('error', (error) => fail(error.message));
    });
    request.on('timeout', () => request.destroy(new Error(`nothing received for ${DOWNLOAD_IDLE_TIMEOUT_MS / 1000} s`)));
    request.on('error', (error) => fail(error.message));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Unpacking: gzip comes from zlib, the tar format is read here (a release archive needs regular files only)

/** A NUL-terminated string field of a tar header. */
function tarString(bytes, start, length) {
  const field = bytes.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

/** A numeric tar header field: octal digits, or base-256 when the high bit of its first byte is set (GNU, pax). */
function tarNumber(bytes, start, length) {
  const field = bytes.subarray(start, start + length);
  if (field[0] & 0x80) {
    let value = field[0] & 0x7f;
    for (const byte of field.subarray(1)) value = value * 256 + byte;
    return value;
  }
  const digits = field.toString('latin1').replace(/[\0 ]+/g, '');
  if (!/^[0-7]*$/.test(digits)) throw new Error(`a tar header holds \`${digits}\` where a number belongs`);
  return digits === '' ? 0 : parseInt(digits, 8);
}

/** The `path` record of a pax extended header (`<length> path=<value>\n` records), or undefined. */
function paxPath(body) {
  let offset = 0;
  while (offset < body.length) {
    const space = body.indexOf(0x20, offset);
    if (space === -1) break;
    const length = parseInt(body.subarray(offset, space).toString('latin1'), 10);
    if (!(length > 0)) break;
    const record = body.subarray(space + 1, offset + length - 1).toString('utf8');
    if (record.startsWith('path=')) return record.slice('path='.length);
    offset += length;
  }
  return undefined;
}

/**
 * The entries of a tar archive: `{name, type: 'file' | 'directory' | 'other', mode, data}`. Reads POSIX ustar
 * (long names split into prefix and name), GNU (`L` long-name entries; cargo-dist writes through the `tar`
 * crate's GNU headers) and pax (`x` headers with a `path`). Links and devices come back as `other`.
 */
function readTar(archive) {
  const BLOCK = 512;
  const entries = [];
  let longName;
  let offset = 0;
  while (offset + BLOCK <= archive.length) {
    const header = archive.subarray(offset, offset + BLOCK);
    if (header.every((byte) => byte === 0)) break; // the end-of-archive marker
    const size = tarNumber(header, 124, 12);
    const type = header[156] === 0 ? '0' : String.fromCharCode(header[156]);
    const data = archive.subarray(offset + BLOCK, offset + BLOCK + size);
    if (data.length < size) throw new Error('the tar archive is truncated');
    offset += BLOCK + Math.ceil(size / BLOCK) * BLOCK;

    if (type === 'L') {
      longName = tarString(data, 0, data.length);
      continue;
    }
    if (type === 'x') {
      longName = paxPath(data) ?? longName;
      continue;
    }
    if (type === 'g' || type === 'K') continue; // global pax settings and GNU long link names: nothing we use

    let name = tarString(header, 0, 100);
    // Only POSIX ustar has a prefix field; GNU headers keep other data at that offset.
    if (tarString(header, 257, 6) === 'ustar') {
      const prefix = tarString(header, 345, 155);
      if (prefix !== '') name = `${prefix}/${name}`;
    }
    if (longName !== undefined) name = longName;
    longName = undefined;

    const kind = type === '0' || type === '7' ? 'file' : type === '5' ? 'directory' : 'other';
    entries.push({ name, type: kind, mode: tarNumber(header, 100, 8), data });
  }
  return entries;
}

/** `name` as relative path components, refusing any that would land outside the folder it is unpacked into. */
function safeComponents(name) {
  const components = name.split('/').filter((component) => component !== '' && component !== '.');
  if (name.startsWith('/') || components.includes('..') || components.some((c) => c.includes('\\') || c.includes(':'))) {
    throw new ShimError(`the release archive holds an unsafe path \`${name}\``);
  }
  return components;
}

/**
 * The regular files to install, named relative to the folder holding the binary. cargo-dist puts everything
 * under one folder named after the archive; an archive with the binary at its top works as well.
 */
function releaseFiles(entries, binary) {
  const files = entries
    .filter((entry) => entry.type === 'file')
    .map((entry) => ({ ...entry, components: safeComponents(entry.name) }));
  const main = files.find(
    (file) => file.components.length <= 2 && file.components[file.components.length - 1] === binary,
  );
  if (main === undefined) throw new ShimError(`the release archive holds no \`${binary}\``);
  const prefix = main.components.slice(0, -1);
  return files
    .filter((file) => prefix.every((component, index) => file.components[index] === component))
    .map((file) => ({ path: file.components.slice(prefix.length).join('/'), mode: file.mode, data: file.data }))
    .filter((file) => file.path !== '');
}

/**
 * Writes `files` into a temporary sibling of `directory` and renames it into place, so that the tool cache never
 * holds half an installation: a step that finds `directory` finds all of it.
 */
function installAtomically(files, directory, binary) {
  const parent = path.dirname(directory);
  fs.mkdirSync(parent, { recursive: true });
  const staging = fs.mkdtempSync(path.join(parent, `.${path.basename(directory)}-`));
  try {
    for (const file of files) {
      const destination = path.join(staging, ...file.path.split('/'));
      fs.mkdirSync(path.dirname(destination), { recursive: true });
      fs.writeFileSync(destination, file.data, { mode: (file.mode & 0o777) || 0o644 });
    }
    // Archives made on Windows carry no executable bit; the binary needs one wherever it came from.
    fs.chmodSync(path.join(staging, binary), 0o755);
    if (fs.existsSync(directory) && !isFile(path.join(directory, binary))) {
      // A broken folder left by hand (ours never is, being renamed whole) would block the rename.
      fs.rmSync(directory, { recursive: true, force: true });
    }
    try {
      fs.renameSync(staging, directory);
    } catch (error) {
      // Another job on this machine installed the same version meanwhile: its copy is as good as ours.
      if (!isFile(path.join(directory, binary))) throw error;
      fs.rmSync(staging, { recursive: true, force: true });
    }
  } catch (error) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  // The marker @actions/tool-cache and Azure's tool lib look for, so that their `find` sees this version too.
  fs.writeFileSync(`${directory}.complete`, '');
}

// ---------------------------------------------------------------------------------------------------------------
// Azure: a Docker registry service connection becomes a temporary Docker config

/** The key of `registry` (a host or a URL) in a Docker config's `auths`, as `docker login` writes it. */
function dockerConfigKey(registry) {
  const host = registry
    .trim()
    .replace(/^[a-z][a-z0-9+.-]*:\/\//i, '')
    .replace(/\/.*$/, '')
    .toLowerCase();
  return DOCKER_HUB_HOSTS.includes(host) ? DOCKER_HUB_KEY : host;
}

/**
 * `existing` (a parsed Docker config, possibly empty) with `auth` for the registry at `key`. The other logins
 * stay, since a later stage may need them. A credential store named in the config would answer for every
 * registry before `auths`; an empty `credHelpers` entry sends this registry to `auths` (Docker's rule, which
 * imagepipe follows).
 */
function mergedDockerConfig(existing, key, auth) {
  const config = { ...existing, auths: { ...(existing.auths || {}), [key]: { auth } } };
  if (config.credsStore || config.credHelpers) {
    config.credHelpers = { ...(existing.credHelpers || {}), [key]: '' };
  }
  return config;
}

/**
 * The credentials of the service connection named by input `docker-registry-service-connection`, from the
 * `ENDPOINT_AUTH_<id>` JSON the agent sets, or undefined when the input is not given.
 * `mask` is called with the password as soon as it is known, before anything can print it.
 */
async function serviceConnectionCredentials(env, mask) {
  const id = getInput(env, 'docker-registry-service-connection');
  if (id === undefined) return undefined;
  const variable = `ENDPOINT_AUTH_${id}`;
  const raw = getVariableIgnoringCase(env, variable);
  const invalid = (problem) => new ShimError(`input 'docker-registry-service-connection': ${problem}`, 2);
  if (raw === undefined) throw invalid(`no service connection \`${id}\` is known to this job (${variable} is not set)`);
  let auth;
  try {
    auth = JSON.parse(raw);
  } catch {
    // The value holds the password: it is not quoted in the message.
    throw invalid(`${variable} is not JSON`);
  }
  const parameters = (auth && auth.parameters) || {};
  const { username, password, registry } = parameters;
  if (typeof password === 'string' && password !== '') await mask(password);
  const scheme = String((auth && auth.scheme) || '');
  if (scheme.toLowerCase() !== 'usernamepassword') {
    throw invalid(`service connection \`${id}\` uses the scheme \`${scheme}\`; only UsernamePassword is supported`);
  }
  for (const [name, value] of Object.entries({ username, password, registry })) {
    if (typeof value !== 'string' || value === '') throw invalid(`service connection \`${id}\` has no ${name}`);
  }
  // The Docker config's `auth` field is this encoding of the password: it must not show either.
  await mask(Buffer.from(`${username}:${password}`).toString('base64'));
  return { username, password, registry };
}

/** The Docker config in effect before this step: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
function currentDockerConfigDirectory(env) {
  return env.DOCKER_CONFIG || path.join(os.homedir(), '.docker');
}

function readDockerConfig(directory) {
  const file = path.join(directory, 'config.json');
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ShimError(`reading \`${file}\`: ${error.message}`);
  }
}

/**
 * Writes a Docker config holding `credentials` into a new private folder and returns that folder. The other
 * entries of the current config folder (cli-plugins, buildx, contexts) are linked into it, so that docker and
 * its plugins still find them once DOCKER_CONFIG points here.
 */
function writeTemporaryDockerConfig(env, credentials) {
  const current = currentDockerConfigDirectory(env);
  const auth = Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
  const config = mergedDockerConfig(readDockerConfig(current), dockerConfigKey(credentials.registry), auth);
  // The agent empties its temp folder after each job, so even a killed shim leaves no credentials behind.
  const temp = env.AGENT_TEMPDIRECTORY || env.RUNNER_TEMP || os.tmpdir();
  const directory = fs.mkdtempSync(path.join(temp, 'imagepipe-docker-'));
  try {
    fs.chmodSync(directory, 0o700);
    fs.writeFileSync(path.join(directory, 'config.json'), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    linkEntries(current, directory, 'config.json');
  } catch (error) {
    fs.rmSync(directory, { recursive: true, force: true });
    throw error;
  }
  return directory;
}

function linkEntries(from, to, except) {
  let names;
  try {
    names = fs.readdirSync(from);
  } catch {
    return;
  }
  for (const name of names) {
    if (name === except) continue;
    try {
      fs.symlinkSync(path.join(from, name), path.join(to, name), process.platform === 'win32' ? 'junction' : undefined);
    } catch (error) {
      note(`could not link \`${name}\` of the Docker config folder \`${from}\`: ${error.message}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Running the step

/** `imagepipe ci step [STAGE]`: the umbrella action and the Azure task leave the stage to the `stage` input. */
function stepArguments(stage) {
  return stage === undefined ? ['ci', 'step'] : ['ci', 'step', stage];
}

/**
 * Runs the binary with inherited stdio and resolves to its exit code; a binary killed by a signal counts as
 * failed (1). The runner's cancel signals are passed on, so that the shim outlives the binary and cleans up.
 */
function spawnBinary(binary, args, env, host) {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: 'inherit', env });
    const forward = (signal) => child.kill(signal);
    for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
    let settled = false;
    const settle = (finish) => {
      if (settled) return;
      settled = true;
      for (const signal of FORWARDED_SIGNALS) process.removeListener(signal, forward);
      finish();
    };
    child.on('error', (error) => settle(() => reject(new ShimError(`starting \`${binary}\`: ${error.message}`))));
    child.on('exit', (code, signal) => {
      settle(() => {
        if (signal === null) {
          resolve(code);
          return;
        }
        reportError(host, `\`${binary} ${args.join(' ')}\` was ended by ${signal}`).then(() => resolve(1));
      });
    });
  });
}

/**
 * The whole step, returning the exit code instead of exiting, so that tests can call it.
 * `env` is the runner's environment; `shimDirectory` holds manifest.json.
 */
async function runStep(stage, { env = process.env, shimDirectory = __dirname } = {}) {
  const host = detectHost(env);
  let dockerConfig;
  let code;
  try {
    // First, before anything is downloaded or started: the password must be masked before any line can hold it.
    const credentials = await serviceConnectionCredentials(env, async (secret) => {
      for (const line of maskLines(host, secret)) await emit(line);
    });
    let childEnv = env;
    if (credentials !== undefined) {
      dockerConfig = writeTemporaryDockerConfig(env, credentials);
      childEnv = { ...env, DOCKER_CONFIG: dockerConfig };
    }
    const binary = await findBinary(env, shimDirectory);
    code = await spawnBinary(binary, stepArguments(stage), childEnv, host);
  } catch (error) {
    await reportError(host, error.message);
    code = error instanceof ShimError ? error.exitCode : 1;
  } finally {
    if (dockerConfig !== undefined) fs.rmSync(dockerConfig, { recursive: true, force: true });
  }
  if (code !== 0 && host === 'azure') {
    // The agent fails a Node task on a non-zero exit as an "infrastructure" failure; this line gives the step its
    // result the way task-lib does, and it is what azure-pipelines-task-lib's MockTestRunner reads.
    await emit(`##vso[task.complete result=Failed;]the imagepipe step failed with exit code ${code}`);
  }
  return code;
}

/** The entry point of every action and of the Azure task: runs the step and exits with its code. */
function run(stage) {
  return runStep(stage).then((code) => {
    process.exitCode = code;
    return code;
  });
}

module.exports = {
  run,
  runStep,
  ShimError,
  detectHost,
  errorLine,
  maskLines,
  escapeGithubData,
  escapeAzureData,
  normaliseInputName,
  getInput,
  releaseTarget,
  binaryName,
  toolCacheRoot,
  toolCacheDirectory,
  readManifest,
  readTar,
  releaseFiles,
  installAtomically,
  dockerConfigKey,
  mergedDockerConfig,
  serviceConnectionCredentials,
  stepArguments,
};

// The root action.yml and the Azure task start this file itself; dist/<stage>/main.cjs requires it and calls run.
if (require.main === module) run(undefined);
