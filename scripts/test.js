#!/usr/bin/env node
'use strict';

// `npm test`: the JS suites (node:test over __test__/, against the built addon) and then the
// Rust unit tests. Builds the addon first if it is missing.

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { platformTriple } = require('./platform');

const root = path.join(__dirname, '..');

function run(cmd, args, opts = {}) {
  console.log(`\n$ ${cmd} ${args.join(' ')}`);
  const res = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (res.error) throw res.error;
  return res.status;
}

if (!fs.existsSync(path.join(root, `velocy.${platformTriple()}.node`))) {
  if (run(process.execPath, ['scripts/build.js', '--force']) !== 0) process.exit(1);
}

const only = process.argv.slice(2);
const files = only.length
  ? only
  : fs
      .readdirSync(path.join(root, '__test__'))
      .filter((f) => f.endsWith('.test.js'))
      .sort()
      .map((f) => path.join('__test__', f));

let failed = run(process.execPath, ['--test', '--test-reporter=spec', ...files]) !== 0;
if (!only.length) {
  failed = run('cargo', ['test', '--release', '--lib']) !== 0 || failed;
  // Bounded fuzzing of the frame reader and the handshake parser (10 s per target), plus
  // the seed corpus and the regressions it found. See fuzz/README.md for open-ended runs.
  failed = run('cargo', ['test', '--release', '--manifest-path', 'fuzz/Cargo.toml']) !== 0 || failed;
}
process.exit(failed ? 1 : 0);
