// Test harness for cluster mode: `switchboard storage`, `router` and `gateway` (the built
// binary) as real processes on ephemeral ports, over a PostgreSQL database and a Redis key
// prefix of the test's own. PostgreSQL and Redis are the local servers scripts/test and
// scripts/web-tests.sh start (SWITCHBOARD_TEST_POSTGRES, an admin connection URL, and
// SWITCHBOARD_TEST_REDIS override them, as for the Rust cluster tests).

import { spawn, execFileSync } from 'node:child_process';
import { PASSWORD, binary } from './harness.js';

const ADMIN_URL = process.env.SWITCHBOARD_TEST_POSTGRES || 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.SWITCHBOARD_TEST_REDIS || 'redis://127.0.0.1:6379';

function psql(sql) {
  execFileSync('psql', [ADMIN_URL, '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A running role: the process, its address (`host:port`) and everything it printed. */
class Role {
  constructor(child) {
    this.child = child;
    this.addr = null;
    this.log = '';
  }

  /** Starts `switchboard ARGS`; resolves once it prints the address it listens on. */
  static start(args) {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SWITCHBOARD_LOG: 'warn' } });
    const role = new Role(child);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${args[0]} did not start:\n${role.log}`)), 20_000);
      child.stderr.on('data', (d) => { role.log += d; });
      child.stdout.on('data', (d) => {
        role.log += d;
        const found = /listening on https?:\/\/(\S+)/.exec(role.log);
        if (found && !role.addr) {
          role.addr = found[1];
          clearTimeout(timer);
          resolve(role);
        }
      });
      child.once('exit', () => reject(new Error(`${args[0]} exited early:\n${role.log}`)));
    });
  }

  /** Sends `signal` (SIGSTOP freezes the process, as an unresponsive pod; SIGCONT thaws it). */
  signal(signal) {
    this.child.kill(signal);
  }

  async stop() {
    const { child } = this;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGCONT'); // a frozen process cannot exit
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * One storage, one router and one gateway. `name` names the database
 * (`sbtest_web_NAME_PID`) and the Redis prefix (`sbtest:web-NAME:PID`). The gateway is the
 * Server of harness.js to the browsers: `url`, `port`, `addUser`, `token`.
 */
export class Cluster {
  constructor(name) {
    this.name = `sbtest_web_${name.replace(/-/g, '_')}_${process.pid}`;
    this.prefix = `sbtest:web-${name}:${process.pid}`;
    this.database = `${ADMIN_URL.slice(0, ADMIN_URL.lastIndexOf('/'))}/${this.name}`;
    psql(`DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`);
    psql(`CREATE DATABASE ${this.name}`);
    this.storage = null;
    this.router = null;
    this.gateway = null;
  }

  get port() {
    return Number(this.gateway.addr.split(':').pop());
  }

  get url() {
    return `http://${this.gateway.addr}`;
  }

  /** Starts the roles, the gateway with `gatewayArgs` more; waits until it is ready. */
  async start({ gatewayArgs = [] } = {}) {
    const redis = ['--redis', REDIS_URL, '--redis-prefix', this.prefix];
    this.storage = await Role.start(['storage', '--listen', '127.0.0.1:0', '--database', this.database]);
    this.router = await Role.start(['router', '--listen', '127.0.0.1:0', ...redis]);
    this.gateway = await Role.start(['gateway', '--listen', '127.0.0.1:0', '--gateway-id', 'gw1',
      '--storage', `http://${this.storage.addr}`, '--router', `http://${this.router.addr}`, ...redis,
      '--rate-per-user', '0', '--rate-per-ip', '0', ...gatewayArgs]);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      try {
        if ((await fetch(`${this.url}/readyz`)).ok) return;
      } catch {
        // not answering yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`the gateway never became ready:\n${this.gateway.log}`);
  }

  /** Stops every role, drops the database and forgets the Redis prefix. */
  async cleanup() {
    for (const role of [this.gateway, this.router, this.storage]) {
      if (role) await role.stop();
    }
    psql(`DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`);
    const keys = execFileSync('redis-cli', ['-u', REDIS_URL, '--scan', '--pattern', `${this.prefix}:*`], { encoding: 'utf8' })
      .split('\n').filter(Boolean);
    for (let i = 0; i < keys.length; i += 100) {
      execFileSync('redis-cli', ['-u', REDIS_URL, 'DEL', ...keys.slice(i, i + 100)], { stdio: 'ignore' });
    }
  }

  /** Creates an account through the CLI, straight into the database. */
  addUser(name, displayName, org) {
    execFileSync(binary, ['user', 'add', name, '--database', this.database, '--display-name', displayName,
      '--org', org, '--password-stdin'], { input: `${PASSWORD}\n`, stdio: ['pipe', 'ignore', 'pipe'] });
  }

  async token(name) {
    const response = await fetch(`${this.url}/api/v1/login`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: name, password: PASSWORD }),
    });
    if (!response.ok) throw new Error(`login ${name}: ${response.status} ${await response.text()}`);
    return (await response.json()).token;
  }
}
