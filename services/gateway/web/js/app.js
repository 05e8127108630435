// The signed-in client: loading what the server knows, the actions a person takes, and
// drawing. Frame handling lives in frames.js and control wiring in ui.js (both mixed into
// App); state in state.js, rendering in views.js, the socket in connection.js. REST
// serves reads that do not need the socket (lists, history, the directory); the socket
// carries everything live.

import { api } from './api.js';
import { Connection, newClientMsgId } from './connection.js';
import { setupDialogs } from './dialogs.js';
import { $ } from './dom.js';
import { frameHandlers } from './frames.js';
import { searchMethods } from './search.js';
import { State } from './state.js';
import { threadMethods } from './threads.js';
import { attachmentMethods, renderAttachments } from './attachments.js';
import { uiMethods } from './ui.js';
import { renderChatHeader, renderConversationList, renderMe, renderMessages, renderTyping } from './views.js';

export const TOKEN_KEY = 'switchboard.token';
const IDLE_KEY = 'switchboard.idleMinutes';
const PAGE = 50;
const TYPING_EVERY_MS = 3000;

export class App {
  constructor(token, me) {
    this.token = token;
    this.state = new State(me);
    this.selectedId = null;
    this.pending = new Map(); // conversation id -> [{client_msg_id, body, ts, sender}]
    this.myStatus = 'available';
    this.myText = '';
    this.autoAway = false;
    this.lastActivity = Date.now();
    this.idleMinutes = Number(localStorage.getItem(IDLE_KEY) ?? 10);
    this.lastTypingSent = 0;
    this.loadingOlder = false;
    this.onConversationChanged = () => {};
    this.connection = new Connection({
      token,
      since: () => this.state.since(),
      onFrame: (frame) => this.onFrame(frame),
      onState: (state, detail) => this.onConnectionState(state, detail),
    });
  }

  api(method, path, body) {
    return api(method, path, body, this.token).catch((e) => {
      if (e.status === 401) this.logout(true);
      throw e;
    });
  }

  async start() {
    $('login-view').hidden = true;
    $('app-view').hidden = false;
    renderMe(this.state, this.myStatus);
    setupDialogs(this);
    this.wireUi();
    this.wireThread();
    this.wireAttachments();
    this.wireSearch();
    await Promise.all([this.loadConversations(), this.loadContacts()]);
    this.connection.start();
    setInterval(() => this.tick(), 1000);
  }

  // ---- loading -------------------------------------------------------------------

  async loadConversations() {
    const { conversations, last_messages: previews } = await this.api('GET', '/conversations');
    for (const c of conversations) this.state.upsertConversation(c);
    for (const m of previews || []) {
      const conv = this.state.conv(m.conversation_id);
      if (conv && (!conv.preview || conv.preview.seq < m.seq)) conv.preview = m;
    }
    this.drawList();
  }

  async loadContacts() {
    const { users } = await this.api('GET', '/contacts');
    for (const u of users) this.state.users.set(u.username, u);
    this.drawList();
    if (this.selected()) this.drawChat();
  }

  /** Fetches display names for members we have not met yet. */
  async learnNames(usernames) {
    if (usernames.some((u) => !this.state.users.has(u))) await this.loadContacts().catch(() => {});
  }

  /** Everyone's read cursor, for receipts (the `read` pushes keep them current). */
  async loadReads(conv) {
    const { reads } = await this.api('GET', `/conversations/${conv.id}/reads`);
    for (const { user, seq } of reads) {
      if (user === this.state.me.username) conv.readSeq = Math.max(conv.readSeq, seq);
      else conv.reads.set(user, Math.max(conv.reads.get(user) || 0, seq));
    }
  }

  async loadNewest(conv) {
    const page = await this.api('GET', `/conversations/${conv.id}/messages?limit=${PAGE}`);
    conv.loaded = true;
    for (const m of page.messages) conv.add(m);
    conv.hasOlder = page.has_more;
  }

