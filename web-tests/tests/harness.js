// Test harness: a real `switchboard serve` (the built binary) on an ephemeral port with
// its own temporary data dir, accounts created through the CLI, and headless Chromium
// (Debian's /usr/bin/chromium, never a downloaded browser) driven by playwright-core.

import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '../..');
const targetDir = process.env.CARGO_TARGET_DIR || path.join(repo, 'target');
export const binary = process.env.SWITCHBOARD_BIN || path.join(targetDir, 'debug', 'switchboard');
export const screenshots = process.env.WEB_SCREENSHOTS || path.join(targetDir, 'web-screenshots');
export const PASSWORD = 'correct horse battery';

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export class Server {
  constructor() {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-web-'));
    this.process = null;
    this.port = 0;
    this.log = '';
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts (or restarts, on the same port and data dir) the server; waits until it answers. */
  async start() {
    if (!this.port) this.port = await freePort();
    const child = spawn(binary, ['serve', '--data-dir', this.dir, '--listen', `127.0.0.1:${this.port}`,
      '--rate-per-user', '0', '--rate-per-ip', '0', '--drain-secs', '2', '--max-attachment-bytes', '2097152'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d) => { this.log += d; });
    child.stderr.on('data', (d) => { this.log += d; });
    this.process = child;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`switchboard exited early:\n${this.log}`);
      try {
        const response = await fetch(`${this.url}/healthz`);
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`switchboard did not start:\n${this.log}`);
  }

  /** Stops the server (SIGTERM: it drains and exits) and waits for the process to end. */
  async stop() {
    const child = this.process;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  async cleanup() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Creates an account through the CLI, straight into the data dir. */
  addUser(name, displayName, org, { admin = false } = {}) {
    execFileSync(binary, ['user', 'add', name, '--data-dir', this.dir, '--display-name', displayName,
      '--org', org, '--password-stdin', ...(admin ? ['--admin'] : [])],
    { input: `${PASSWORD}\n`, stdio: ['pipe', 'ignore', 'pipe'] });
  }

  async api(method, apiPath, body, token) {
    const headers = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(`${this.url}/api/v1${apiPath}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${apiPath}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  async token(name) {
    return (await this.api('POST', '/login', { username: name, password: PASSWORD })).token;
  }
}

/**
 * A TCP relay between the browsers and the server, so a test can cut the network: `cut`
 * drops every connection (no close frame, like a lost link) and refuses new ones until
 * `restore`. Survives server restarts (connections made meanwhile are dropped).
 */
export class Proxy {
  constructor(server) {
    this.server = server;
    this.sockets = new Set();
    this.listener = null;
    this.port = 0;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    this.listener = net.createServer((client) => {
      const upstream = net.connect(this.server.port, '127.0.0.1');
      for (const [a, b] of [[client, upstream], [upstream, client]]) {
        this.sockets.add(a);
        a.on('error', () => b.destroy());
        a.on('close', () => { this.sockets.delete(a); b.destroy(); });
        a.pipe(b);
      }
    });
    await new Promise((resolve) => this.listener.listen(this.port, '127.0.0.1', resolve));
  }

  async cut() {
    await new Promise((resolve) => {
      this.listener.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
  }

  async restore() {
    await this.start();
  }
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    // playwright gives every launch a fresh temporary profile (user data dir).
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A person in their own browser context (own storage, own socket). */
export class Person {
  constructor(name, context, page) {
    this.name = name;
    this.context = context;
    this.page = page;
    this.dialogs = [];
    this.errors = [];
    page.on('dialog', (dialog) => {
      this.dialogs.push(dialog.message());
      dialog.dismiss().catch(() => {});
    });
    page.on('pageerror', (e) => this.errors.push(String(e)));
    // Every WebSocket the page opens: when it opened and closed, and the error that ended
    // it with the reconnect delay the server asked for (`shutting_down` from a draining
    // server, `unavailable` from a busy one refusing the sign-in, with `retry_after_ms`).
    this.sockets = [];
    page.on('websocket', (ws) => {
      const socket = { openedAt: Date.now(), closedAt: null, error: null, retryAfterMs: null };
      this.sockets.push(socket);
      ws.on('framereceived', ({ payload }) => {
        try {
          const frame = JSON.parse(payload);
          if (frame.type === 'error' && !frame.id && Number.isFinite(frame.retry_after_ms)) {
            socket.error = frame.code;
            socket.retryAfterMs = frame.retry_after_ms;
          }
        } catch {
          // not JSON: not ours to check
        }
      });
      ws.on('close', () => { socket.closedAt = Date.now(); });
    });
    // Content-Security-Policy violations and failed loads show up as console errors.
    // Refused connections while the network is cut are expected, not errors of the page.
    page.on('console', (message) => {
      const text = message.text();
      if (message.type() === 'error' && !/WebSocket|net::ERR_/.test(text)) {
        this.errors.push(text);
      }
    });
  }

  /** `via` is the Server or a Proxy in front of it. */
  static async open(browser, via, name, viewport = { width: 1200, height: 760 }) {
    const context = await browser.newContext({ viewport, baseURL: via.url });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const person = new Person(name, context, page);
    await page.goto('/');
    return person;
  }

  async signIn() {
    const { page } = this;
    await page.getByLabel('Username').fill(this.name);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#app-view').waitFor({ state: 'visible' });
    await this.waitOnline();
  }

  async waitOnline() {
    await this.page.locator('#connection-banner').waitFor({ state: 'hidden', timeout: 20_000 });
  }

  conversation(title) {
    return this.page.locator('#conversation-list button.conversation', { hasText: title });
  }

  async open(title) {
    await this.conversation(title).first().click();
    await this.page.locator('#chat-name', { hasText: title }).waitFor();
  }

  async send(text) {
    const box = this.page.getByLabel('Message', { exact: true });
    await box.fill(text);
    await box.press('Enter');
  }

  /** Messages in the open conversation whose text is exactly `text`. */
  messages(text) {
    return this.page.locator('#message-list .message .body').filter({ hasText: new RegExp(`^${escapeRegExp(text)}$`) });
  }

  async shot(name) {
    mkdirSync(screenshots, { recursive: true });
    await this.page.screenshot({ path: path.join(screenshots, `${name}.png`) });
  }
}

export function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
