// The API keys page: Copy buttons for the new key, its export lines and the examples.
import { $all, copyText } from './dom.js';

for (const button of $all('.copy-button')) {
  button.addEventListener('click', () => {
    const source = document.getElementById(button.dataset.copy);
    if (source) copyText(source.textContent, button);
  });
}