  async loadOlder() {
    const conv = this.selected();
    if (!conv || !conv.hasOlder || this.loadingOlder || conv.oldestLoaded === null) return;
    this.loadingOlder = true;
    const box = $('messages');
    const fromBottom = box.scrollHeight - box.scrollTop;
    try {
      const page = await this.api('GET', `/conversations/${conv.id}/messages?before_seq=${conv.oldestLoaded}&limit=${PAGE}`);
      for (const m of page.messages) conv.add(m);
      conv.hasOlder = page.has_more;
      this.drawMessages();
      box.scrollTop = box.scrollHeight - fromBottom; // keep the view where it was
    } finally {
      this.loadingOlder = false;
    }
  }

  // ---- actions -------------------------------------------------------------------

  selected() {
    return this.selectedId === null ? undefined : this.state.conv(this.selectedId);
  }

  async select(id) {
    this.selectedId = id;
    document.body.classList.toggle('show-chat', id !== null);
    this.drawList();
    if (id === null) {
      $('chat-pane').hidden = true;
      $('no-chat').hidden = false;
      return;
    }
    const conv = this.selected();
    $('chat-pane').hidden = false;
    $('no-chat').hidden = true;
    $('typing').textContent = '';
    this.drawChat();
    if (!conv.loaded) {
      try {
        await Promise.all([this.loadNewest(conv), this.loadReads(conv)]);
      } catch (e) {
        this.flash(`Could not load the history: ${e.message}`);
      }
      if (this.selectedId !== id) return;
      this.drawMessages({ bottom: true });
    } else {
      this.drawMessages({ bottom: true });
    }
    this.markRead(conv);
    if (matchMedia('(min-width: 721px)').matches) $('composer-input').focus();
  }

  markRead(conv) {
    if (document.hidden || conv.id !== this.selectedId) return;
    if (conv.lastSeq > conv.readSeq) {
      conv.readSeq = conv.lastSeq;
      this.connection.notify({ type: 'read', conversation_id: conv.id, seq: conv.lastSeq });
      this.drawList();
    }
  }

  /** Puts one of my messages into the composer; sending then replaces its text. */
  startEdit(m) {
    this.editing = { conversation_id: m.conversation_id, seq: m.seq };
    const input = $('composer-input');
    input.value = m.body;
    input.placeholder = 'Edit your message (Esc cancels)';
    $('composer').classList.add('editing');
    this.resizeComposer();
    input.focus();
  }

  cancelEdit() {
    if (!this.editing) return;
    this.editing = null;
    $('composer-input').value = '';
    $('composer-input').placeholder = 'Write a message…';
    $('composer').classList.remove('editing');
    this.resizeComposer();
  }

  /** First click asks, a second within 4 s deletes. */
  deleteMessage(m) {
    if (this.confirmingDelete !== m.seq) {
      this.confirmingDelete = m.seq;
      clearTimeout(this.confirmTimer);
      this.confirmTimer = setTimeout(() => {
        this.confirmingDelete = null;
        this.drawMessages();
      }, 4000);
      this.drawMessages();
      return;
    }
    this.confirmingDelete = null;
    this.connection
      .request({ type: 'delete', conversation_id: m.conversation_id, seq: m.seq, client_msg_id: newClientMsgId() })
      .catch((e) => this.flash(`Could not delete: ${e.message}`));
  }

  /** Adds or takes back my reaction; the entry coming back over the socket redraws. */
  react(m, emoji, add) {
    this.connection
      .request({ type: add ? 'react' : 'unreact', conversation_id: m.conversation_id, seq: m.seq, emoji })
      .catch((e) => this.flash(`Could not react: ${e.message}`));
  }

