// Forms that change who is in a class (Remove a student, Leave, Stop teaching) ask first: a form with
// `data-confirm` ("Remove {student} from Python 101?") opens a dialog naming what it will do; only its
// confirm button submits. `{student}` is the text of the form's `[data-confirm-name]` select's choice.
import { el } from './dom.js';

function fill(text, form) {
  const picker = form.querySelector('[data-confirm-name]');
  const name = picker && picker.selectedOptions.length ? picker.selectedOptions[0].textContent.trim() : '';
  return text.split('{student}').join(name);
}

function ask(form) {
  const dialog = el('dialog', 'confirm');
  dialog.setAttribute('aria-labelledby', 'confirm-text');
  const text = el('p', null, fill(form.getAttribute('data-confirm'), form));
  text.id = 'confirm-text';
  dialog.appendChild(text);
  const actions = el('div', 'dialog-actions');
  const cancel = el('button', 'btn ghost', 'Cancel');
  cancel.type = 'button';
  cancel.addEventListener('click', () => dialog.close());
  const go = el('button', 'btn danger', fill(form.getAttribute('data-confirm-button') || 'Confirm', form));
  go.type = 'button';
  go.addEventListener('click', () => {
    dialog.close();
    form.dataset.confirmed = '1';
    form.requestSubmit();
  });
  actions.append(cancel, go);
  dialog.appendChild(actions);
  dialog.addEventListener('close', () => dialog.remove());
  document.body.appendChild(dialog);
  dialog.showModal();
  cancel.focus();
}

document.addEventListener('submit', (e) => {
  const form = e.target;
  if (!form.matches || !form.matches('form[data-confirm]')) return;
  if (form.dataset.confirmed === '1') { delete form.dataset.confirmed; return; }
  e.preventDefault();
  ask(form);
});
