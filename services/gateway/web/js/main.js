// The web client's entry point: resume a saved sign-in or show the sign-in form, then
// hand over to App (app.js).

import { api } from './api.js';
import { App, TOKEN_KEY } from './app.js';
import { $ } from './dom.js';

// ---- sign-in -----------------------------------------------------------------------

async function boot() {
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) {
    try {
      const me = await api('GET', '/me', undefined, token);
      await new App(token, me).start();
      return;
    } catch (e) {
      if (e.status === 401) localStorage.removeItem(TOKEN_KEY);
      else {
        showLogin(`Cannot reach the server: ${e.message}`);
        return;
      }
    }
  }
  showLogin('');
}

function showLogin(message) {
  $('app-view').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message;
  $('login-username').focus();
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = $('login-submit');
  button.disabled = true;
  $('login-error').textContent = '';
  try {
    const { token, user } = await api('POST', '/login', {
      username: $('login-username').value.trim(),
      password: $('login-password').value,
    });
    localStorage.setItem(TOKEN_KEY, token);
    $('login-password').value = '';
    await new App(token, user).start();
  } catch (e) {
    let text = e.message;
    if (e.code === 'invalid_credentials') text = 'Wrong username or password.';
    if (e.code === 'rate_limited') {
      const seconds = Math.max(1, Math.ceil((e.retryAfterMs || 1000) / 1000));
      text = `Too many failed sign-ins. Try again in ${seconds} s.`;
    }
    $('login-error').textContent = text;
  } finally {
    button.disabled = false;
  }
});

boot();
