// Message search (GET /api/v1/search): the box above the conversation list, its results
// with the matched words marked, paging, and opening a result's conversation. Results
// are drawn as text nodes; the server's highlight pieces alternate plain and matched.

import { $, el } from './dom.js';
import { formatShort } from './format.js';

const PAGE = 20;

export const searchMethods = {
  wireSearch() {
    const box = $('message-search');
    box.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        this.searchMessages(box.value.trim(), 0);
      }
      if (event.key === 'Escape') this.closeSearch();
    });
    box.addEventListener('input', () => {
      if (!box.value.trim()) this.closeSearch();
    });
  },

  closeSearch() {
    $('message-search').value = '';
    $('message-results').hidden = true;
    $('message-results').replaceChildren();
    this.searchState = null;
  },

  async searchMessages(q, offset) {
    const list = $('message-results');
    if (!q) {
      this.closeSearch();
      return;
    }
    list.hidden = false;
    if (offset === 0) {
      this.searchState = { q, results: [], hasMore: false };
      list.replaceChildren(el('li', { class: 'muted empty' }, 'Searching…'));
    }
    try {
      const answer = await this.api('GET', `/search?q=${encodeURIComponent(q)}&limit=${PAGE}&offset=${offset}`);
      if (!this.searchState || this.searchState.q !== q) return; // a newer search replaced it
      this.searchState.results.push(...answer.results);
      this.searchState.hasMore = answer.has_more;
      this.drawSearch();
    } catch (e) {
      list.replaceChildren(el('li', { class: 'error empty', role: 'alert' }, e.message));
    }
  },

  drawSearch() {
    const { q, results, hasMore } = this.searchState;
    const list = $('message-results');
    const items = results.map((hit) => {
      const m = hit.message;
      const conv = this.state.conv(m.conversation_id);
      const where = conv ? this.state.title(conv) : `#${m.conversation_id}`;
      const excerpt = el('span', { class: 'hit-text' },
        hit.highlight.map((piece, i) => (i % 2 === 1 ? el('mark', {}, piece) : piece)));
      return el('li', { class: 'hit' },
        el('button', {
          type: 'button', class: 'hit-button',
          'aria-label': `${m.author || this.state.displayName(m.sender)} in ${where}: ${m.body}`,
          onclick: () => this.openHit(m),
        },
        el('span', { class: 'hit-head' },
          el('strong', {}, m.author || this.state.displayName(m.sender)),
          el('span', { class: 'muted' }, ` in ${where} · ${formatShort(m.ts)}`)),
        excerpt));
    });
    if (!results.length) items.push(el('li', { class: 'muted empty' }, 'No messages found.'));
    if (hasMore) {
      items.push(el('li', {}, el('button', {
        type: 'button', class: 'link-button', onclick: () => this.searchMessages(q, results.length),
      }, 'More results')));
    }
    list.replaceChildren(...items);
  },

  /** Opens the conversation of a result and points at the message when it is loaded. */
  async openHit(m) {
    await this.select(m.conversation_id);
    const node = document.querySelector(`#message-list [data-seq="${m.seq}"]`);
    if (node) {
      node.scrollIntoView({ block: 'center' });
      node.classList.add('found');
      setTimeout(() => node.classList.remove('found'), 2000);
    }
  },
};
