// The web client end to end: real server, real Chromium, three people.
// Steps share one server and browser and run in order; each reads as its scenario.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Person, Proxy, Server, launchBrowser } from './harness.js';

const WAIT = { timeout: 15_000 };

describe('the web client', () => {
  let server;
  let proxy; // the browsers' way to the server, which a test can cut
  let browser;
  let alice;
  let bob;
  let carol;

  before(async () => {
    server = new Server();
    server.addUser('alice', 'Alice Martin', 'HQ/Building 2/Floor 3');
    server.addUser('bob', 'Bob Nguyen', 'HQ/Building 1/Floor 1');
    server.addUser('carol', 'Carol Diaz', 'Remote/Lisbon');
    server.addUser('monitor', 'Queue monitor', 'IT/Operations', { admin: true });
    await server.start();
    proxy = new Proxy(server);
    await proxy.start();
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    if (proxy) await proxy.cut().catch(() => {});
    if (server) await server.cleanup();
  });

  test('serves the page with a strict content security policy', async () => {
    const response = await fetch(`${server.url}/`);
    assert.equal(response.status, 200);
    const csp = response.headers.get('content-security-policy');
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    const html = await response.text();
    assert.doesNotMatch(html, /<script>(?!<\/script>)|<script(?![^>]*src=)[^>]*>/);
  });

  test('two people sign in and chat both ways', async () => {
    alice = await Person.open(browser, proxy, 'alice');
    await alice.page.getByLabel('Username').waitFor();
    await alice.shot('login');
    await alice.signIn();
    bob = await Person.open(browser, proxy, 'bob');
    await bob.signIn();

    // Alice finds Bob in the directory by his building and opens a chat.
    await alice.page.getByLabel('Search people to start a chat').fill('building');
    await alice.page.getByRole('button', { name: 'Chat with Bob Nguyen' }).waitFor(WAIT);
    await alice.shot('directory');
    await alice.page.getByRole('button', { name: 'Chat with Bob Nguyen' }).click();
    await alice.page.locator('#chat-name', { hasText: 'Bob Nguyen' }).waitFor();
    await alice.send('Hi Bob, lunch at 12?');
    await alice.messages('Hi Bob, lunch at 12?').waitFor(WAIT);

    // Bob sees the conversation with one unread message and its preview.
    const fromAlice = bob.conversation('Alice Martin');
    await fromAlice.locator('.badge', { hasText: '1' }).waitFor(WAIT);
    await fromAlice.locator('.conversation-preview', { hasText: 'Hi Bob, lunch at 12?' }).waitFor();
    await bob.open('Alice Martin');
    await bob.messages('Hi Bob, lunch at 12?').waitFor(WAIT);
    await fromAlice.locator('.badge').waitFor({ state: 'detached' });

    // Alice sees that Bob read it; Bob's typing shows on her side; his answer arrives.
    await alice.page.locator('.receipt.read', { hasText: 'Read' }).waitFor(WAIT);
    await bob.page.getByLabel('Message', { exact: true }).pressSequentially('Sure');
    await alice.page.locator('#typing', { hasText: 'Bob is typing' }).waitFor(WAIT);
    await bob.page.getByLabel('Message', { exact: true }).press('Shift+Enter');
    await bob.page.getByLabel('Message', { exact: true }).pressSequentially('see you at **12** in `Floor 3`');
    await bob.page.getByLabel('Message', { exact: true }).press('Enter');
    const answer = alice.page.locator('#message-list .message .body', { hasText: 'see you at' });
    await answer.waitFor(WAIT);
    assert.equal(await answer.innerText(), 'Sure\nsee you at 12 in Floor 3');
    assert.equal(await answer.locator('strong').innerText(), '12');
    assert.equal(await answer.locator('code').innerText(), 'Floor 3');
    await alice.page.locator('#typing', { hasText: 'typing' }).waitFor({ state: 'detached' }).catch(() => {});
    await alice.send('Agenda: https://intranet.example/lunch?day=today.');
    const link = bob.page.locator('#message-list a[href="https://intranet.example/lunch?day=today"]');
    await link.waitFor(WAIT);
    assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
    await alice.shot('conversation');
  });

  test('a message with HTML in it is shown as text and runs nothing', async () => {
    const nasty = '<img src=x onerror=alert(1)> <script>alert(2)</script>';
    await alice.send(nasty);
    await bob.messages(nasty).waitFor(WAIT);
    await alice.messages(nasty).waitFor(WAIT);
    for (const person of [alice, bob]) {
      assert.equal(await person.page.locator('#message-list img').count(), 0);
      assert.equal(await person.page.locator('#message-list script').count(), 0);
      assert.deepEqual(person.dialogs, []);
    }
    // The preview in the list is text too.
    await bob.page.locator('.conversation-preview', { hasText: '<img src=x' }).waitFor(WAIT);
    assert.deepEqual(alice.dialogs, []);
  });

  test('a group: created, a third person added, everyone chats', async () => {
    carol = await Person.open(browser, proxy, 'carol');
    await carol.signIn();

    await alice.page.getByRole('button', { name: 'New group' }).click();
    await alice.page.getByLabel('Group name').fill('Floor 3 lunch');
    await alice.page.locator('#group-search').fill('bob');
    await alice.page.getByRole('button', { name: 'Add Bob Nguyen' }).click(WAIT);
    await alice.page.getByRole('button', { name: 'Create group' }).click();
    await alice.page.locator('#chat-name', { hasText: 'Floor 3 lunch' }).waitFor(WAIT);
    await alice.page.locator('.system-message', { hasText: 'alice created the group' }).waitFor(WAIT);

    // Add Carol through the members dialog; Esc closes it.
    await alice.page.getByRole('button', { name: 'Members' }).click();
    await alice.page.locator('#members-search').fill('lisbon');
    await alice.page.getByRole('button', { name: 'Add Carol Diaz to the group' }).click(WAIT);
    await alice.page.locator('#members-list .person', { hasText: 'Carol Diaz' }).waitFor(WAIT);
    await alice.page.keyboard.press('Escape');
    await alice.page.locator('#members-dialog').waitFor({ state: 'hidden' });
    await alice.page.locator('.system-message', { hasText: 'alice added carol' }).waitFor(WAIT);

    await carol.conversation('Floor 3 lunch').waitFor(WAIT);
    await carol.open('Floor 3 lunch');
    // Carol reads the history from before she joined.
    await carol.page.locator('.system-message', { hasText: 'alice created the group' }).waitFor(WAIT);
    await carol.send('Count me in!');
    await alice.messages('Count me in!').waitFor(WAIT);
    await bob.conversation('Floor 3 lunch').locator('.conversation-preview', { hasText: 'Count me in!' }).waitFor(WAIT);
    await bob.open('Floor 3 lunch');
    await bob.messages('Count me in!').waitFor(WAIT);
    // Bob is not the owner: he sees who is, and no way to remove others.
    await bob.page.getByRole('button', { name: 'Members' }).click();
    await bob.page.locator('#members-list .person', { hasText: 'Alice Martin' }).locator('.tag', { hasText: 'Owner' }).waitFor(WAIT);
    assert.equal(await bob.page.locator('#members-list button', { hasText: 'Remove' }).count(), 0);
    await bob.page.keyboard.press('Escape');
    await bob.page.locator('#members-dialog').waitFor({ state: 'hidden' });
    await bob.send('Great, table for three');
    await carol.messages('Great, table for three').waitFor(WAIT);
    await alice.messages('Great, table for three').waitFor(WAIT);
    await alice.shot('group');

    // Alice (the owner) removes Bob: he sees why, then the group leaves his list.
    await alice.page.getByRole('button', { name: 'Members' }).click();
    await alice.page.getByRole('button', { name: 'Remove Bob Nguyen' }).click();
    await alice.page.locator('#members-list .person', { hasText: 'Bob Nguyen' }).waitFor({ state: 'detached', ...WAIT });
    await alice.page.getByRole('button', { name: 'Done' }).click();
    await alice.page.locator('.system-message', { hasText: 'alice removed bob' }).waitFor(WAIT);
    await carol.page.locator('.system-message', { hasText: 'alice removed bob' }).waitFor(WAIT);
    await bob.conversation('Floor 3 lunch').waitFor({ state: 'detached', ...WAIT });
    await bob.page.locator('#no-chat').waitFor(WAIT);
  });

  test('a broadcast from a tool looks like a notice, not like chat', async () => {
    const token = await server.token('monitor');
    await server.api('POST', '/messages', { to: 'alice', body: 'Queue PAYMENTS has 1,240 items waiting', kind: 'broadcast' }, token);
    const fromMonitor = alice.conversation('Queue monitor');
    await fromMonitor.locator('.conversation-preview', { hasText: 'Broadcast: Queue PAYMENTS' }).waitFor(WAIT);
    await alice.open('Queue monitor');
    const notice = alice.page.locator('#message-list .broadcast-message');
    await notice.waitFor(WAIT);
    assert.match(await notice.innerText(), /BROADCAST\s*from Queue monitor[\s\S]*Queue PAYMENTS has 1,240 items waiting/i);
    assert.equal(await alice.page.locator('#message-list .message').count(), 0);
    await alice.shot('broadcast');
  });

  test('a webhook post shows under the tool\'s name; an org broadcast as a banner to acknowledge', async () => {
    const token = await server.token('monitor');
    const { conversations } = await server.api('GET', '/conversations', undefined, token);
    const direct = conversations.find((c) => c.kind === 'direct' && c.members.includes('alice'));
    const hook = await server.api('POST', `/conversations/${direct.id}/webhooks`, { name: 'CI' }, token);
    const posted = await fetch(`${server.url}${hook.path}`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text: 'build 4411 failed', username: 'Jenkins', icon_emoji: ':x:' }),
    });
    assert.equal(posted.status, 200);
    const notice = alice.page.locator('#message-list .webhook-message', { hasText: 'build 4411 failed' });
    await notice.waitFor(WAIT);
    assert.match(await notice.innerText(), /APP\s*Jenkins[\s\S]*build 4411 failed/i);

    const sent = await server.api('POST', '/broadcasts', { to: 'HQ/Building 2', body: 'Fire drill at 14:00 in Building 2', ack: true, priority: true }, token);
    const banner = alice.page.locator('#broadcasts .org-broadcast', { hasText: 'Fire drill at 14:00' });
    await banner.waitFor(WAIT);
    assert.match(await banner.innerText(), /URGENT BROADCAST\s*from Queue monitor to HQ\/Building 2/i);
    await alice.shot('org-broadcast');
    await banner.getByRole('button', { name: 'Acknowledge' }).click();
    await banner.getByRole('button', { name: 'Acknowledged' }).waitFor(WAIT);
    let status;
    for (let i = 0; i < 50; i += 1) {
      status = await server.api('GET', `/broadcasts/${sent.id}`, undefined, token);
      if (status.acknowledged.length > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(status.acknowledged.map((a) => a.user), ['alice']);
    // Bob (HQ/Building 1) is not under the path: no banner.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await bob.page.locator('#broadcasts .org-broadcast').count(), 0);
    await banner.getByRole('button', { name: 'Dismiss' }).click();
    await banner.waitFor({ state: 'detached', ...WAIT });
  });

  test('a status change shows on the other side', async () => {
    await alice.open('Bob Nguyen');
    await alice.page.locator('#chat-subtitle', { hasText: 'Available' }).waitFor(WAIT);
    await bob.page.getByLabel('Status message').fill('In a meeting until 3');
    await bob.page.getByLabel('Your status').selectOption('busy');
    await alice.page.locator('#chat-subtitle', { hasText: 'Busy · In a meeting until 3' }).waitFor(WAIT);
    await alice.conversation('Bob Nguyen').locator('.dot.busy').waitFor(WAIT);
    await bob.page.getByLabel('Your status').selectOption('do_not_disturb');
    await alice.conversation('Bob Nguyen').locator('.dot.do_not_disturb').waitFor(WAIT);
    await bob.page.getByLabel('Your status').selectOption('available');
    await alice.conversation('Bob Nguyen').locator('.dot.available').waitFor(WAIT);
  });

  test('idle for the configured time goes away, activity comes back', async () => {
    await bob.open('Alice Martin');
    await bob.page.locator('#chat-subtitle', { hasText: 'Available' }).waitFor(WAIT);
    await alice.page.getByRole('button', { name: 'Settings' }).click();
    await alice.page.getByLabel('Go away after this many idle minutes').fill('0.05'); // 3 s
    await alice.page.getByRole('button', { name: 'Save' }).click();
    await alice.page.locator('#settings-dialog').waitFor({ state: 'hidden' });
    await bob.page.locator('#chat-subtitle', { hasText: 'Away' }).waitFor(WAIT);
    assert.equal(await alice.page.getByLabel('Your status').inputValue(), 'away');
    await alice.page.mouse.move(300, 300);
    await alice.page.mouse.move(320, 310);
    await bob.page.locator('#chat-subtitle', { hasText: 'Available' }).waitFor(WAIT);
    // Back to the default, so the other steps are not interrupted by going away.
    await alice.page.getByRole('button', { name: 'Settings' }).click();
    await alice.page.getByLabel('Go away after this many idle minutes').fill('10');
    await alice.page.getByLabel('Go away after this many idle minutes').press('Enter');
    await alice.page.locator('#settings-dialog').waitFor({ state: 'hidden' });
  });

  test('scrolling up loads older messages page by page', async () => {
    const bobsToken = await server.token('bob');
    for (let n = 1; n <= 80; n += 1) {
      await server.api('POST', '/messages', { to: 'carol', body: `note ${n}`, client_msg_id: `page-${n}` }, bobsToken);
    }
    await carol.conversation('Bob Nguyen').locator('.badge', { hasText: '80' }).waitFor(WAIT);
    // A fresh page holds none of them: opening loads the newest page only.
    await carol.page.reload();
    await carol.waitOnline();
    await carol.open('Bob Nguyen');
    await carol.messages('note 80').waitFor(WAIT);
    assert.equal(await carol.messages('note 1').count(), 0);
    for (let i = 0; i < 10 && (await carol.messages('note 1').count()) === 0; i += 1) {
      await carol.page.locator('#messages').evaluate((box) => { box.scrollTop = 0; });
      await carol.page.waitForTimeout(300);
    }
    await carol.messages('note 1').waitFor(WAIT);
    assert.equal(await carol.page.locator('#message-list .message').count(), 80);
    await carol.page.locator('#load-older').waitFor({ state: 'hidden' });
  });

  test('a reload keeps history and unread counts', async () => {
    // Carol looks at the group while Alice writes to her directly: one unread for Carol.
    await carol.open('Floor 3 lunch');
    const alicesToken = await server.token('alice');
    await server.api('POST', '/messages', { to: 'carol', body: 'Carol, are you in the office today?', client_msg_id: 'reload-1' }, alicesToken);
    await server.api('POST', '/messages', { to: 'carol', body: 'No rush.', client_msg_id: 'reload-2' }, alicesToken);
    await carol.conversation('Alice Martin').locator('.badge', { hasText: '2' }).waitFor(WAIT);

    await carol.page.reload();
    await carol.waitOnline();
    await carol.conversation('Alice Martin').locator('.badge', { hasText: '2' }).waitFor(WAIT);
    assert.equal(await carol.conversation('Floor 3 lunch').locator('.badge').count(), 0);
    await carol.open('Alice Martin');
    await carol.messages('No rush.').waitFor(WAIT);
    await carol.conversation('Alice Martin').locator('.badge').waitFor({ state: 'detached' });

    await alice.page.reload();
    await alice.waitOnline();
    await alice.open('Bob Nguyen');
    await alice.messages('Hi Bob, lunch at 12?').waitFor(WAIT);
    // Bob had read everything: the receipt survives the reload.
    await alice.page.locator('.receipt.read', { hasText: 'Read' }).waitFor(WAIT);
    assert.equal(await alice.messages('Hi Bob, lunch at 12?').count(), 1);
    assert.equal(await alice.page.locator('#message-list .body', { hasText: 'see you at' }).count(), 1);
  });

  test('offline and back: the gap is backfilled once, queued sends go out once', async () => {
    await bob.open('Alice Martin');
    const bobsToken = await server.token('bob');

    // 1. The network drops; Bob writes meanwhile (over REST, straight to the server);
    //    Alice's page reconnects by itself and resumes.
    await proxy.cut();
    await alice.page.locator('#connection-banner.offline').waitFor(WAIT);
    for (const n of [1, 2, 3]) {
      await server.api('POST', '/messages', { to: 'alice', body: `while you were away ${n}`, client_msg_id: `gap-${n}` }, bobsToken);
    }
    await proxy.restore();
    await alice.waitOnline();
    for (const n of [1, 2, 3]) {
      await alice.messages(`while you were away ${n}`).waitFor(WAIT);
      assert.equal(await alice.messages(`while you were away ${n}`).count(), 1);
    }

    // 2. The server restarts. Alice writes while it is down (the send waits); Bob's REST
    //    sends land after the restart, before or after her reconnect.
    await server.stop();
    await alice.page.locator('#connection-banner.offline', { hasText: 'The server is restarting' }).waitFor(WAIT);
    await alice.shot('offline');
    await alice.send('written while the server was down');
    await alice.page.locator('.message.pending', { hasText: 'written while the server was down' }).waitFor(WAIT);
    await server.start();
    for (const n of [4, 5]) {
      await server.api('POST', '/messages', { to: 'alice', body: `while you were away ${n}`, client_msg_id: `gap-${n}` }, bobsToken);
    }
    await alice.waitOnline();
    await bob.waitOnline();
    // The draining server named a delay; the page waited that long before reconnecting.
    const told = alice.sockets.findLast((s) => s.error === 'shutting_down');
    assert.ok(told, 'the server sent shutting_down with retry_after_ms');
    const next = alice.sockets[alice.sockets.indexOf(told) + 1];
    assert.ok(next.openedAt - told.closedAt >= told.retryAfterMs - 250,
      `reconnected ${next.openedAt - told.closedAt} ms after the close; asked to wait ${told.retryAfterMs} ms`);
    for (const n of [1, 2, 3, 4, 5]) {
      await alice.messages(`while you were away ${n}`).waitFor(WAIT);
      assert.equal(await alice.messages(`while you were away ${n}`).count(), 1);
    }
    await bob.messages('written while the server was down').waitFor(WAIT);
    await alice.page.locator('.message.pending').waitFor({ state: 'detached', ...WAIT });
    assert.equal(await bob.messages('written while the server was down').count(), 1);
    assert.equal(await alice.messages('written while the server was down').count(), 1);
    // Stored once: the history on the server has it once, after the gap messages.
    const history = await server.api('GET', `/conversations/${await directId(server, bobsToken)}/messages?limit=100`, undefined, bobsToken);
    const bodies = history.messages.map((m) => m.body);
    assert.equal(bodies.filter((b) => b === 'written while the server was down').length, 1);
    const seqs = history.messages.map((m) => m.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  });

  test('message search finds what was said, marked, in one\'s own conversations only', async () => {
    const search = async (person, q) => {
      await person.page.getByLabel('Search messages').fill(q);
      await person.page.getByLabel('Search messages').press('Enter');
    };
    await search(carol, 'table');
    const hit = carol.page.locator('#message-results .hit', { hasText: 'Great, table for three' });
    await hit.waitFor(WAIT);
    assert.equal(await hit.locator('mark').first().textContent(), 'table');
    await carol.shot('search');
    await hit.locator('button').click();
    await carol.page.locator('#chat-name', { hasText: 'Floor 3 lunch' }).waitFor(WAIT);
    await carol.page.locator('#message-list .found', { hasText: 'Great, table for three' }).waitFor(WAIT);
    // Bob was removed from that group: what was said there is no longer his to find.
    await search(bob, 'table');
    await bob.page.locator('#message-results', { hasText: 'No messages found.' }).waitFor(WAIT);
    // A phrase and an author; a typed error shows instead of results.
    await search(alice, '"count me" from:carol');
    await alice.page.locator('#message-results .hit', { hasText: 'Count me in!' }).waitFor(WAIT);
    await search(alice, 'lunch from:nobody');
    await alice.page.locator('#message-results [role=alert]', { hasText: 'nobody' }).waitFor(WAIT);
    // Chromium logs the refused request (404 user_not_found) itself; that one was asked for.
    alice.errors = alice.errors.filter((e) => !/status of 404/.test(e));
    await alice.page.getByLabel('Search messages').press('Escape');
    await alice.page.locator('#message-results').waitFor({ state: 'hidden' });
  });

  test('one\'s own message can be edited and deleted; the other side sees it live', async () => {
    await alice.open('Bob Nguyen');
    await bob.open('Alice Martin');
    await alice.send('Meet at 12:00?');
    await bob.messages('Meet at 12:00?').waitFor(WAIT);
    const mine = alice.page.locator('#message-list .message.mine', { hasText: 'Meet at 12:00?' });
    await mine.getByRole('button', { name: 'Edit message' }).click();
    const box = alice.page.getByLabel('Message', { exact: true });
    assert.equal(await box.inputValue(), 'Meet at 12:00?');
    await box.fill('Meet at 12:30?');
    await box.press('Enter');
    const edited = bob.page.locator('#message-list .message', { hasText: 'Meet at 12:30?' });
    await edited.locator('.edited').waitFor(WAIT);
    assert.equal(await bob.messages('Meet at 12:00?').count(), 0);
    // Only the sender gets the actions.
    assert.equal(await edited.getByRole('button', { name: 'Edit message' }).count(), 0);
    const minePrev = alice.page.locator('#message-list .message.mine', { hasText: 'Meet at 12:30?' });
    await minePrev.getByRole('button', { name: 'Delete message' }).click();
    await alice.page.getByRole('button', { name: 'Confirm delete' }).click();
    await bob.messages('This message was deleted').last().waitFor(WAIT);
    assert.equal(await bob.messages('Meet at 12:30?').count(), 0);
    await alice.messages('This message was deleted').last().waitFor(WAIT);
    await bob.shot('deleted');
  });

  test('a reply goes into a thread: the conversation shows the count, the thread opens on its own', async () => {
    await alice.open('Bob Nguyen');
    await bob.open('Alice Martin');
    await alice.send('Who books the room for Friday?');
    const root = (p) => p.page.locator('#message-list .message', { hasText: 'Who books the room for Friday?' });
    await root(bob).waitFor(WAIT);
    await root(bob).getByRole('button', { name: 'Reply in a thread' }).click();
    const dialog = bob.page.locator('#thread-dialog');
    await dialog.locator('.thread-root', { hasText: 'Who books the room for Friday?' }).waitFor(WAIT);
    const box = dialog.getByLabel('Reply', { exact: true });
    await box.fill('I will, room 3.14');
    await box.press('Enter');
    await dialog.locator('.thread-message:not(.thread-root)', { hasText: 'I will, room 3.14' }).waitFor(WAIT);
    await bob.shot('thread');
    // alice sees the count live on her message, not the reply in the conversation.
    await root(alice).getByRole('button', { name: '1 reply: open the thread' }).waitFor(WAIT);
    assert.equal(await alice.messages('I will, room 3.14').count(), 0);
    await root(alice).getByRole('button', { name: '1 reply: open the thread' }).click();
    const hers = alice.page.locator('#thread-dialog');
    await hers.locator('.thread-message:not(.thread-root)', { hasText: 'I will, room 3.14' }).waitFor(WAIT);
    assert.equal(await hers.locator('#thread-count').textContent(), '1 reply');
    // Her reply reaches bob's open thread live.
    const hersBox = hers.getByLabel('Reply', { exact: true });
    await hersBox.fill('Thanks!');
    await hersBox.press('Enter');
    await dialog.locator('.thread-message', { hasText: 'Thanks!' }).waitFor(WAIT);
    await hers.getByRole('button', { name: 'Close' }).click();
    await dialog.getByRole('button', { name: 'Close' }).click();
    // After a reload the count comes from history.
    await bob.page.reload();
    await bob.waitOnline();
    await bob.open('Alice Martin');
    await root(bob).getByRole('button', { name: '2 replies: open the thread' }).waitFor(WAIT);
  });

  test('a reaction shows under the message for both, and a click takes it back', async () => {
    await alice.open('Bob Nguyen');
    await bob.open('Alice Martin');
    await alice.send('Cake in the kitchen');
    const msg = (p) => p.page.locator('#message-list .message', { hasText: 'Cake in the kitchen' });
    await msg(bob).waitFor(WAIT);
    await msg(bob).getByRole('button', { name: 'React with 👍' }).click();
    await msg(alice).getByRole('button', { name: '👍 1' }).waitFor(WAIT);
    await msg(bob).locator('.reaction.mine', { hasText: '👍 1' }).waitFor(WAIT);
    await bob.shot('reaction');
    // It comes back from history after a reload, still marked as bob's.
    await bob.page.reload();
    await bob.waitOnline();
    await bob.open('Alice Martin');
    await msg(bob).locator('.reaction.mine', { hasText: '👍 1' }).waitFor(WAIT);
    // Clicking his own takes it back, for both.
    await msg(bob).getByRole('button', { name: '👍 1' }).click();
    await msg(alice).getByRole('button', { name: 'React with 👍' }).waitFor(WAIT);
    assert.equal(await msg(alice).locator('.reaction:not(.add-reaction)').count(), 0);
  });

  test('an image sent as a file shows as a thumbnail for both; another file as a download', async () => {
    await alice.open('Bob Nguyen');
    await bob.open('Alice Martin');
    // A 1x1 PNG, picked with the attach button's file input.
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
    await alice.page.locator('#attach-input').setInputFiles({ name: 'floor-plan.png', mimeType: 'image/png', buffer: png });
    for (const person of [alice, bob]) {
      const file = person.page.locator('#message-list .attachment', { hasText: 'floor-plan.png' });
      await file.waitFor(WAIT);
      const thumbnail = file.locator('img.thumbnail');
      await thumbnail.waitFor(WAIT);
      // Loaded through the signed-in fetch, shown from an object URL.
      await person.page.waitForFunction((img) => img.complete && img.naturalWidth === 1, await thumbnail.elementHandle(), WAIT);
      assert.match(await thumbnail.getAttribute('src'), /^blob:/);
      await file.getByText('70 B').waitFor();
    }
    await bob.shot('attachment');
    // A text file: a name, a size and a Download button, no picture.
    await bob.page.locator('#attach-input').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('minutes of the meeting') });
    const notes = alice.page.locator('#message-list .attachment', { hasText: 'notes.txt' });
    await notes.waitFor(WAIT);
    assert.equal(await notes.locator('img').count(), 0);
    const [download] = await Promise.all([
      alice.page.waitForEvent('download', WAIT),
      notes.getByRole('button', { name: 'Download notes.txt' }).click(),
    ]);
    assert.equal(download.suggestedFilename(), 'notes.txt');
    // Too big for the server: refused with a clear message, nothing sent.
    const big = Buffer.alloc(3 * 1024 * 1024, 1);
    await alice.page.locator('#attach-input').setInputFiles({ name: 'huge.bin', mimeType: 'application/octet-stream', buffer: big });
    await alice.page.locator('#connection-banner', { hasText: 'Could not send huge.bin' }).waitFor(WAIT);
    assert.equal(await bob.page.locator('#message-list .attachment', { hasText: 'huge.bin' }).count(), 0);
    // The browser logs the refused request (413) to the console; that one is expected.
    alice.errors = alice.errors.filter((e) => !/status of 413/.test(e));
  });

    test('a phone-sized window shows one pane at a time', async () => {
    const phone = await Person.open(browser, proxy, 'carol', { width: 390, height: 780 });
    await phone.signIn(); // a fresh context holds no sign-in
    await phone.conversation('Floor 3 lunch').waitFor(WAIT);
    assert.equal(await phone.page.locator('#chat').isVisible(), false);
    await phone.open('Floor 3 lunch');
    assert.equal(await phone.page.locator('#sidebar').isVisible(), false);
    await phone.messages('Great, table for three').waitFor(WAIT);
    await phone.shot('phone');
    await phone.page.getByRole('button', { name: 'Back to conversations' }).click();
    await phone.page.locator('#sidebar').waitFor({ state: 'visible' });
    await phone.context.close();
  });

  test('no page raised a script error', () => {
    for (const person of [alice, bob, carol]) {
      assert.deepEqual(person.errors, [], `${person.name}'s page`);
      assert.deepEqual(person.dialogs, [], `${person.name}'s page`);
    }
  });
});

async function directId(server, token) {
  const { conversations } = await server.api('GET', '/conversations', undefined, token);
  return conversations.find((c) => c.kind === 'direct' && c.members.includes('alice')).id;
}
