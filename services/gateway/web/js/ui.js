// Wiring the page's controls to App (app.js): the composer's keys, scrolling back, status,
// the directory search, and the activity that resets auto-away.

import { searchBox } from './dialogs.js';
import { $, el } from './dom.js';
import { presenceLine, renderPeople } from './views.js';

export const uiMethods = {
  wireUi() {
    $('composer').addEventListener('submit', (event) => {
      event.preventDefault();
      this.sendFromComposer();
    });
    $('composer-input').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.sendFromComposer();
      }
      if (event.key === 'Escape') this.cancelEdit();
    });
    $('composer-input').addEventListener('input', () => {
      this.resizeComposer();
      this.typed();
    });
    $('load-older').addEventListener('click', () => this.loadOlder());
    $('messages').addEventListener('scroll', () => {
      if ($('messages').scrollTop < 60) this.loadOlder();
    });
    $('back-button').addEventListener('click', () => this.select(null));
    $('status-select').addEventListener('change', () => this.setStatus($('status-select').value, $('status-text').value.trim()));
    $('status-text').addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        this.setStatus(this.myStatus, $('status-text').value.trim());
        $('status-text').blur();
      }
      if (event.key === 'Escape') {
        $('status-text').value = this.myText;
        $('status-text').blur();
      }
    });
    const results = $('search-results');
    searchBox($('people-search'), (users, query) => {
      results.hidden = !query;
      renderPeople(results, this.state, users, (u) => [
        el('button', {
          type: 'button', class: 'secondary small', 'aria-label': `Chat with ${u.display_name || u.username}`,
          onclick: () => this.openDirect(u.username).catch((e) => this.flash(e.message)),
        }, 'Chat'),
      ]);
      if (query && !users.length) results.replaceChildren(el('li', { class: 'muted empty' }, 'Nobody found.'));
      for (const item of results.querySelectorAll('.person')) {
        const name = item.dataset.username;
        const line = item.querySelector('.person-org');
        if (line && this.state.presence.has(name)) line.textContent += ` · ${presenceLine(this.state, name)}`;
      }
    }, (q) => this.searchPeople(q));
    $('people-search').addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        $('people-search').value = '';
        results.hidden = true;
      }
    });
    for (const type of ['pointerdown', 'keydown', 'mousemove', 'wheel', 'touchstart']) {
      window.addEventListener(type, () => this.active(), { passive: true });
    }
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) {
        this.active();
        const conv = this.selected();
        if (conv) this.markRead(conv);
      }
    });
  }
};
