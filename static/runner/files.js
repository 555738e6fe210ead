// The files panel: the session's workspace (/home/user) over the files HTTP contract (runner/urls.py):
// list and navigate, upload by button or drag-and-drop (one XHR per file, with a progress bar), preview,
// download, rename and delete.
import { $, el } from './dom.js';
import { formatSize, relativeText } from './format.js';

const HIGHLIGHT = { py: 'python', js: 'javascript', ts: 'typescript', sh: 'bash', json: 'json', md: 'markdown',
  html: 'xml', xml: 'xml', css: 'css', yml: 'yaml', yaml: 'yaml', sql: 'sql', r: 'r', txt: 'plaintext' };

function csrfToken() {
  const input = document.querySelector('input[name=csrfmiddlewaretoken]');
  return input ? input.value : '';
}

function post(url, fields) {
  const body = new FormData();
  Object.keys(fields).forEach((k) => body.append(k, fields[k]));
  return fetch(url, { method: 'POST', body, headers: { 'X-CSRFToken': csrfToken() }, credentials: 'same-origin' })
    .then((r) => r.json().catch(() => ({ message: r.statusText })).then((json) => ({ status: r.status, json })));
}

/* Why `file` can't be uploaded, in the server's words (runner/services/workspace.py), or null: checked before
   any byte is sent, so a 50 MB file is refused at once by name rather than after the whole upload. */
export function uploadRefusal(file, maxBytes) {
  const name = file.name;
  if (name === '' || name === '.' || name === '..' || name.indexOf('/') !== -1 || name.indexOf('\\') !== -1) {
    return "'" + name + "' is not a file name (no folders, '..' or slashes).";
  }
  const mib = (n) => (n / 1048576).toFixed(1) + ' MiB';
  if (maxBytes && file.size > maxBytes) return name + ' is ' + mib(file.size) + '; the limit is ' + mib(maxBytes) + ' per file.';
  return null;
}

export class FilesPanel {
  /* `url` is the session's files URL; `fileMaxBytes` the server's per-file limit (SANDBOX_FILE_MAX_BYTES). */
  constructor(url, fileMaxBytes) {
    this.url = url;
    this.fileMaxBytes = fileMaxBytes || 0;
    this.panel = $('#files-panel');
    this.toggleButton = $('#files-toggle');
    this.path = '';
    this.loaded = false;
    if (!this.panel || !url) return;
    $('#files-input').addEventListener('change', (e) => { this.uploadAll(e.target.files); e.target.value = ''; });
    $('#files-show-hidden').addEventListener('change', () => this.render());
    this.watchDrops();
  }

  get open() { return !!this.panel && !this.panel.hidden; }

  toggle(open) {
    if (!this.panel) return;
    const show = open === undefined ? this.panel.hidden : open;
    this.panel.hidden = !show;
    document.body.classList.toggle('files-open', show);
    if (this.toggleButton) this.toggleButton.setAttribute('aria-expanded', String(show));
    if (show) this.refresh();
  }

  /* The panel's buttons (data-action); returns true if handled. */
  action(action, target) {
    if (action === 'toggle-files') this.toggle();
    else if (action === 'files-refresh') this.refresh();
    else if (action === 'files-open') this.openEntry(target.getAttribute('data-path'), target.getAttribute('data-type'));
    else if (action === 'files-rename') this.rename(target.getAttribute('data-path'));
    else if (action === 'files-delete') this.remove(target.getAttribute('data-path'));
    else return false;
    return true;
  }

  /* Frames from the socket: a finished run may have written files. */
  noticeFrames(frames) {
    if (this.open && frames.some((f) => f.type === 'execution.finished')) this.refresh();
  }

  refresh() {
    if (!this.url) return Promise.resolve();
    return fetch(this.url + '?path=' + encodeURIComponent(this.path), { credentials: 'same-origin' })
      .then((r) => r.json().then((json) => ({ status: r.status, json })))
      .then(({ status, json }) => {
        if (status === 404 && this.path) { this.path = ''; return this.refresh(); }
        if (status !== 200) { this.setNote(json.message || 'The files could not be listed.', true); return undefined; }
        this.listing = json;
        this.render();
        return undefined;
      })
      .catch(() => this.setNote('The files could not be listed; check your connection.', true));
  }

  setNote(text, isError) {
    const note = $('#files-note');
    note.textContent = text;
    note.classList.toggle('error', !!isError);
  }

  render() {
    const listing = this.listing;
    if (!listing) return;
    this.setNote(listing.note || listing.persistence || '');
    this.renderCrumbs();
    const showHidden = $('#files-show-hidden').checked;
    const rows = $('#files-list');
    rows.textContent = '';
    const entries = listing.entries.filter((e) => showHidden || e.name.charAt(0) !== '.');
    entries.forEach((entry) => rows.appendChild(this.row(entry)));
    $('#files-empty').hidden = entries.length > 0;
    this.loaded = true;
    this.panel.setAttribute('data-loaded', 'true');
  }

