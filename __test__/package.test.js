'use strict';

// The published package: `npm pack`, then `npm install ./velocy-*.tgz` in an empty project
// (which builds the engine from the packed sources with cargo), then `require('velocy')` there
// serves a real client. The build shares this repository's cargo target directory, so compiled
// dependencies are reused and only the velocy crate itself is compiled.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { platformTriple } = require('../scripts/platform');
const { HOST, connect, nextMessage, once, withTimeout } = require('./helpers');

const ROOT = path.join(__dirname, '..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
// The first build in a fresh target directory compiles every dependency.
const BUILD_TIMEOUT = 10 * 60 * 1000;

/** The environment for nested npm runs: without the npm_* variables of an outer `npm test`. */
function cleanEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_/i.test(k)) env[k] = v;
  }
  return { ...env, ...extra };
}

function run(cmd, args, options) {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { maxBuffer: 64 * 1024 * 1024, shell: process.platform === 'win32', ...options },
      (err, stdout, stderr) => {
        if (err) {
          err.message += `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
          reject(err);
        } else {
          resolve({ stdout, stderr });
        }
      }
    );
  });
}

/** The regular files of a .tgz as a Map of path -> Buffer. */
function readTarball(file) {
  const tar = zlib.gunzipSync(fs.readFileSync(file));
  const files = new Map();
  let off = 0;
  while (off + 512 <= tar.length) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const field = (start, len) => header.subarray(start, start + len).toString('latin1').replace(/\0.*$/s, '');
    const name = field(0, 100);
    const prefix = field(345, 155);
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = field(156, 1);
    const full = prefix ? `${prefix}/${name}` : name;
    if (type === '0' || type === '') files.set(full, tar.subarray(off + 512, off + 512 + size));
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

describe('npm package', () => {
  let tmp;
  let tarball;
  let project;

  before(
    async () => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'velocy-pack-'));
      const env = cleanEnv({ CARGO_TARGET_DIR: path.join(ROOT, 'target') });
      const { stdout } = await run(NPM, ['pack', '--json', '--pack-destination', tmp], { cwd: ROOT, env });
      const [info] = JSON.parse(stdout);
      tarball = path.join(tmp, info.filename);
      assert.ok(fs.existsSync(tarball), `npm pack did not write ${tarball}`);

      project = path.join(tmp, 'app');
      fs.mkdirSync(project);
      fs.writeFileSync(
        path.join(project, 'package.json'),
        JSON.stringify({ name: 'app', version: '1.0.0', private: true }, null, 2)
      );
      await run(
        NPM,
        ['install', tarball, '--no-audit', '--no-fund', '--no-package-lock', '--foreground-scripts'],
        { cwd: project, env, timeout: BUILD_TIMEOUT }
      );
    },
    { timeout: BUILD_TIMEOUT + 60 * 1000 }
  );

  after(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('the packed package.json has no runtime dependencies', () => {
    const files = readTarball(tarball);
    const pkg = JSON.parse(files.get('package/package.json').toString());
    assert.equal(pkg.name, 'velocy');
    assert.deepEqual(Object.keys(pkg.dependencies || {}), [], `dependencies: ${JSON.stringify(pkg.dependencies)}`);
  });

  test('the tarball has what the install-time build needs, and no build output', () => {
    const names = [...readTarball(tarball).keys()];
    for (const needed of [
      'package/package.json',
      'package/index.js',
      'package/Cargo.toml',
      'package/Cargo.lock',
      'package/build.rs',
      'package/src/lib.rs',
      'package/scripts/build.js',
      'package/scripts/platform.js',
    ]) {
      assert.ok(names.includes(needed), `${needed} is missing from the tarball`);
    }
    assert.ok(names.some((n) => n.startsWith('package/lib/')), 'lib/ is missing from the tarball');
    const unwanted = names.filter((n) => /^package\/(target|node_modules|__test__)\//.test(n) || n.endsWith('.node'));
    assert.deepEqual(unwanted, []);
  });

  test('require("velocy") in the new project loads the engine it built and serves a client', async (t) => {
    const installed = path.join(project, 'node_modules', 'velocy');
    assert.ok(fs.existsSync(path.join(installed, `velocy.${platformTriple()}.node`)), 'the install built no engine');

    const script = `
      const { Router, createServer } = require('velocy');
      process.stdout.write('resolved ' + require.resolve('velocy') + '\\n');
      const router = new Router();
      const server = createServer(router);
      router.ws('/echo', (ws) => {
        ws.on('message', (data) => ws.send('echo:' + data));
        ws.on('close', () => server.close());
      });
      server.listen(0, ${JSON.stringify(HOST)}, () => process.stdout.write('port ' + server.address().port + '\\n'));
    `;
    const child = spawn(process.execPath, ['-e', script], { cwd: project, env: cleanEnv({}) });
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => (stderr += d));
    const exited = once(child, 'exit', 15000);
    const portLine = withTimeout(
      new Promise((resolve, reject) => {
        child.stdout.on('data', (d) => {
          stdout += d;
          const m = /^port (\d+)$/m.exec(stdout);
          if (m) resolve(Number(m[1]));
        });
        child.on('exit', () => reject(new Error(`the child exited early; stdout: ${stdout}; stderr: ${stderr}`)));
      }),
      15000,
      'the server in the new project to listen'
    );
    const port = await portLine;
    const resolved = /^resolved (.*)$/m.exec(stdout)[1];
    assert.equal(path.relative(installed, resolved).startsWith('..'), false, `velocy resolved to ${resolved}`);

    const client = await connect(`ws://${HOST}:${port}/echo`, t);
    client.send('hi');
    assert.equal((await nextMessage(client)).data.toString(), 'echo:hi');
    client.close();
    const [code, signal] = await exited;
    assert.equal(signal, null);
    assert.equal(code, 0, stderr);
  });
});
