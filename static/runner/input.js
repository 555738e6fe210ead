// A run's input() prompt: an inline field in the run's bubble; Enter sends `input_reply` over the socket.
import { $, el } from './dom.js';

/* Show (once per request) the prompt `frame` asks for in `turn`'s output; `send(value)` returns false
   if the socket is closed, and the field stays for another try. */
export function showInputPrompt(turn, frame, send) {
  closeInputPrompt(turn);
  const form = el('form', 'input-prompt');
  form.setAttribute('aria-label', 'Input for run ' + turn.id);
  const label = el('label', 'input-label', frame.prompt || 'Input:');
  const field = el('input');
  field.type = frame.password ? 'password' : 'text';
  field.autocomplete = 'off';
  field.spellcheck = false;
  field.id = 'input-' + turn.id;
  label.htmlFor = field.id;
  const button = el('button', 'btn small primary', 'Send');
  button.type = 'submit';
  form.append(label, field, button);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!send(field.value)) return;
    form.remove(); // the server echoes the prompt and the line into the run's output, as a terminal does
  });
  turn.output.appendChild(form);
  field.focus({ preventScroll: false });
}

/* The run ended (or asked again): its open prompt goes. */
export function closeInputPrompt(turn) {
  const open = $('.input-prompt', turn.output);
  if (open) open.remove();
}
