// Rendering: the conversation list, the open conversation, people lists and avatars.
// Every function builds nodes with `el` (text as text nodes) from the State.

import { $, el } from './dom.js';
import { replyLabel } from './threads.js';
import { formatDay, formatShort, formatTime, hue, initials, renderBody, sameDay, statusLabel } from './format.js';

export function avatar(state, name, { username, size = '' } = {}) {
  const node = el('span', { class: `avatar ${size}`, 'aria-hidden': 'true' }, initials(name));
  node.style.setProperty('--hue', hue(name));
  if (username) node.append(presenceDot(state, username));
  return node;
}

export function presenceDot(state, username) {
  const { status } = state.statusOf(username);
  return el('span', { class: `dot ${status}`, title: statusLabel(status), dataset: { presenceOf: username } });
}

/** One line about a person: "Available · In a meeting". */
export function presenceLine(state, username) {
  const { status, text } = state.statusOf(username);
  return text ? `${statusLabel(status)} · ${text}` : statusLabel(status);
}

function previewText(state, conv) {
  const m = conv.preview;
  if (!m) return conv.kind === 'group' ? `${conv.members.length} members` : 'No messages yet';
  if (m.kind === 'system') return m.author ? `${m.author}: ${m.body}` : m.body;
  if (m.kind === 'broadcast') return `Broadcast: ${m.body}`;
  const who = m.sender === state.me.username ? 'You' : state.displayName(m.sender).split(' ')[0];
  if (m.deleted) return `${who} deleted a message`;
  if (!m.body && m.attachments && m.attachments.length) {
    const name = `📎 ${m.attachments[0].name}`;
    return conv.kind === 'group' || m.sender === state.me.username ? `${who}: ${name}` : name;
  }
  return conv.kind === 'group' || m.sender === state.me.username ? `${who}: ${m.body}` : m.body;
}

export function renderConversationList(state, selectedId, onSelect) {
  const list = $('conversation-list');
  const items = state.sorted().map((conv) => {
    const title = state.title(conv);
    const unread = conv.unread();
    const peer = state.peer(conv);
    const label = `${title}${unread ? `, ${unread} unread` : ''}`;
    return el(
      'li',
      {},
      el(
        'button',
        {
          type: 'button',
          class: `conversation${conv.id === selectedId ? ' selected' : ''}${unread ? ' has-unread' : ''}`,
          'aria-label': label,
          'aria-current': conv.id === selectedId ? 'true' : undefined,
          dataset: { conversation: conv.id },
          onclick: () => onSelect(conv.id),
        },
        conv.kind === 'group' ? groupAvatar(title) : avatar(state, title, { username: peer }),
        el(
          'span',
          { class: 'conversation-text' },
          el('span', { class: 'conversation-top' },
            el('span', { class: 'conversation-name' }, title),
            el('span', { class: 'conversation-time' }, conv.preview ? formatShort(conv.preview.ts) : '')),
          el('span', { class: 'conversation-bottom' },
            el('span', { class: 'conversation-preview' }, previewText(state, conv)),
            unread ? el('span', { class: 'badge', 'aria-hidden': 'true' }, unread > 99 ? '99+' : String(unread)) : null),
        ),
      ),
    );
  });
  list.replaceChildren(...items);
  $('empty-list').hidden = items.length > 0;
}

function groupAvatar(name) {
  const node = el('span', { class: 'avatar group', 'aria-hidden': 'true' }, initials(name));
  node.style.setProperty('--hue', hue(name));
  return node;
}

/** A list of people (search results, members) with a button per person. */
export function renderPeople(list, state, users, actions) {
  list.replaceChildren(
    ...users.map((u) =>
      el(
        'li',
        { class: 'person', dataset: { username: u.username } },
        avatar(state, u.display_name || u.username, { username: u.username, size: 'small' }),
        el('span', { class: 'person-text' },
          el('span', { class: 'person-name' }, u.display_name || u.username,
            u.username === state.me.username ? el('span', { class: 'muted' }, ' (you)') : null),
          el('span', { class: 'person-org muted' }, [u.username, u.org].filter(Boolean).join(' · '))),
        ...actions(u),
      ),
    ),
  );
}

export function renderChatHeader(state, conv) {
  $('chat-name').textContent = state.title(conv);
  const peer = state.peer(conv);
  const header = $('chat-avatar');
  const fresh = conv.kind === 'group' ? groupAvatar(state.title(conv)) : avatar(state, state.title(conv), { username: peer });
  fresh.id = 'chat-avatar';
  header.replaceWith(fresh);
  let subtitle;
  if (conv.kind === 'group') {
    subtitle = conv.members.map((m) => state.displayName(m)).join(', ');
  } else if (peer) {
    subtitle = presenceLine(state, peer);
  } else {
    subtitle = 'Notes to yourself';
  }
  $('chat-subtitle').textContent = subtitle;
  $('members-button').hidden = conv.kind !== 'group';
}