  renderCrumbs() {
    const crumbs = $('#files-crumbs');
    crumbs.textContent = '';
    const parts = this.path ? this.path.split('/') : [];
    const link = (label, path) => {
      const button = el('button', 'linklike', label);
      button.type = 'button';
      button.setAttribute('data-action', 'files-open');
      button.setAttribute('data-type', 'dir');
      button.setAttribute('data-path', path);
      return button;
    };
    crumbs.appendChild(link('home', ''));
    parts.forEach((part, i) => {
      crumbs.appendChild(el('span', 'muted', ' / '));
      crumbs.appendChild(link(part, parts.slice(0, i + 1).join('/')));
    });
    $('#files-drop-path').textContent = '/home/user' + (this.path ? '/' + this.path : '');
  }

  row(entry) {
    const tr = el('tr');
    tr.setAttribute('data-name', entry.name);
    const name = el('td', 'files-name');
    const open = el('button', 'linklike', entry.name);
    if (entry.type === 'dir') {  // the page's own folder icon (sandpit.css), not an emoji a font may lack
      const folder = el('span', 'file-icon icon-folder');
      folder.setAttribute('aria-hidden', 'true');
      open.prepend(folder);
    }
    open.type = 'button';
    open.title = entry.type === 'dir' ? 'Open the folder ' + entry.name : 'Preview ' + entry.name;
    open.setAttribute('data-action', 'files-open');
    open.setAttribute('data-type', entry.type);
    open.setAttribute('data-path', entry.path);
    name.appendChild(open);
    tr.appendChild(name);
    // A FIFO, socket, device or symlink shows what it is; only files can be read.
    tr.appendChild(el('td', 'num', entry.type === 'dir' ? '' : entry.type === 'file' ? formatSize(entry.size) : entry.type));
    const when = el('td', 'muted', entry.modified ? relativeText(new Date(entry.modified * 1000)) : '');
    tr.appendChild(when);
    const actions = el('td', 'files-actions');
    if (entry.type === 'file') {
      const download = el('a', 'btn ghost small', '↓');
      download.title = 'Download';
      download.href = this.downloadUrl(entry.path);
      download.setAttribute('download', entry.name);
      download.setAttribute('aria-label', 'Download ' + entry.name);
      actions.appendChild(download);
    }
    [['files-rename', '✎', 'Rename '], ['files-delete', '✕', 'Delete ']].forEach(([action, icon, label]) => {
      const button = el('button', 'btn ghost small', icon);
      button.type = 'button';
      button.setAttribute('data-action', action);
      button.setAttribute('data-path', entry.path);
      button.setAttribute('aria-label', label + entry.name);
      button.title = label.trim();
      actions.appendChild(button);
    });
    tr.appendChild(actions);
    return tr;
  }

  downloadUrl(path) { return this.url + 'download?path=' + encodeURIComponent(path); }

  openEntry(path, type) {
    if (type === 'dir') { this.path = path; this.refresh(); } else this.preview(path);
  }

  preview(path) {
    const dialog = $('#file-preview');
    const body = $('#file-preview-body');
    $('#file-preview-title').textContent = path;
    $('#file-preview-download').href = this.downloadUrl(path);
    body.textContent = 'Loading…';
    if (!dialog.open) dialog.showModal();
    fetch(this.url + 'preview?path=' + encodeURIComponent(path), { credentials: 'same-origin' })
      .then((r) => r.json())
      .then((p) => { body.textContent = ''; body.appendChild(previewNode(p)); })
      .catch(() => { body.textContent = "The preview couldn't be loaded; download the file instead."; });
  }

  rename(path) {
    const name = path.split('/').pop();
    ask({ title: 'Rename ' + name, text: 'New name (a path relative to /home/user moves it):', value: path, ok: 'Rename' })
      .then((to) => {
        if (!to || to === path) return undefined;
        return post(this.url + 'rename', { path, to }).then(({ status, json }) => {
          if (status !== 200) this.setNote(json.message || 'The file could not be renamed.', true); else this.refresh();
        });
      });
  }

  remove(path) {
    ask({ title: 'Delete ' + path.split('/').pop() + '?', text: 'It is deleted from the workspace for good (a folder with everything in it).', ok: 'Delete' })
      .then((yes) => {
        if (!yes) return undefined;
        return post(this.url + 'delete', { path }).then(({ status, json }) => {
          if (status !== 200) this.setNote(json.message || 'The file could not be deleted.', true); else this.refresh();
        });
      });
  }