  sendFromComposer() {
    const input = $('composer-input');
    const body = input.value;
    const conv = this.selected();
    if (!conv || !body.trim()) return;
    if (this.editing) {
      const { conversation_id: id, seq } = this.editing;
      this.cancelEdit();
      this.connection
        .request({ type: 'edit', conversation_id: id, seq, client_msg_id: newClientMsgId(), body })
        .catch((e) => this.flash(`Could not edit: ${e.message}`));
      return;
    }
    const clientMsgId = newClientMsgId();
    const entry = { client_msg_id: clientMsgId, body, ts: Date.now(), sender: this.state.me.username, kind: 'text', frameId: null };
    if (!this.pending.has(conv.id)) this.pending.set(conv.id, []);
    this.pending.get(conv.id).push(entry);
    this.connection.sendMessage(conv.id, clientMsgId, body);
    entry.frameId = this.connection.pendingSends.get(clientMsgId)?.id;
    input.value = '';
    this.resizeComposer();
    this.drawMessages({ bottom: true });
  }

  dropPending(convId, clientMsgId) {
    const list = this.pending.get(convId);
    if (!list || !clientMsgId) return;
    const at = list.findIndex((p) => p.client_msg_id === clientMsgId);
    if (at >= 0) {
      list.splice(at, 1);
      if (convId === this.selectedId) this.requestDraw({ messages: true, stick: true });
    }
  }

  typed() {
    const conv = this.selected();
    const now = Date.now();
    if (conv && now - this.lastTypingSent > TYPING_EVERY_MS && $('composer-input').value.trim()) {
      this.lastTypingSent = now;
      this.connection.notify({ type: 'typing', conversation_id: conv.id });
    }
  }

  searchPeople(query) {
    return this.api('GET', `/users?q=${encodeURIComponent(query)}&limit=20`).then(({ users }) => {
      for (const u of users) this.state.users.set(u.username, u);
      this.watch(users.map((u) => u.username));
      return users;
    });
  }

  async openDirect(username) {
    const c = await this.api('POST', '/conversations/direct', { user: username });
    const conv = this.state.upsertConversation(c);
    if (!conv.preview) {
      const page = await this.api('GET', `/conversations/${c.id}/messages?limit=1`);
      if (page.messages[0]) conv.preview = page.messages[0];
    }
    this.watch(c.members);
    $('people-search').value = '';
    $('search-results').hidden = true;
    await this.select(c.id);
  }

  async createGroup(name, members) {
    const answer = await this.connection.request({ type: 'create_group', name, members });
    this.state.upsertConversation(answer.conversation);
    await this.select(answer.conversation.id);
  }

  async addMembers(conversationId, users) {
    const answer = await this.connection.request({ type: 'add_members', conversation_id: conversationId, users });
    this.onConversation(answer.conversation);
  }

  async removeMember(conversationId, user) {
    const answer = await this.connection.request({ type: 'remove_member', conversation_id: conversationId, user });
    this.onConversation(answer.conversation);
  }

  async setStatus(status, text, { auto = false } = {}) {
    this.myStatus = status;
    this.myText = text;
    this.state.presence.set(this.state.me.username, { status, text });
    if (!auto) this.autoAway = false;
    this.drawMe();
    try {
      await this.api('PUT', '/presence', { status, text });
    } catch (e) {
      this.flash(`Could not set your status: ${e.message}`);
    }
  }

  watch(users) {
    const fresh = users.filter(Boolean);
    if (!fresh.length || !this.connection.online) return;
    this.connection.request({ type: 'watch', users: [...new Set(fresh)] }).then(({ presences }) => {
      for (const p of presences) this.onPresence(p);
      if (presences.some((p) => p.user !== this.state.me.username)) this.drawList();
    }).catch(() => {});
  }

  setIdleMinutes(minutes) {
    this.idleMinutes = minutes;
    localStorage.setItem(IDLE_KEY, String(minutes));
  }

  /** Goes away after the idle time, and comes back on activity (only if it went itself). */
  tick() {
    const idleMs = this.idleMinutes * 60_000;
    if (idleMs > 0 && !this.autoAway && this.myStatus === 'available' && Date.now() - this.lastActivity > idleMs) {
      this.autoAway = true;
      this.setStatus('away', this.myText, { auto: true });
    }
    const conv = this.selected();
    if (conv && conv.typing.size) {
      for (const [user, until] of conv.typing) if (until < Date.now()) conv.typing.delete(user);
      renderTyping(this.state, conv);
    }
  }

