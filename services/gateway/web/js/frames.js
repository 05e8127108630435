// What the client does with each frame the server pushes (or answers without a waiting
// request): methods of App (app.js), kept apart so each file holds one concern.

import { $, el } from './dom.js';
import { isEntry } from './state.js';
import { renderBroadcasts, renderChatHeader, renderTyping } from './views.js';

const TYPING_SHOWN_MS = 6000;

export const frameHandlers = {
  onFrame(frame) {
    switch (frame.type) {
      case 'message': return this.onMessage(frame.message);
      case 'conversation': return this.onConversation(frame.conversation);
      case 'synced': return this.onSynced(frame.conversations);
      case 'typing': return this.onTyping(frame);
      case 'read': return this.onRead(frame);
      case 'presence': return this.onPresence(frame.presence);
      case 'ack': return this.dropPending(frame.conversation_id, frame.client_msg_id);
      case 'error': return this.onError(frame);
      case 'broadcast': return this.onBroadcast(frame.broadcast);
      default: return undefined;
    }
  },

  onMessage(m) {
    const conv = this.state.conv(m.conversation_id);
    if (!conv) {
      // A conversation we have not heard of yet: the list has it.
      this.loadConversations().catch(() => {});
      return;
    }
    if (m.sender === this.state.me.username) this.dropPending(conv.id, m.client_msg_id);
    const fresh = this.state.addMessage(m);
    this.onThreadMessage(m);
    if (isEntry(m)) {
      // An edit or deletion: redraw what it changed; nothing to announce.
      if (conv.id === this.selectedId) {
        this.requestDraw({ messages: true, stick: true });
        this.markRead(conv);
      }
      this.requestDraw({ list: true });
      return;
    }
    if (!fresh) {
      this.requestDraw({ list: true }); // the preview may have changed
      return;
    }
    if (conv.typing.delete(m.sender) && conv.id === this.selectedId) renderTyping(this.state, conv);
    if (m.sender === this.state.me.username && m.kind === 'text' && m.seq > conv.readSeq) {
      // What I wrote (here, on another device or over REST), I have read, and what came
      // before it: move the cursor on the server too, so every device agrees.
      conv.readSeq = m.seq;
      this.connection.notify({ type: 'read', conversation_id: conv.id, seq: m.seq });
    }
    if (conv.id === this.selectedId) {
      this.requestDraw({ messages: true, stick: true });
      this.markRead(conv);
      if (m.sender !== this.state.me.username) {
        $('announcer').textContent = m.kind === 'text' ? `${this.state.displayName(m.sender)}: ${m.body}` : m.body;
      }
    } else if (m.sender !== this.state.me.username) {
      this.notify(conv, m);
    }
    if (document.hidden && conv.id === this.selectedId && m.sender !== this.state.me.username) this.notify(conv, m);
    this.requestDraw({ list: true });
  },

  /** An org broadcast (live, or stored while away): shown above the chat until dismissed. */
  onBroadcast(b) {
    this.broadcasts = this.broadcasts || [];
    if (this.broadcasts.some((x) => x.id === b.id)) return;
    this.broadcasts.unshift({ ...b, acked: false, dismissed: false });
    this.drawBroadcasts();
    $('announcer').textContent = `Broadcast from ${b.author}: ${b.body}`;
    // Urgent ones (safety) alert even on do-not-disturb.
    this.notifyBroadcast(b);
  },

  drawBroadcasts() {
    renderBroadcasts(this.broadcasts || [],
      (b) => {
        b.acked = true;
        this.connection.notify({ type: 'ack_broadcast', broadcast_id: b.id });
        this.drawBroadcasts();
      },
      (b) => {
        b.dismissed = true;
        this.drawBroadcasts();
      });
  },

  onConversation(c) {
    const conv = this.state.upsertConversation(c);
    if (!conv.isMember(this.state.me.username) && this.selectedId === conv.id) {
      this.select(null);
    }
    this.learnNames(c.members);
    this.watch(c.members);
    this.drawList();
    if (conv.id === this.selectedId) this.drawChat();
    this.onConversationChanged(conv.id);
  },

  onSynced(conversations) {
    const listed = new Set(conversations.map((c) => c.id));
    let unknown = false;
    for (const c of conversations) {
      if (!this.state.conv(c.id)) unknown = true;
      this.state.upsertConversation(c);
    }
    for (const conv of this.state.conversations.values()) {
      if (!listed.has(conv.id)) conv.members = conv.members.filter((u) => u !== this.state.me.username);
    }
    if (unknown) this.loadConversations().catch(() => {});
    // Watch everyone shown, myself included: that answer tells my own status.
    this.watch([this.state.me.username, ...this.state.watchedPeople()]);
    if (this.selectedId !== null && !this.selected()) this.select(null);
    this.drawList();
    const open = this.selected();
    if (open) {
      this.drawChat();
      this.markRead(open);
      // Read pushes sent while we were away are lost: fetch the cursors again.
      this.loadReads(open).then(() => this.drawMessages()).catch(() => {});
    }
  },

  onTyping({ conversation_id: id, user }) {
    const conv = this.state.conv(id);
    if (!conv) return;
    conv.typing.set(user, Date.now() + TYPING_SHOWN_MS);
    if (id === this.selectedId) renderTyping(this.state, conv);
  },

  onRead({ conversation_id: id, user, seq }) {
    const conv = this.state.conv(id);
    if (!conv) return;
    if (user === this.state.me.username) {
      conv.readSeq = Math.max(conv.readSeq, seq);
      this.requestDraw({ list: true });
    } else {
      conv.reads.set(user, Math.max(conv.reads.get(user) || 0, seq));
      if (id === this.selectedId) this.requestDraw({ messages: true });
    }
  },

  onPresence(p) {
    if (p.user === this.state.me.username) {
      // My own status, as others see it (another device may have changed it). This
      // session is connected, so `offline` here means "appear offline" was chosen.
      this.myStatus = p.status;
      this.myText = p.text;
      this.state.presence.set(p.user, { status: p.status, text: p.text });
      this.drawMe();
      return;
    }
    this.state.presence.set(p.user, { status: p.status, text: p.text });
    for (const dot of document.querySelectorAll(`[data-presence-of="${CSS.escape(p.user)}"]`)) {
      dot.className = `dot ${p.status}`;
    }
    const conv = this.selected();
    if (conv) renderChatHeader(this.state, conv);
    if (conv && conv.kind === 'direct') this.drawMessages();
  },

  onError(frame) {
    for (const [convId, list] of this.pending) {
      const failed = list.find((p) => p.frameId === frame.id);
      if (failed) {
        if (frame.code === 'rate_limited') {
          // Same frame, same key, after the wait the server asked for.
          const send = this.connection.pendingSends.get(failed.client_msg_id);
          setTimeout(() => send && this.connection.rawSend(send), frame.retry_after_ms || 1000);
          return;
        }
        this.dropPending(convId, failed.client_msg_id);
        this.connection.pendingSends.delete(failed.client_msg_id);
        this.flash(`Not sent: ${frame.message}`);
        if (convId === this.selectedId) this.drawMessages();
        return;
      }
    }
  },

  onConnectionState(state, detail) {
    const banner = $('connection-banner');
    document.body.classList.toggle('offline', state !== 'online');
    clearInterval(this.countdown);
    if (state === 'online') {
      banner.hidden = true;
      banner.className = 'banner';
    } else if (state === 'connecting') {
      banner.hidden = false;
      banner.className = 'banner connecting';
      banner.replaceChildren('Connecting…');
    } else if (state === 'offline' && detail.busy) {
      // The server refused the sign-in for now and said when to come back: a status,
      // not an error, and no "Retry now" (it would only be refused again).
      banner.hidden = false;
      banner.className = 'banner busy';
      const why = detail.busy === 'rate_limited' ? 'Too many sign-ins from this address. ' : 'The server is busy. ';
      const draw = () => {
        const seconds = Math.max(0, Math.ceil((detail.retryAt - Date.now()) / 1000));
        banner.replaceChildren(
          el('strong', {}, why),
          `Retrying${seconds ? ` in ${seconds} s` : ''}… Messages you write are sent once you are connected.`,
        );
      };
      draw();
      this.countdown = setInterval(draw, 1000);
    } else if (state === 'offline') {
      banner.hidden = false;
      banner.className = 'banner offline';
      const draw = () => {
        const seconds = Math.max(0, Math.ceil((detail.retryAt - Date.now()) / 1000));
        banner.replaceChildren(
          el('strong', {}, detail.restarting ? 'The server is restarting. ' : 'You are offline. '),
          `Messages you write are sent when the connection is back. Reconnecting${seconds ? ` in ${seconds} s` : ''}… `,
          el('button', { type: 'button', class: 'link-button', onclick: () => this.connection.reconnectNow() }, 'Retry now'),
        );
      };
      draw();
      this.countdown = setInterval(draw, 1000);
    } else if (state === 'unauthenticated') {
      this.logout(true);
    }
  }
};