  watchDrops() {
    const overlay = $('#files-drop');
    let depth = 0;
    const hasFiles = (e) => e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types, 'Files') !== -1;
    document.addEventListener('dragenter', (e) => { if (hasFiles(e)) { depth += 1; overlay.hidden = false; } });
    document.addEventListener('dragleave', () => { depth = Math.max(0, depth - 1); if (!depth) overlay.hidden = true; });
    document.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
    document.addEventListener('drop', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      overlay.hidden = true;
      if (!this.open) this.toggle(true);
      this.uploadAll(e.dataTransfer.files);
    });
  }

  uploadAll(fileList) {
    const folder = this.path;
    const uploads = Array.prototype.map.call(fileList, (file) => this.uploadOne(file, folder, false));
    return Promise.all(uploads).then(() => this.refresh());
  }

  /* One file in one request, with its own progress row; a 409 asks before replacing. */
  uploadOne(file, folder, overwrite, row) {
    const item = row || el('li', 'files-upload');
    item.textContent = '';
    item.setAttribute('data-name', file.name);
    item.removeAttribute('data-state');
    const label = el('span', 'files-upload-name', file.name);
    const bar = el('progress');
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute('aria-label', 'Uploading ' + file.name);
    item.appendChild(label);
    item.appendChild(bar);
    if (!row) $('#files-uploads').appendChild(item);
    const refusal = uploadRefusal(file, this.fileMaxBytes);
    if (refusal) {
      this.failed(item, refusal);
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', this.url);
      xhr.setRequestHeader('X-CSRFToken', csrfToken());
      xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total); });
      xhr.addEventListener('load', () => {
        let json = {};
        try { json = JSON.parse(xhr.responseText); } catch (err) { json = { message: xhr.statusText }; }
        if (xhr.status === 201) {
          bar.value = 100;
          item.setAttribute('data-state', 'done');
          setTimeout(() => item.remove(), 4000);
          resolve(true);
        } else if (xhr.status === 409) {
          this.askToReplace(item, file, folder, json.message).then(resolve);
        } else {
          this.failed(item, json.message || 'The upload failed (' + xhr.status + ').');
          resolve(false);
        }
      });
      xhr.addEventListener('error', () => { this.failed(item, 'The upload failed; check your connection.'); resolve(false); });
      const body = new FormData();
      body.append('path', folder);
      if (overwrite) body.append('overwrite', '1');
      body.append('file', file, file.name);
      xhr.send(body);
    });
  }

  /* The upload's row turns red (a full red bar) and says why. */
  failed(item, message) {
    item.setAttribute('data-state', 'error');
    const bar = $('progress', item);
    if (bar) {
      bar.value = bar.max;
      bar.setAttribute('aria-label', 'Upload failed: ' + message);
    }
    item.appendChild(el('span', 'files-upload-error', message));
    const dismiss = el('button', 'btn ghost small', '✕');
    dismiss.type = 'button';
    dismiss.setAttribute('aria-label', 'Dismiss');
    dismiss.addEventListener('click', () => item.remove());
    item.appendChild(dismiss);
  }

  askToReplace(item, file, folder, message) {
    item.setAttribute('data-state', 'exists');
    item.appendChild(el('span', 'files-upload-error', message || file.name + ' already exists.'));
    return new Promise((resolve) => {
      const replace = el('button', 'btn small danger', 'Replace');
      const skip = el('button', 'btn small ghost', 'Keep the old one');
      replace.type = 'button';
      skip.type = 'button';
      replace.addEventListener('click', () => this.uploadOne(file, folder, true, item).then(resolve));
      skip.addEventListener('click', () => { item.remove(); resolve(false); });
      item.appendChild(replace);
      item.appendChild(skip);
    });
  }
}

/* What the preview dialog shows for the server's preview JSON (never HTML from the file). */
function previewNode(p) {
  if (p.kind === 'image') {
    const img = el('img');
    img.src = p.src;
    img.alt = p.path;
    return img;
  }
  if (p.kind === 'csv') {
    const wrap = el('div', 'file-preview-table');
    const table = el('table');
    p.rows.forEach((cells, i) => {
      const tr = el('tr');
      cells.forEach((cell) => tr.appendChild(el(i === 0 ? 'th' : 'td', null, cell)));
      table.appendChild(tr);
    });
    wrap.appendChild(table);
    if (p.truncated) wrap.appendChild(el('p', 'muted', 'The first ' + p.rows.length + ' rows; download the file for the rest.'));
    return wrap;
  }
  if (p.kind === 'text') {
    const pre = el('pre', 'code');
    const code = el('code', null, p.text);
    const language = HIGHLIGHT[p.language];
    if (language && window.hljs && window.hljs.getLanguage(language)) {
      code.className = 'language-' + language;
      window.hljs.highlightElement(code);
    }
    pre.appendChild(code);
    if (!p.truncated) return pre;
    const wrap = el('div');
    wrap.appendChild(pre);
    wrap.appendChild(el('p', 'muted', 'The first 64 KiB; download the file for the rest.'));
    return wrap;
  }
  return el('p', 'muted', p.message || 'No preview for this kind of file (' + formatSize(p.size || 0) + '); download it instead.');
}

/* A small modal question: resolves to the input's value (or true without one), or null on Cancel. */
function ask({ title, text, value, ok }) {
  const dialog = $('#files-dialog');
  const input = $('#files-dialog-input');
  $('#files-dialog-title').textContent = title;
  $('#files-dialog-text').textContent = text;
  $('#files-dialog-ok').textContent = ok;
  $('#files-dialog-field').hidden = value === undefined;
  input.value = value || '';
  dialog.returnValue = '';
  dialog.showModal();
  if (value !== undefined) { input.focus(); input.select(); }
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (dialog.returnValue !== 'ok') resolve(null);
      else resolve(value === undefined ? true : input.value.trim());
    }, { once: true });
  });
}
