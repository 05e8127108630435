// The dialogs: a new group, a group's members, settings. Each is a <dialog> shown
// modally (Esc closes it, focus stays inside); they call back into the app for actions.

import { $, el } from './dom.js';
import { renderPeople } from './views.js';

/** Runs `search(query)` after typing pauses, rendering into `list`. */
export function searchBox(input, onResults, search) {
  let timer = null;
  let latest = 0;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const ticket = ++latest;
      const query = input.value.trim();
      const users = query ? await search(query).catch(() => []) : [];
      if (ticket === latest) onResults(users, query);
    }, 200);
  });
}

export function setupDialogs(app) {
  for (const dialog of document.querySelectorAll('dialog')) {
    for (const button of dialog.querySelectorAll('[data-close]')) {
      button.addEventListener('click', () => dialog.close());
    }
    // A click on the backdrop (outside the form) closes it too.
    dialog.addEventListener('click', (event) => {
      if (event.target === dialog) dialog.close();
    });
  }
  setupGroupDialog(app);
  setupMembersDialog(app);
  setupSettingsDialog(app);
}

function setupGroupDialog(app) {
  const chosen = new Map(); // username -> UserInfo
  const drawChosen = () => {
    $('group-chosen').replaceChildren(
      ...[...chosen.values()].map((u) =>
        el('li', { class: 'chip' }, u.display_name || u.username,
          el('button', { type: 'button', class: 'chip-remove', 'aria-label': `Remove ${u.display_name || u.username}`, onclick: () => { chosen.delete(u.username); drawChosen(); } }, '×'))),
    );
  };
  const drawResults = (users) => {
    const others = users.filter((u) => u.username !== app.state.me.username);
    renderPeople($('group-results'), app.state, others, (u) => [
      el('button', {
        type: 'button', class: 'secondary small', 'aria-label': `Add ${u.display_name || u.username}`,
        disabled: chosen.has(u.username),
        onclick: () => { chosen.set(u.username, u); drawChosen(); drawResults(users); },
      }, chosen.has(u.username) ? 'Added' : 'Add'),
    ]);
  };
  searchBox($('group-search'), drawResults, (q) => app.searchPeople(q));
  $('new-group-button').addEventListener('click', () => {
    chosen.clear();
    drawChosen();
    $('group-name').value = '';
    $('group-search').value = '';
    $('group-results').replaceChildren();
    $('group-error').textContent = '';
    $('group-dialog').showModal();
    $('group-name').focus();
  });
  $('group-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = $('group-name').value.trim();
    if (!name) return;
    $('group-error').textContent = '';
    try {
      await app.createGroup(name, [...chosen.keys()]);
      $('group-dialog').close();
    } catch (e) {
      $('group-error').textContent = e.message;
    }
  });
}

function setupMembersDialog(app) {
  let shownFor = null;
  const draw = () => {
    const conv = app.state.conv(shownFor);
    if (!conv) return;
    const members = conv.members.map((u) => app.state.users.get(u) || { username: u, display_name: u, org: '' });
    // Only the owner or an admin may remove others (anyone may leave, below).
    const me = app.state.me;
    const mayRemove = me.admin || conv.owner === me.username;
    renderPeople($('members-list'), app.state, members, (u) =>
      u.username === conv.owner ? [el('span', { class: 'tag' }, 'Owner')]
      : u.username === me.username || !mayRemove ? []
        : [el('button', {
          type: 'button', class: 'danger small', 'aria-label': `Remove ${u.display_name || u.username}`,
          onclick: () => act(() => app.removeMember(conv.id, u.username)),
        }, 'Remove')],
    );
  };
  const act = async (action) => {
    $('members-error').textContent = '';
    try {
      await action();
      draw();
    } catch (e) {
      $('members-error').textContent = e.message;
    }
  };
  searchBox($('members-search'), (users) => {
    const conv = app.state.conv(shownFor);
    const outside = users.filter((u) => conv && !conv.isMember(u.username));
    renderPeople($('members-results'), app.state, outside, (u) => [
      el('button', {
        type: 'button', class: 'secondary small', 'aria-label': `Add ${u.display_name || u.username} to the group`,
        onclick: () => act(async () => {
          await app.addMembers(conv.id, [u.username]);
          $('members-results').querySelector(`[data-username="${CSS.escape(u.username)}"]`)?.remove();
        }),
      }, 'Add'),
    ]);
  }, (q) => app.searchPeople(q));
  $('members-button').addEventListener('click', () => {
    shownFor = app.selectedId;
    $('members-search').value = '';
    $('members-results').replaceChildren();
    $('members-error').textContent = '';
    draw();
    $('members-dialog').showModal();
  });
  $('leave-button').addEventListener('click', () =>
    act(async () => {
      await app.removeMember(shownFor, app.state.me.username);
      $('members-dialog').close();
    }),
  );
  app.onConversationChanged = (id) => {
    if (id === shownFor && $('members-dialog').open) draw();
  };
}

function setupSettingsDialog(app) {
  const notifyState = () => {
    const permission = 'Notification' in window ? Notification.permission : 'unsupported';
    $('notify-state').textContent = {
      granted: 'On (muted while you are on do not disturb).',
      denied: 'Blocked in the browser settings.',
      default: '',
      unsupported: 'Not supported by this browser.',
    }[permission];
    $('notify-button').hidden = permission !== 'default';
  };
  $('settings-button').addEventListener('click', () => {
    $('idle-minutes').value = String(app.idleMinutes);
    notifyState();
    $('settings-dialog').showModal();
  });
  $('notify-button').addEventListener('click', async () => {
    if ('Notification' in window) await Notification.requestPermission();
    notifyState();
  });
  $('settings-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const minutes = Number($('idle-minutes').value);
    if (Number.isFinite(minutes) && minutes >= 0) app.setIdleMinutes(minutes);
    $('settings-dialog').close();
  });
  $('logout-button').addEventListener('click', () => app.logout());
}
