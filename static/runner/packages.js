// The Packages dialog: what is installed in the session, and installing by name. An install is a
// run of `%pip install <name>` (runner/services/packages.py), so its output streams into the
// conversation like any run's.
import { $, el } from './dom.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?((==|>=|<=|~=|!=|>|<)[A-Za-z0-9.*+!_-]+)?$/;

export class PackagesDialog {
  /* `url`: GET the installed packages; `install(code)`: run code as the user would. */
  constructor(url, install) {
    this.url = url;
    this.install = install;
    this.dialog = $('#packages-dialog');
    if (!this.dialog) return;
    $('#packages-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const input = $('#packages-name');
      const names = input.value.trim().split(/\s+/).filter(Boolean);
      const bad = names.filter((n) => !NAME.test(n));
      const note = $('#packages-error');
      if (!names.length || bad.length) {
        note.textContent = names.length ? bad[0] + ' is not a package name (e.g. requests or requests==2.32.3).' : 'Type a package name.';
        note.hidden = false;
        return;
      }
      note.hidden = true;
      input.value = '';
      this.dialog.close();
      this.install('%pip install ' + names.join(' '));
    });
  }

  action(action) {
    if (action !== 'show-packages') return false;
    this.open();
    return true;
  }

  open() {
    if (!this.dialog) return;
    const list = $('#packages-list');
    list.textContent = '';
    list.appendChild(el('li', 'muted', 'Loading…'));
    $('#packages-error').hidden = true;
    if (!this.dialog.open) this.dialog.showModal();
    $('#packages-name').focus();
    fetch(this.url, { credentials: 'same-origin' })
      .then((r) => r.json())
      .then((data) => {
        list.textContent = '';
        $('#packages-note').textContent = data.note || '';
        (data.packages || []).forEach((p) => {
          const item = el('li');
          item.appendChild(el('span', 'package-name', p.name));
          item.appendChild(el('span', 'muted', ' ' + p.version));
          list.appendChild(item);
        });
        if (!(data.packages || []).length) list.appendChild(el('li', 'muted', 'None installed yet; the usual scientific stack (numpy, pandas, matplotlib) is already there.'));
      })
      .catch(() => { list.textContent = ''; list.appendChild(el('li', 'muted', "The list couldn't be loaded.")); });
  }
}