/** Delivery state of one of my messages, as words. */
function receipt(state, conv, m, pending) {
  if (pending) return { text: 'Sending…', cls: 'pending' };
  const others = conv.members.filter((u) => u !== state.me.username);
  const readers = others.filter((u) => (conv.reads.get(u) || 0) >= m.seq);
  if (others.length && readers.length === others.length) {
    return { text: conv.kind === 'group' ? 'Read by everyone' : 'Read', cls: 'read' };
  }
  if (readers.length) return { text: `Read by ${readers.map((u) => state.displayName(u)).join(', ')}`, cls: 'read' };
  const online = others.some((u) => state.statusOf(u).status !== 'offline');
  return online ? { text: 'Delivered', cls: 'delivered' } : { text: 'Sent', cls: 'sent' };
}

/**
 * Renders the open conversation's messages: day separators, grouped runs of one
 * sender, system messages as notices, pending sends at the end.
 */
export function renderMessages(state, conv, pending, actions = {}) {
  const list = $('message-list');
  const nodes = [];
  let previous = null; // the message before, for grouping runs of one sender
  let lastDay = null;
  const all = [...conv.ordered(), ...pending.map((p) => ({ ...p, pending: true }))];
  const mineLast = [...all].reverse().find((m) => m.sender === state.me.username && m.kind === 'text');
  for (const m of all) {
    const day = new Date(m.ts);
    if (!lastDay || !sameDay(lastDay, day)) {
      nodes.push(el('li', { class: 'day-separator', role: 'separator' }, el('span', {}, formatDay(m.ts))));
      previous = null;
    }
    lastDay = day;
    if (m.kind === 'broadcast') {
      // From a tool or bot (an admin account): a notice, never a chat bubble.
      nodes.push(
        el('li', { class: 'broadcast-message', dataset: { seq: m.seq }, role: 'note' },
          el('div', { class: 'broadcast-head' },
            el('span', { class: 'broadcast-label' }, 'Broadcast'),
            el('span', { class: 'broadcast-from' }, `from ${state.displayName(m.sender)}`),
            el('time', { datetime: new Date(m.ts).toISOString() }, formatTime(m.ts))),
          el('div', { class: 'body' }, renderBody(m.body))),
      );
      previous = null;
      continue;
    }
    if (m.kind === 'system' && m.author) {
      // Posted by a webhook (a tool): a notice under the tool's name.
      nodes.push(
        el('li', { class: 'broadcast-message webhook-message', dataset: { seq: m.seq }, role: 'note' },
          el('div', { class: 'broadcast-head' },
            el('span', { class: 'broadcast-label' }, 'App'),
            el('span', { class: 'broadcast-from' }, m.author),
            el('time', { datetime: new Date(m.ts).toISOString() }, formatTime(m.ts))),
          el('div', { class: 'body' }, renderBody(m.body))),
      );
      previous = null;
      continue;
    }
    if (m.kind === 'system') {
      nodes.push(
        el('li', { class: 'system-message', dataset: { seq: m.seq } },
          el('span', { class: 'system-label' }, 'System'),
          el('span', { class: 'system-body' }, m.body),
          el('time', { datetime: new Date(m.ts).toISOString() }, formatTime(m.ts))),
      );
      previous = null;
      continue;
    }
    const mine = m.sender === state.me.username;
    const continued = previous && previous.sender === m.sender && m.ts - previous.ts < 5 * 60_000;
    const name = m.author || state.displayName(m.sender);
    const files = m.deleted || !actions.attachments ? null : actions.attachments(m);
    const bubble = m.deleted
      ? el('div', { class: 'bubble deleted' }, el('div', { class: 'body' }, 'This message was deleted'))
      : el('div', { class: 'bubble' }, m.body || !files ? el('div', { class: 'body' }, renderBody(m.body)) : null, files);
    const meta = el('div', { class: 'meta' }, el('time', { datetime: new Date(m.ts).toISOString(), title: new Date(m.ts).toLocaleString() }, formatTime(m.ts)));
    if (m.edited_at && !m.deleted) meta.append(el('span', { class: 'edited', title: `Edited ${new Date(m.edited_at).toLocaleString()}` }, 'edited'));
    if (mine && !m.pending && !m.deleted && m.kind === 'text' && actions.onEdit) {
      const confirming = actions.confirmingDelete === m.seq;
      meta.append(
        el('button', { type: 'button', class: 'link-button message-action', 'aria-label': 'Edit message', onclick: () => actions.onEdit(m) }, 'Edit'),
        el('button', { type: 'button', class: `link-button message-action${confirming ? ' danger-text' : ''}`, 'aria-label': confirming ? 'Confirm delete' : 'Delete message', onclick: () => actions.onDelete(m) }, confirming ? 'Delete?' : 'Delete'),
      );
    }
    if (!m.pending && !m.deleted && m.kind === 'text' && actions.onThread) {
      meta.append(el('button', { type: 'button', class: `link-button thread-link${m.reply_count ? ' has-replies' : ''}`, 'aria-label': m.reply_count ? `${replyLabel(m.reply_count)}: open the thread` : 'Reply in a thread', onclick: () => actions.onThread(m) }, replyLabel(m.reply_count)));
    }
    let reactions = null;
    if (!m.pending && !m.deleted && actions.onReact) {
      // Each emoji with its count (mine highlighted; a click toggles mine), and a quick 👍.
      const list = m.reactions || [];
      reactions = el('div', { class: 'reactions' },
        ...list.map((r) => el('button', { type: 'button', class: `reaction${r.me ? ' mine' : ''}`, 'aria-pressed': r.me ? 'true' : 'false', 'aria-label': `${r.emoji} ${r.count}`, onclick: () => actions.onReact(m, r.emoji, !r.me) }, `${r.emoji} ${r.count}`)),
        list.some((r) => r.emoji === '👍') ? null : el('button', { type: 'button', class: 'reaction add-reaction', 'aria-label': 'React with 👍', onclick: () => actions.onReact(m, '👍', true) }, '+👍'));
    }
    if (mine && m === mineLast) {
      const r = receipt(state, conv, m, m.pending);
      meta.append(el('span', { class: `receipt ${r.cls}` }, r.text));
    } else if (mine && m.pending) {
      meta.append(el('span', { class: 'receipt pending' }, 'Sending…'));
    }
    nodes.push(
      el('li', { class: `message${mine ? ' mine' : ''}${continued ? ' continued' : ''}${m.pending ? ' pending' : ''}`, dataset: { seq: m.seq ?? '' } },
        mine || continued ? null : avatar(state, name, { size: 'small' }),
        el('div', { class: 'message-main' },
          mine || continued ? null : el('div', { class: 'sender' }, name,
            m.author ? el('span', { class: 'bot-badge', title: 'An automated account' }, 'BOT') : null),
          bubble,
          reactions,
          meta)),
    );
    previous = m;
  }
  list.replaceChildren(...nodes);
  $('load-older').hidden = !conv.hasOlder || conv.oldestLoaded === null || conv.oldestLoaded <= 1;
}

