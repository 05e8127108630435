// The web client against a busy gateway: real cluster processes (cluster.js), real
// Chromium. The gateway lets one WebSocket sign-in use storage at a time and none wait
// (`--sign-ins-in-flight 1 --sign-in-queue 0`); storage freezes while one sign-in holds
// that turn, so the page's own sign-in is refused with `unavailable` and a
// `retry_after_ms` (docs/protocol.md, section 5). The page says the server is busy, waits
// as told, and gets in once storage answers again.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Cluster } from './cluster.js';
import { Person, Proxy, launchBrowser } from './harness.js';

const WAIT = { timeout: 15_000 };

describe('the web client and a busy server', () => {
  let cluster;
  let proxy; // the browser's way to the gateway, which the test cuts to make it sign in again
  let browser;

  before(async () => {
    cluster = new Cluster('busy');
    cluster.addUser('alice', 'Alice Martin', 'HQ');
    cluster.addUser('holder', 'Turn holder', 'HQ');
    await cluster.start({ gatewayArgs: ['--sign-ins-in-flight', '1', '--sign-in-queue', '0'] });
    proxy = new Proxy(cluster);
    await proxy.start();
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    if (proxy) await proxy.cut().catch(() => {});
    if (cluster) await cluster.cleanup();
  });

  test('a refused sign-in shows "server busy", waits as told and gets in once admitted', async () => {
    const alice = await Person.open(browser, proxy, 'alice');
    await alice.signIn();
    const holderToken = await cluster.token('holder');

    // Storage freezes (an unresponsive pod). Another sign-in takes the gateway's only turn
    // and waits on storage; a second one beside it is refused: the turn is taken.
    cluster.storage.signal('SIGSTOP');
    const holder = await (await browser.newContext({ baseURL: cluster.url })).newPage();
    await holder.goto('/');
    const refused = await holder.evaluate((token) => new Promise((resolve) => {
      window.held = [];
      for (let i = 0; i < 2; i++) {
        const ws = new WebSocket(`ws://${location.host}/ws`);
        window.held.push(ws);
        ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token }));
        ws.onmessage = (event) => {
          const frame = JSON.parse(event.data);
          if (frame.type === 'error') resolve(frame);
        };
      }
    }), holderToken);
    assert.equal(refused.code, 'unavailable', JSON.stringify(refused));

    // Alice's link drops; her page signs in again and is refused: it shows a status, not
    // an error, with the time to the next attempt and no "Retry now".
    await proxy.cut();
    await proxy.restore();
    const busy = alice.page.locator('#connection-banner.busy', { hasText: /The server is busy\. Retrying in \d+ s…/ });
    await busy.waitFor(WAIT);
    assert.equal(await busy.getByRole('button').count(), 0);
    await alice.shot('busy');

    // Storage answers again: the held sign-in finishes and gives the turn back; Alice's
    // page gets in by itself, no sooner than the server asked.
    cluster.storage.signal('SIGCONT');
    await alice.waitOnline();
    const told = alice.sockets.find((s) => s.error === 'unavailable');
    assert.ok(told, 'the gateway refused the sign-in with unavailable and retry_after_ms');
    assert.ok(told.retryAfterMs >= 1000, `retry_after_ms ${told.retryAfterMs}`);
    const next = alice.sockets[alice.sockets.indexOf(told) + 1];
    assert.ok(next.openedAt - told.closedAt >= told.retryAfterMs - 250,
      `reconnected ${next.openedAt - told.closedAt} ms after the refusal; asked to wait ${told.retryAfterMs} ms`);

    // Signed in for real: a message goes through.
    await alice.page.getByLabel('Search people to start a chat').fill('holder');
    await alice.page.getByRole('button', { name: 'Chat with Turn holder' }).click();
    await alice.page.locator('#chat-name', { hasText: 'Turn holder' }).waitFor(WAIT);
    await alice.send('in at last');
    await alice.messages('in at last').waitFor(WAIT);
    await alice.page.locator('.message.pending').waitFor({ state: 'detached', ...WAIT });
    assert.deepEqual(alice.errors, []);
  });
});
