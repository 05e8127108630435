// Attachments: the composer's attach button (an upload is a message of its own, which
// comes back over the socket like any other), and how a message shows its files: name,
// size and a Download button, and a thumbnail for images. Downloads need the bearer
// token, which an <img src> or a plain link cannot send, so files are fetched as blobs
// and shown through object URLs (kept per attachment id, so redraws cost nothing).

import { ApiError } from './api.js';
import { newClientMsgId } from './connection.js';
import { $, el } from './dom.js';

/** attachment id -> Promise of an object URL for its bytes. */
const blobs = new Map();

function fetchBlob(token, id) {
  if (!blobs.has(id)) {
    const loading = fetch(`/api/v1/attachments/${id}`, { headers: { Authorization: `Bearer ${token}` } })
      .then(async (response) => {
        if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
        return URL.createObjectURL(await response.blob());
      });
    // A failed fetch is tried again the next time the message is drawn.
    loading.catch(() => blobs.delete(id));
    blobs.set(id, loading);
  }
  return blobs.get(id);
}

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

const IMAGES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

/** The files of message `m` as nodes (none: null). */
export function renderAttachments(token, m) {
  if (!m.attachments || !m.attachments.length) return null;
  return el('div', { class: 'attachments' }, ...m.attachments.map((file) => {
    let thumbnail = null;
    if (IMAGES.includes(file.content_type)) {
      thumbnail = el('img', { class: 'thumbnail', alt: file.name, dataset: { attachment: file.id } });
      fetchBlob(token, file.id).then((url) => { thumbnail.src = url; }).catch(() => { thumbnail.alt = `${file.name} (could not load)`; });
    }
    const download = el('button', {
      type: 'button', class: 'link-button attachment-download', 'aria-label': `Download ${file.name}`,
      onclick: () => fetchBlob(token, file.id).then((url) => {
        const link = el('a', { href: url, download: file.name, hidden: true });
        document.body.append(link);
        link.click();
        link.remove();
      }).catch(() => {}),
    }, 'Download');
    return el('div', { class: 'attachment', dataset: { attachment: file.id } },
      thumbnail,
      el('div', { class: 'attachment-info' },
        el('span', { class: 'attachment-name' }, file.name),
        el('span', { class: 'attachment-size muted' }, formatSize(file.size)),
        download));
  }));
}

export const attachmentMethods = {
  wireAttachments() {
    const input = $('attach-input');
    $('attach-button').addEventListener('click', () => input.click());
    input.addEventListener('change', () => {
      const files = [...input.files];
      input.value = '';
      for (const file of files) this.uploadFile(file);
    });
  },

  /** Uploads a file into the open conversation; the message carrying it arrives live. */
  async uploadFile(file) {
    const conv = this.selected();
    if (!conv) return;
    const query = `name=${encodeURIComponent(file.name)}&client_msg_id=${encodeURIComponent(newClientMsgId())}`;
    try {
      const response = await fetch(`/api/v1/conversations/${conv.id}/attachments?${query}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': file.type || 'application/octet-stream' },
        body: file,
      });
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    } catch (e) {
      this.flash(`Could not send ${file.name}: ${e.message}`);
    }
  },
};
