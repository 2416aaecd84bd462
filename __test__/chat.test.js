'use strict';

// The documented "Complete Chat Application" (docs/WEBSOCKET.md), run unchanged as a child
// process from examples/chat.js, where `require('velocy')` resolves to this package through
// its package.json "exports" self-reference. It listens on port 3000, as written.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');
const { spawn } = require('node:child_process');
const { connectWithInbox, nextClose, withTimeout } = require('./helpers');

const ROOT = path.join(__dirname, '..');
const CHAT = path.join(ROOT, 'examples', 'chat.js');
// CI keeps the shared docs beside the repository.
const DOC = path.join(ROOT, '..', 'shared', 'docs', 'WEBSOCKET.md');
const URL = 'ws://127.0.0.1:3000/ws/chat';

/** The code block under "## Example: Complete Chat Application", with its final newline. */
function documentedChat(markdown) {
  const heading = markdown.indexOf('\n## Example: Complete Chat Application\n');
  assert.notEqual(heading, -1, 'the doc has the chat example section');
  const fence = '```javascript\n';
  const start = markdown.indexOf(fence, heading);
  assert.notEqual(start, -1, 'the section has a javascript block');
  const end = markdown.indexOf('\n```', start + fence.length);
  assert.notEqual(end, -1, 'the block is closed');
  const next = markdown.indexOf('\n## ', heading + 1);
  assert.ok(next === -1 || start < next, 'the block belongs to the section');
  return markdown.slice(start + fence.length, end + 1);
}

test("examples/chat.js is the documented example and require('velocy') resolves to this package", (t) => {
  const source = fs.readFileSync(CHAT, 'utf8');
  assert.match(source, /require\('velocy'\)/);
  const resolved = createRequire(CHAT).resolve('velocy');
  assert.equal(resolved, path.join(ROOT, 'index.js'), 'self-reference through package.json "exports"');
  assert.equal(createRequire(CHAT)('velocy'), require('..'));
  if (fs.existsSync(DOC)) {
    assert.equal(source, documentedChat(fs.readFileSync(DOC, 'utf8')), 'examples/chat.js differs from the doc');
  } else {
    t.diagnostic(`${DOC} not found: compared with nothing`);
  }
});

/** Starts examples/chat.js and resolves once it says it is running; rejects if it exits first. */
function startChat(t) {
  const child = spawn(process.execPath, [CHAT], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '', exit: null };
  child.stdout.setEncoding('utf8').on('data', (s) => (out.stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s) => (out.stderr += s));
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      out.exit = { code, signal };
      resolve(out.exit);
    });
  });
  t.after(() => {
    if (out.exit === null) child.kill('SIGKILL');
  });
  const running = new Promise((resolve, reject) => {
    child.stdout.on('data', () => {
      if (out.stdout.includes('Chat server running')) resolve();
    });
    exited.then((e) => {
      reject(new Error(`chat.js exited (${e.code ?? e.signal}) before running; stderr: ${out.stderr}`));
    });
    child.on('error', reject);
  });
  return { child, out, exited, running: withTimeout(running, 10000, 'chat.js to print "Chat server running"') };
}

/** Parses the next message of a client as JSON. */
async function nextJson(peer) {
  const [text] = await peer.got.texts(1);
  return JSON.parse(text);
}

/** A chat message as the server relays it, with a current timestamp. */
function assertChat(msg, from, text) {
  assert.equal(typeof msg.timestamp, 'number');
  assert.ok(Math.abs(Date.now() - msg.timestamp) < 60000, 'timestamp is now');
  assert.deepEqual({ ...msg, timestamp: 0 }, { type: 'chat', from, text, timestamp: 0 });
}

function assertPresence(msg, type, username) {
  assert.equal(typeof msg.timestamp, 'number');
  assert.deepEqual({ ...msg, timestamp: 0 }, { type, username, timestamp: 0 });
}

