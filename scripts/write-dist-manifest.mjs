#!/usr/bin/env node
// Writes dist/manifest.json, the file the Node shim (dist/index.cjs) pins its release download with, from the
// artifacts of a cargo-dist release: every `imagepipe-<target>.tar.gz` with its `.sha256` file beside it.
//
//   node scripts/write-dist-manifest.mjs VERSION ARTIFACTS_DIR [--output FILE]... [--download-base URL]
//
// VERSION is the release's version (`0.2.0`, or the tag `v0.2.0`). Each checksum file must name its archive,
// in cargo-dist's format `<hex>  <name>` (or `<hex> *<name>`, the binary-mode form of sha256sum), and must match
// the archive's own SHA-256, computed here: a manifest that pins a wrong sum would break every download. Each
// target the shim knows must have an archive. The output (default dist/manifest.json; repeat --output to write
// more copies, such as the Azure task's) is replaced atomically, and its `downloadBase` is kept unless
// --download-base is given. Node built-ins only.

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_OUTPUT = path.join(REPO_ROOT, 'dist', 'manifest.json');
const DEFAULT_DOWNLOAD_BASE = 'https://github.com/imagepipe/imagepipe/releases/download';
const APP = 'imagepipe';
/** The targets the shim maps a runner to (RELEASE_TARGETS in dist/index.cjs): a release must have each. */
export const REQUIRED_TARGETS = [
  'x86_64-unknown-linux-musl',
  'aarch64-unknown-linux-musl',
  'x86_64-apple-darwin',
  'aarch64-apple-darwin',
  'x86_64-pc-windows-msvc',
];

/** A refusal with its exit code: 2 for a wrong invocation or wrong artifacts, as the CLI's codes go. */
export class UsageError extends Error {
  constructor(message, exitCode = 2) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** The lower-case hex SHA-256 in a checksum file's text, which must name `archive`. */
export function parseChecksum(text, archive) {
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== '');
  const match = lines.length === 1 ? /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(lines[0].trim()) : null;
  if (match === null) {
    throw new UsageError(`the checksum file of \`${archive}\` is not one line \`<sha256>  <name>\``);
  }
  if (path.basename(match[2]) !== archive) {
    throw new UsageError(`the checksum file of \`${archive}\` names \`${match[2]}\``);
  }
  return match[1].toLowerCase();
}

/** `0.2.0` from `0.2.0` or the tag `v0.2.0`. */
export function releaseVersion(text) {
  const version = String(text ?? '').replace(/^v/, '');
  if (!/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/.test(version)) {
    throw new UsageError(`\`${text}\` is not a release version such as 0.2.0`);
  }
  return version;
}

/** `{target: {file, sha256}}` for every `imagepipe-<target>.tar.gz` in `directory`, each checked. */
export function collectArchives(directory) {
  let names;
  try {
    names = readdirSync(directory);
  } catch (error) {
    throw new UsageError(`reading the artifacts folder \`${directory}\`: ${error.message}`);
  }
  const pattern = new RegExp(`^${APP}-(.+)\\.tar\\.gz$`);
  const archives = {};
  for (const file of names.sort()) {
    const target = pattern.exec(file)?.[1];
    if (target === undefined) continue; // the source tarball, installers, other checksum files
    let checksumText;
    try {
      checksumText = readFileSync(path.join(directory, `${file}.sha256`), 'utf8');
    } catch {
      throw new UsageError(`\`${file}\` has no \`${file}.sha256\` beside it`);
    }
    const pinned = parseChecksum(checksumText, file);
    const actual = createHash('sha256').update(readFileSync(path.join(directory, file))).digest('hex');
    if (actual !== pinned) {
      throw new UsageError(`\`${file}\` has sha256 ${actual}, but \`${file}.sha256\` says ${pinned}`);
    }
    archives[target] = { file, sha256: pinned };
  }
  const missing = REQUIRED_TARGETS.filter((target) => !(target in archives));
  if (missing.length > 0) {
    throw new UsageError(`\`${directory}\` has no archive for ${missing.map((target) => `\`${target}\``).join(', ')}`);
  }
  return archives;
}

/** The manifest's text: version, download base, archives by target; stable order, a final newline. */
export function manifestText(version, downloadBase, archives) {
  const sorted = Object.fromEntries(Object.keys(archives).sort().map((target) => [target, archives[target]]));
  return `${JSON.stringify({ version, downloadBase, archives: sorted }, null, 2)}\n`;
}

/** Replaces `file` with `text` through a temporary sibling, so that no reader sees half of it. */
export function writeAtomically(file, text) {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    writeFileSync(temporary, text);
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw new UsageError(`writing \`${file}\`: ${error.message}`, 1);
  }
}

function existingDownloadBase(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8')).downloadBase;
  } catch {
    return undefined;
  }
}

function parseArguments(argv) {
  const positional = [];
  const outputs = [];
  let downloadBase;
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index];
    if (argument === '--output' || argument === '--download-base') {
      const value = argv[index + 1];
      if (value === undefined) throw new UsageError(`${argument} needs a value`);
      index += 1;
      if (argument === '--output') outputs.push(path.resolve(value));
      else downloadBase = value.replace(/\/+$/, '');
    } else if (argument.startsWith('-')) {
      throw new UsageError(`unknown option \`${argument}\``);
    } else {
      positional.push(argument);
    }
  }
  if (positional.length !== 2) {
    throw new UsageError('usage: write-dist-manifest.mjs VERSION ARTIFACTS_DIR [--output FILE]... [--download-base URL]');
  }
  return { version: positional[0], directory: positional[1], outputs: outputs.length ? outputs : [DEFAULT_OUTPUT], downloadBase };
}

export function main(argv) {
  const { version, directory, outputs, downloadBase } = parseArguments(argv);
  const release = releaseVersion(version);
  const archives = collectArchives(directory);
  for (const output of outputs) {
    const base = downloadBase ?? existingDownloadBase(output) ?? DEFAULT_DOWNLOAD_BASE;
    writeAtomically(output, manifestText(release, base, archives));
    console.log(`wrote ${output}: imagepipe ${release}, ${Object.keys(archives).length} archives`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  try {
    main(process.argv.slice(2));
  } catch (error) {
    console.error(`write-dist-manifest: error: ${error.message}`);
    process.exitCode = error instanceof UsageError ? error.exitCode : 1;
  }
}