export function renderTyping(state, conv) {
  const now = Date.now();
  const who = [...conv.typing.entries()].filter(([, until]) => until > now).map(([u]) => state.displayName(u).split(' ')[0]);
  $('typing').textContent = who.length === 0 ? '' : who.length === 1 ? `${who[0]} is typing…` : `${who.join(', ')} are typing…`;
}

export function renderMe(state, status) {
  const me = state.me;
  $('me-name').textContent = me.display_name || me.username;
  const node = avatar(state, me.display_name || me.username);
  node.id = 'me-avatar';
  node.append(el('span', { class: `dot ${status}`, title: statusLabel(status) }));
  $('me-avatar').replaceWith(node);
}

/** Draws the org broadcasts received this session, newest first, with their buttons. */
export function renderBroadcasts(broadcasts, onAck, onDismiss) {
  const box = $('broadcasts');
  const shown = broadcasts.filter((b) => !b.dismissed);
  box.hidden = shown.length === 0;
  box.replaceChildren(...shown.map((b) =>
    el('div', { class: `org-broadcast${b.priority ? ' priority' : ''}`, role: 'alert', dataset: { id: b.id } },
      el('div', { class: 'broadcast-head' },
        el('span', { class: 'broadcast-label' }, b.priority ? 'Urgent broadcast' : 'Broadcast'),
        el('span', { class: 'broadcast-from' }, `from ${b.author}${b.org ? ` to ${b.org}` : ''}`),
        el('time', { datetime: new Date(b.ts).toISOString() }, formatTime(b.ts))),
      el('div', { class: 'body' }, renderBody(b.body)),
      el('div', { class: 'broadcast-actions' },
        b.ack_required
          ? el('button', { type: 'button', class: 'primary small ack-button', disabled: b.acked, onclick: () => onAck(b) }, b.acked ? 'Acknowledged' : 'Acknowledge')
          : null,
        el('button', { type: 'button', class: 'secondary small dismiss-button', onclick: () => onDismiss(b) }, 'Dismiss')))));
}
