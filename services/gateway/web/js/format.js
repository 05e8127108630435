// How things read: message bodies (links, `code`, **bold**), times, names, statuses.
// Bodies are turned into DOM nodes piece by piece; no string is ever parsed as HTML.

import { el } from './dom.js';

const LINK = /\bhttps?:\/\/[^\s<>"]+/g;

/** A message body as nodes: `code` spans, **bold** runs, clickable http(s) links. */
export function renderBody(text) {
  const fragment = document.createDocumentFragment();
  // Code spans first: nothing inside them is formatted further.
  const parts = text.split(/(`[^`\n]+`)/g);
  for (const part of parts) {
    if (part.length > 2 && part.startsWith('`') && part.endsWith('`')) {
      fragment.append(el('code', {}, part.slice(1, -1)));
    } else {
      appendBold(fragment, part);
    }
  }
  return fragment;
}

function appendBold(parent, text) {
  const parts = text.split(/(\*\*[^*\n]+\*\*)/g);
  for (const part of parts) {
    if (part.length > 4 && part.startsWith('**') && part.endsWith('**')) {
      const strong = el('strong');
      appendLinks(strong, part.slice(2, -2));
      parent.append(strong);
    } else {
      appendLinks(parent, part);
    }
  }
}

function appendLinks(parent, text) {
  let at = 0;
  for (const match of text.matchAll(LINK)) {
    // Trailing punctuation belongs to the sentence, not the link.
    const url = match[0].replace(/[.,;:!?)\]]+$/, '');
    parent.append(text.slice(at, match.index));
    parent.append(safeLink(url));
    at = match.index + url.length;
  }
  parent.append(text.slice(at));
}

function safeLink(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return document.createTextNode(url);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return document.createTextNode(url);
  }
  return el('a', { href: parsed.href, target: '_blank', rel: 'noopener noreferrer' }, url);
}

export function formatTime(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** "Today", "Yesterday", or the date, for day separators. */
export function formatDay(ts) {
  const day = new Date(ts);
  const today = new Date();
  const yesterday = new Date();
  yesterday.setDate(today.getDate() - 1);
  if (sameDay(day, today)) return 'Today';
  if (sameDay(day, yesterday)) return 'Yesterday';
  return day.toLocaleDateString([], { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}

/** A short time for the conversation list: the time today, else the date. */
export function formatShort(ts) {
  const day = new Date(ts);
  if (sameDay(day, new Date())) return formatTime(ts);
  return day.toLocaleDateString([], { month: 'short', day: 'numeric' });
}

export function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

export function initials(name) {
  const words = (name || '?').trim().split(/[\s._-]+/).filter(Boolean);
  const letters = words.length > 1 ? words[0][0] + words[1][0] : (words[0] || '?').slice(0, 2);
  return letters.toUpperCase();
}

const STATUS_LABELS = {
  available: 'Available',
  busy: 'Busy',
  away: 'Away',
  do_not_disturb: 'Do not disturb',
  offline: 'Offline',
};

export function statusLabel(status) {
  return STATUS_LABELS[status] || 'Offline';
}

/** A stable hue per name, so avatars are told apart at a glance. */
export function hue(name) {
  let h = 0;
  for (const c of name || '') h = (h * 31 + c.charCodeAt(0)) % 360;
  return h;
}
