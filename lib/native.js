'use strict';

// Loads the compiled engine: a prebuilt per-platform package when one is installed,
// otherwise the addon built from source at install time (scripts/build.js).

const path = require('node:path');
const { platformTriple } = require('../scripts/platform');

function load() {
  const triple = platformTriple();
  const candidates = [
    `velocy-${triple}`,
    path.join(__dirname, '..', `velocy.${triple}.node`),
  ];
  const errors = [];
  for (const candidate of candidates) {
    try {
      return require(candidate);
    } catch (err) {
      if (err.code !== 'MODULE_NOT_FOUND') throw err;
      errors.push(`${candidate}: ${err.message.split('\n')[0]}`);
    }
  }
  const err = new Error(
    `velocy: no native engine for ${triple}. Reinstall with Rust available (cargo) so it can be built, ` +
      `or install the prebuilt package velocy-${triple}.\n  ${errors.join('\n  ')}`
  );
  err.code = 'ERR_VELOCY_NATIVE_MISSING';
  throw err;
}

module.exports = load();