  active() {
    this.lastActivity = Date.now();
    if (this.autoAway) {
      this.autoAway = false;
      this.setStatus('available', this.myText);
    }
  }

  notifyBroadcast(b) {
    if (!document.hidden || (this.myStatus === 'do_not_disturb' && !b.priority)) return;
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    const n = new Notification(`${b.priority ? 'Urgent broadcast' : 'Broadcast'} from ${b.author}`, { body: b.body.slice(0, 200), tag: `broadcast-${b.id}`, icon: '/icon.svg', requireInteraction: b.priority });
    n.onclick = () => {
      window.focus();
      n.close();
    };
  }

  notify(conv, m) {
    if (!document.hidden || this.myStatus === 'do_not_disturb') return;
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    const title = conv.kind === 'group' ? `${this.state.displayName(m.sender)} in ${conv.name}` : this.state.displayName(m.sender);
    const n = new Notification(title, { body: m.body.slice(0, 200), tag: `conversation-${conv.id}`, icon: '/icon.svg' });
    n.onclick = () => {
      window.focus();
      this.select(conv.id);
      n.close();
    };
  }

  flash(text) {
    const banner = $('connection-banner');
    // The connection's own status (offline, busy) says more than a flash would.
    if (!banner.hidden && (banner.classList.contains('offline') || banner.classList.contains('busy'))) return;
    banner.hidden = false;
    banner.className = 'banner error';
    banner.replaceChildren(text);
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => {
      if (banner.classList.contains('error')) banner.hidden = true;
    }, 5000);
  }

  async logout(expired = false) {
    this.connection.stop();
    if (!expired) await api('POST', '/logout', undefined, this.token).catch(() => {});
    localStorage.removeItem(TOKEN_KEY);
    sessionStorage.clear();
    location.reload();
  }

  // ---- drawing -------------------------------------------------------------------

  /**
   * Redraws soon, once for everything asked meanwhile: a backfill of hundreds of messages
   * costs one redraw, not one per message.
   */
  requestDraw({ list = false, messages = false, bottom = false, stick = false }) {
    const want = this.wanted || (this.wanted = { list: false, messages: false, bottom: false, stick: false });
    want.list ||= list;
    want.messages ||= messages;
    want.bottom ||= bottom;
    want.stick ||= stick;
    if (this.drawTimer) return;
    this.drawTimer = setTimeout(() => {
      const { list: l, messages: m, bottom: b, stick: s } = this.wanted;
      this.wanted = null;
      this.drawTimer = null;
      if (l) this.drawList();
      if (m) this.drawMessages({ bottom: b, stick: s });
    }, 16);
  }

  drawList() {
    renderConversationList(this.state, this.selectedId, (id) => this.select(id));
    const unread = this.state.sorted().reduce((n, c) => n + c.unread(), 0);
    document.title = unread ? `(${unread}) Switchboard` : 'Switchboard';
  }

  drawChat() {
    const conv = this.selected();
    if (!conv) return;
    renderChatHeader(this.state, conv);
    this.drawMessages();
  }

  drawMessages({ bottom = false, stick = false } = {}) {
    const conv = this.selected();
    if (!conv) return;
    const box = $('messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    renderMessages(this.state, conv, this.pending.get(conv.id) || [], {
      onEdit: (m) => this.startEdit(m),
      onDelete: (m) => this.deleteMessage(m),
      confirmingDelete: this.confirmingDelete,
      onThread: (m) => this.openThread(m),
      onReact: (m, emoji, add) => this.react(m, emoji, add),
      attachments: (m) => renderAttachments(this.token, m),
    });
    if (bottom || (stick && atBottom)) box.scrollTop = box.scrollHeight;
  }

  drawMe() {
    renderMe(this.state, this.myStatus);
    $('status-select').value = this.myStatus;
    if (document.activeElement !== $('status-text')) $('status-text').value = this.myText;
  }

  resizeComposer() {
    const input = $('composer-input');
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  }
}

Object.assign(App.prototype, frameHandlers, uiMethods, searchMethods, threadMethods, attachmentMethods);
