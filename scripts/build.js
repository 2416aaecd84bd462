#!/usr/bin/env node
'use strict';

// Builds the native engine with cargo (release profile) and copies it next to index.js as
// velocy.<triple>.node. Runs on `npm install`; needs only cargo and Node's own modules.
// Skipped when a prebuilt per-platform package is installed.

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { platformTriple } = require('./platform');

const root = path.join(__dirname, '..');
const triple = platformTriple();
const args = process.argv.slice(2);
const debug = args.includes('--debug');

function prebuiltInstalled() {
  try {
    require.resolve(`velocy-${triple}`, { paths: [root] });
    return true;
  } catch {
    return false;
  }
}

if (!args.includes('--force') && !fs.existsSync(path.join(root, 'Cargo.toml'))) {
  process.exit(0);
}
if (!args.includes('--force') && prebuiltInstalled()) {
  console.log(`velocy: using prebuilt velocy-${triple}`);
  process.exit(0);
}

const cargo = process.env.CARGO || 'cargo';
const cargoArgs = ['build', '--lib', '--manifest-path', path.join(root, 'Cargo.toml')];
if (!debug) cargoArgs.push('--release');
console.log(`velocy: building the native engine (${cargo} ${cargoArgs.join(' ')})`);
const res = spawnSync(cargo, cargoArgs, { stdio: 'inherit' });
if (res.error) {
  console.error(`velocy: could not run cargo (${res.error.message}). Install Rust from your package manager or rustup.`);
  process.exit(1);
}
if (res.status !== 0) process.exit(res.status || 1);

const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(process.env.CARGO_TARGET_DIR)
  : path.join(root, 'target');
const libName = {
  darwin: 'libvelocy.dylib',
  win32: 'velocy.dll',
}[process.platform] || 'libvelocy.so';
const built = path.join(targetDir, debug ? 'debug' : 'release', libName);
const dest = path.join(root, `velocy.${triple}.node`);
// Copy to a temporary name and rename, so a running process never loads a half-written file.
fs.copyFileSync(built, dest + '.tmp');
fs.renameSync(dest + '.tmp', dest);
console.log(`velocy: built ${path.relative(root, dest)}`);