test('the documented chat application runs unchanged and behaves as described', async (t) => {
  const chat = startChat(t);
  await chat.running;
  assert.match(chat.out.stdout, /^Chat server running on ws:\/\/localhost:3000\/ws\/chat\n/);

  const join = async (username) => {
    const { client, got } = await connectWithInbox(`${URL}?username=${encodeURIComponent(username)}`, t);
    return { name: username, client, got, send: (msg) => client.send(JSON.stringify(msg)) };
  };

  // user-joined is announced to the others in the lobby, not to the newcomer.
  const alice = await join('alice');
  const bob = await join('bob');
  assertPresence(await nextJson(alice), 'user-joined', 'bob');
  const carol = await join('carol');
  assertPresence(await nextJson(alice), 'user-joined', 'carol');
  assertPresence(await nextJson(bob), 'user-joined', 'carol');

  // Lobby chat reaches everyone in the lobby, the sender included.
  alice.send({ type: 'chat', text: 'hello lobby' });
  for (const p of [alice, bob, carol]) assertChat(await nextJson(p), 'alice', 'hello lobby');

  // join-room is acknowledged, and chat to that room reaches only its members.
  bob.send({ type: 'join-room', room: 'games' });
  assert.deepEqual(await nextJson(bob), { type: 'joined-room', room: 'games' });
  alice.send({ type: 'chat', room: 'games', text: 'anyone for chess?' });
  assertChat(await nextJson(bob), 'alice', 'anyone for chess?');
  carol.send({ type: 'chat', text: 'barrier 1' });
  for (const p of [alice, bob, carol]) assertChat(await nextJson(p), 'carol', 'barrier 1');

  // leave-room: room chat no longer reaches bob.
  bob.send({ type: 'leave-room', room: 'games' });
  bob.send({ type: 'chat', text: 'left games' });
  for (const p of [alice, bob, carol]) assertChat(await nextJson(p), 'bob', 'left games');
  alice.send({ type: 'chat', room: 'games', text: 'nobody hears this' });
  alice.send({ type: 'chat', text: 'barrier 2' });
  for (const p of [alice, bob, carol]) assertChat(await nextJson(p), 'alice', 'barrier 2');

  // private-message goes to the named user only (through wsServer.sendTo); an unknown
  // recipient is ignored.
  alice.send({ type: 'private-message', to: 'nobody', text: 'lost' });
  alice.send({ type: 'private-message', to: 'bob', text: 'psst' });
  assert.deepEqual(await nextJson(bob), { type: 'private-message', from: 'alice', text: 'psst' });
  carol.send({ type: 'chat', text: 'barrier 3' });
  for (const p of [alice, bob, carol]) assertChat(await nextJson(p), 'carol', 'barrier 3');

  // Without a username the user is called User<id>.
  const anon = await join('');
  const announced = await nextJson(alice);
  assert.equal(announced.type, 'user-joined');
  assert.match(announced.username, /^User[0-9a-z]+$/);
  for (const p of [bob, carol]) assert.deepEqual(await nextJson(p), announced);

  // user-left on disconnect, whether the client closes or just goes away.
  carol.client.close();
  await nextClose(carol.client);
  for (const p of [alice, bob, anon]) assertPresence(await nextJson(p), 'user-left', 'carol');
  bob.client.terminate();
  for (const p of [alice, anon]) assertPresence(await nextJson(p), 'user-left', 'bob');
  // Bob is gone from the user list: a private message to him goes nowhere.
  alice.send({ type: 'private-message', to: 'bob', text: 'are you there?' });
  alice.send({ type: 'chat', text: 'barrier 4' });
  for (const p of [alice, anon]) assertChat(await nextJson(p), 'alice', 'barrier 4');

  assert.equal(chat.out.exit, null, `chat.js is still running; stderr: ${chat.out.stderr}`);
  assert.equal(chat.out.stderr, '', 'chat.js wrote nothing to stderr');
  chat.child.kill('SIGTERM');
  assert.deepEqual(await withTimeout(chat.exited, 5000, 'chat.js to exit'), { code: null, signal: 'SIGTERM' });
});
