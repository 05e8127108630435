// What the client knows: conversations with their messages (keyed by seq, so a message
// seen twice is stored once), people, presence, read cursors and typing. Views read it;
// frames from the server and REST answers write it. No DOM here.

export class State {
  constructor(me) {
    this.me = me; // UserInfo of the signed-in person
    this.conversations = new Map(); // id -> Conv
    this.users = new Map(); // username -> UserInfo
    this.presence = new Map(); // username -> {status, text}
    this.users.set(me.username, me);
  }

  conv(id) {
    return this.conversations.get(Number(id));
  }

  /** Records a conversation record (from a list, an answer or a push). */
  upsertConversation(c) {
    let conv = this.conversations.get(c.id);
    if (!conv) {
      conv = new Conv(c);
      conv.me = this.me.username;
      this.conversations.set(c.id, conv);
    }
    conv.kind = c.kind;
    conv.name = c.name;
    conv.members = c.members;
    conv.owner = c.owner;
    conv.lastSeq = Math.max(conv.lastSeq, c.last_seq);
    // A record whose last_seq is below what we hold means the server's data changed
    // under us (a restored backup): start this conversation over.
    if (c.last_seq < conv.heldSeq) conv.reset(c.last_seq);
    if (c.read_seq !== undefined) conv.readSeq = Math.max(conv.readSeq, c.read_seq);
    return conv;
  }

  /** Stores a message once; returns true when it was new. */
  addMessage(m) {
    const conv = this.conversations.get(m.conversation_id);
    if (!conv) return false;
    return conv.add(m);
  }

  /** Last seq held per conversation, for `auth.since`. */
  since() {
    const since = {};
    for (const conv of this.conversations.values()) {
      if (conv.isMember(this.me.username)) since[conv.id] = conv.heldSeq;
    }
    return since;
  }

  displayName(username) {
    const user = this.users.get(username);
    return (user && user.display_name) || username;
  }

  /** The name a conversation is shown under: the group's, or the other person's. */
  title(conv) {
    if (conv.kind === 'group') return conv.name;
    const other = conv.members.find((m) => m !== this.me.username);
    return other ? this.displayName(other) : `${this.displayName(this.me.username)} (notes)`;
  }

  /** The other person of a direct conversation (undefined for groups and notes). */
  peer(conv) {
    if (conv.kind !== 'direct') return undefined;
    return conv.members.find((m) => m !== this.me.username);
  }

  statusOf(username) {
    return this.presence.get(username) || { status: 'offline', text: '' };
  }

  /** Conversations, most recent activity first. */
  sorted() {
    return [...this.conversations.values()]
      .filter((c) => c.isMember(this.me.username))
      .sort((a, b) => b.activity() - a.activity() || b.id - a.id);
  }

  /** Every person whose presence the client shows. */
  watchedPeople() {
    const people = new Set();
    for (const conv of this.conversations.values()) {
      for (const m of conv.members) if (m !== this.me.username) people.add(m);
    }
    return [...people];
  }
}

/** An edit, delete or reaction entry: it changes another message and is not shown
 * itself. */
export function isEntry(m) {
  return m.kind === 'edit' || m.kind === 'delete' || isReaction(m);
}

function isReaction(m) {
  return m.kind === 'react' || m.kind === 'unreact';
}

/** Applies a react/unreact entry to its message: the entry carries the emoji's count
 * after the change, so applying it again (a backfill) sets the same number. */
function applyReaction(target, m, me) {
  const count = m.reactions && m.reactions[0] ? m.reactions[0].count : 0;
  const list = (target.reactions || []).slice();
  let r = list.find((x) => x.emoji === m.body);
  if (!r) {
    r = { emoji: m.body, count: 0, me: false };
    list.push(r);
  }
  r.count = count;
  if (m.sender === me) r.me = m.kind === 'react';
  target.reactions = list.filter((x) => x.count > 0);
}

export class Conv {
  constructor(c) {
    this.id = c.id;
    this.kind = c.kind;
    this.name = c.name;
    this.members = c.members;
    this.owner = c.owner; // username; groups only
    this.lastSeq = c.last_seq; // newest seq known to exist
    this.readSeq = c.read_seq || 0; // my read cursor
    this.messages = new Map(); // seq -> Message (the loaded window)
    this.heldSeq = c.last_seq; // everything up to here was seen (live stream resumes above)
    this.oldestLoaded = null; // lowest seq loaded, null before the first page
    this.hasOlder = true;
    this.preview = null; // newest message known, for the list
    this.reads = new Map(); // username -> read seq (others', seen this session)
    this.typing = new Map(); // username -> expiry time
    this.loaded = false; // newest page fetched
    this.me = null; // my username (reaction entries tell whether a reaction is mine)
  }

  isMember(username) {
    return this.members.includes(username);
  }

  reset(lastSeq) {
    this.messages.clear();
    this.heldSeq = lastSeq;
    this.lastSeq = lastSeq;
    this.oldestLoaded = null;
    this.hasOlder = true;
    this.loaded = false;
  }

  add(m) {
    if (this.messages.has(m.seq)) return false;
    if (this.loaded || m.seq > this.heldSeq) this.messages.set(m.seq, m);
    const isNew = m.seq > this.heldSeq;
    if (m.seq > this.heldSeq) this.heldSeq = m.seq;
    if (m.seq > this.lastSeq) this.lastSeq = m.seq;
    if (isReaction(m)) {
      const target = this.messages.get(m.ref_seq);
      if (target) applyReaction(target, m, this.me);
      return isNew;
    }
    if (isEntry(m)) {
      // An edit or delete entry changes the message it names (history already shows
      // older changes applied, so applying one twice does no harm).
      for (const target of [this.messages.get(m.ref_seq), this.preview]) {
        // An edit entry of a message deleted since comes without its text: skip it.
        if (!target || target.seq !== m.ref_seq || (m.kind === 'edit' && m.deleted)) continue;
        if (m.kind === 'edit') Object.assign(target, { body: m.body, edited_at: m.ts });
        else Object.assign(target, { body: '', deleted: true });
      }
      return isNew;
    }
    if (m.thread_seq && isNew) {
      // A new reply: its root (if loaded) has one more. History counted the older ones.
      const root = this.messages.get(m.thread_seq);
      if (root) root.reply_count = (root.reply_count || 0) + 1;
    }
    if (!this.preview || m.seq >= this.preview.seq) this.preview = m;
    if (this.oldestLoaded === null || m.seq < this.oldestLoaded) this.oldestLoaded = m.seq;
    return isNew;
  }

  /** Messages of the loaded window, oldest first (edit and delete entries left out, and
   * thread replies, which show in their thread). */
  ordered() {
    return [...this.messages.values()].filter((m) => !isEntry(m) && !m.thread_seq).sort((a, b) => a.seq - b.seq);
  }

  unread() {
    return Math.max(0, this.lastSeq - this.readSeq);
  }

  activity() {
    return this.preview ? this.preview.ts : 0;
  }
}
