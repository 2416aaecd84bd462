'use strict';

// Connections take part in global and route broadcasts only once their handlers have run, so
// a client held by a pending authentication middleware receives nothing it was not sent
// directly. Also: ws.rooms follows the core and cannot be edited around it.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Router } = require('..');
const { listen, connectWithInbox, named } = require('./helpers');

test('a connection whose middleware is pending gets no global or route broadcasts', async (t) => {
  const router = new Router();
  let admit;
  const gate = new Promise((r) => (admit = r));
  const conns = named();
  router.ws(
    '/auth',
    async (ws, req, next) => {
      if (req.query.name === 'pending') await gate;
      next();
    },
    conns.handler
  );
  const { url } = await listen(router, t);
  const a = await connectWithInbox(`${url}/auth?name=a`, t);
  await conns.get('a');
  const p = await connectWithInbox(`${url}/auth?name=pending`, t);
  router.broadcast('to-everyone');
  router.to('/auth').broadcast('to-route');
  assert.deepEqual(await a.got.texts(2), ['to-everyone', 'to-route']);
  admit();
  await conns.get('pending');
  router.broadcast('after');
  assert.deepEqual(await p.got.texts(1), ['after']);
  assert.deepEqual(await a.got.texts(1), ['after']);
  assert.equal(p.got.pending(), 0);
  assert.deepEqual(router.to('/auth').getConnections().length, 2);
});

test('ws.rooms is read-only and inRoom checks its argument', async (t) => {
  const router = new Router();
  const conns = named();
  router.ws('/r', conns.handler);
  const { url } = await listen(router, t);
  await connectWithInbox(`${url}/r?name=x`, t);
  const { ws } = await conns.get('x');
  assert.equal(ws.join('lobby'), true);
  assert.throws(() => ws.rooms.delete('lobby'), { name: 'TypeError', code: 'ERR_INVALID_STATE' });
  assert.throws(() => ws.rooms.add('other'), { name: 'TypeError' });
  assert.throws(() => ws.rooms.clear(), { name: 'TypeError' });
  assert.ok(ws.rooms instanceof Set);
  assert.deepEqual([...ws.rooms], ['lobby']);
  assert.equal(router.room('lobby').size(), 1);
  assert.throws(() => ws.inRoom(123), { name: 'TypeError' });
  assert.throws(() => ws.inRoom(''), { name: 'TypeError' });
  assert.equal(ws.leave('lobby'), true);
  assert.equal(ws.rooms.size, 0);
});

test('except accepts a connection object; stats count a room shared by two servers once', async (t) => {
  const router = new Router();
  const conns = named();
  router.ws('/r', (ws, req) => {
    ws.join('shared');
    conns.handler(ws, req);
  });
  const one = await listen(router, t);
  const two = await listen(router, t);
  const a = await connectWithInbox(`${one.url}/r?name=a`, t);
  const b = await connectWithInbox(`${two.url}/r?name=b`, t);
  const { ws: wsA } = await conns.get('a');
  await conns.get('b');
  assert.equal(router.getWebSocketRouter().getStats().rooms, 1);
  assert.equal(router.getWebSocketRouter().getStats().connections, 2);
  router.room('shared').broadcast('hi', { except: wsA });
  assert.deepEqual(await b.got.texts(1), ['hi']);
  router.room('shared').broadcast('all');
  assert.deepEqual(await a.got.texts(1), ['all']);
  assert.throws(() => router.room('shared').broadcast('x', { except: 42 }), { name: 'TypeError' });
});

test("paths that differ only by empty segments are one route: handlers add up", async (t) => {
  const router = new Router();
  const ran = [];
  router.ws('/a/b', (ws) => ran.push('first'));
  router.ws('/a//b/', (ws) => {
    ran.push('second');
    ws.send('done');
  });
  const { url } = await listen(router, t);
  const { got } = await connectWithInbox(`${url}/a/b`, t);
  assert.deepEqual(await got.texts(1), ['done']);
  assert.deepEqual(ran, ['first', 'second']);
  assert.equal(router.to('/a/b/').getConnections().length, 1);
  assert.throws(() => router.ws('/a/\ud800', () => {}), { name: 'TypeError', message: /"path"/ });
});
