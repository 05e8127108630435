// Threads: the "Reply" / "N replies" link under a message opens its thread in a dialog
// (GET /api/v1/conversations/{id}/messages/{seq}/thread), where replies are read and
// sent (`send` with `thread_seq`). Replies arriving live are added to the open thread;
// in the conversation they only raise the root's reply count.

import { newClientMsgId } from './connection.js';
import { $, el } from './dom.js';
import { formatTime, renderBody } from './format.js';
import { isEntry } from './state.js';

export function replyLabel(n) {
  if (!n) return 'Reply';
  return n === 1 ? '1 reply' : `${n} replies`;
}

export const threadMethods = {
  wireThread() {
    $('thread-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.sendReply();
    });
    $('thread-input').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        this.sendReply();
      }
    });
    $('thread-dialog').addEventListener('close', () => {
      this.thread = null;
    });
  },

  async openThread(m) {
    const thread = { conversation_id: m.conversation_id, seq: m.seq, root: m, replies: [] };
    this.thread = thread;
    $('thread-error').textContent = '';
    $('thread-input').value = '';
    this.drawThread();
    if (!$('thread-dialog').open) $('thread-dialog').showModal();
    $('thread-input').focus();
    try {
      const page = await this.api('GET', `/conversations/${m.conversation_id}/messages/${m.seq}/thread?limit=1000`);
      if (this.thread !== thread) return;
      const seen = new Set(page.replies.map((r) => r.seq));
      // Replies that arrived live while the page was on its way are kept.
      thread.replies = [...page.replies, ...thread.replies.filter((r) => !seen.has(r.seq))];
      thread.root = page.root;
    } catch (e) {
      if (this.thread === thread) $('thread-error').textContent = `Could not load the thread: ${e.message}`;
    }
    this.drawThread();
  },

  /** A live message: a reply to the open thread, or an edit/deletion of one of its messages. */
  onThreadMessage(m) {
    const thread = this.thread;
    if (!thread || m.conversation_id !== thread.conversation_id) return;
    // Reactions show in the conversation, not in the thread dialog.
    if (m.kind === 'react' || m.kind === 'unreact') return;
    if (isEntry(m)) {
      const target = [thread.root, ...thread.replies].find((x) => x.seq === m.ref_seq);
      if (!target || (m.kind === 'edit' && m.deleted)) return;
      if (m.kind === 'edit') Object.assign(target, { body: m.body, edited_at: m.ts });
      else Object.assign(target, { body: '', deleted: true });
    } else if (m.thread_seq === thread.seq && !thread.replies.some((r) => r.seq === m.seq)) {
      thread.replies.push(m);
      thread.replies.sort((a, b) => a.seq - b.seq);
    } else {
      return;
    }
    this.drawThread();
  },

  drawThread() {
    const thread = this.thread;
    if (!thread) return;
    const item = (m, root) => {
      const name = m.author || this.state.displayName(m.sender);
      return el('li', { class: `thread-message${root ? ' thread-root' : ''}`, dataset: { seq: m.seq } },
        el('div', { class: 'sender' }, name,
          el('time', { datetime: new Date(m.ts).toISOString() }, formatTime(m.ts))),
        m.deleted
          ? el('div', { class: 'body deleted' }, 'This message was deleted')
          : el('div', { class: 'body' }, renderBody(m.body)));
    };
    const live = thread.replies.filter((r) => !r.deleted).length;
    $('thread-count').textContent = live === 1 ? '1 reply' : `${live} replies`;
    $('thread-messages').replaceChildren(item(thread.root, true), ...thread.replies.map((r) => item(r, false)));
    const box = $('thread-messages');
    box.scrollTop = box.scrollHeight;
  },

  sendReply() {
    const thread = this.thread;
    const input = $('thread-input');
    const body = input.value;
    if (!thread || !body.trim()) return;
    input.value = '';
    $('thread-error').textContent = '';
    this.connection
      .request({ type: 'send', conversation_id: thread.conversation_id, thread_seq: thread.seq, client_msg_id: newClientMsgId(), body })
      .catch((e) => {
        $('thread-error').textContent = `Could not send: ${e.message}`;
        if (!input.value) input.value = body;
      });
  },
};
