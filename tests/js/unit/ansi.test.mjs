// ANSI SGR codes to the page's class names (static/runner/ansi.js), the same names the server
// render uses (runner/selectors/rendering.py). parse() only; append() needs a real DOM (the
// browser tests cover it).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { newState, parse } from '../../../static/runner/ansi.js';

const ESC = '\x1b';

test('plain text is one segment without classes', () => {
  assert.deepEqual(parse('hello <b>not bold</b>\n', newState()), [{ text: 'hello <b>not bold</b>\n', cls: '' }]);
  assert.deepEqual(parse('', newState()), []);
});

test('bold red, then a reset', () => {
  assert.deepEqual(parse(`${ESC}[1;31mred${ESC}[0m plain`, newState()), [
    { text: 'red', cls: 'ansi-fg-1 ansi-bold' },
    { text: ' plain', cls: '' },
  ]);
});

test('bright, background, dim, italic and underline codes, and their resets', () => {
  assert.deepEqual(parse(`${ESC}[92;44;2;3;4mx${ESC}[22;23;24my${ESC}[39;49mz`, newState()), [
    { text: 'x', cls: 'ansi-fg-10 ansi-bg-4 ansi-dim ansi-italic ansi-underline' },
    { text: 'y', cls: 'ansi-fg-10 ansi-bg-4' },
    { text: 'z', cls: '' },
  ]);
  assert.deepEqual(parse(`${ESC}[103mbg${ESC}[m`, newState()), [{ text: 'bg', cls: 'ansi-bg-11' }]);
});

test('the state carries across pieces of one stream', () => {
  const state = newState();
  assert.deepEqual(parse(`${ESC}[32mgreen `, state), [{ text: 'green ', cls: 'ansi-fg-2' }]);
  assert.deepEqual(parse('still green', state), [{ text: 'still green', cls: 'ansi-fg-2' }]);
  assert.deepEqual(parse(`${ESC}[0m`, state), []);
  assert.deepEqual(parse('plain', state), [{ text: 'plain', cls: '' }]);
});

test('256-colour and true-colour map to the nearest of the 16 base colours', () => {
  const cls = (seq) => parse(`${ESC}[${seq}mx`, newState())[0].cls;
  assert.equal(cls('38;5;9'), 'ansi-fg-9');  // the first 16 are themselves
  assert.equal(cls('38;5;196'), 'ansi-fg-9');  // bright red in the cube
  assert.equal(cls('38;5;16'), 'ansi-fg-0');  // the cube's black
  assert.equal(cls('38;5;244'), 'ansi-fg-7');  // the grey ramp
  assert.equal(cls('48;5;21'), 'ansi-bg-12');  // bright blue background
  assert.equal(cls('38;2;255;0;0'), 'ansi-fg-9');
  assert.equal(cls('38;2;0;0;0'), 'ansi-fg-0');
  assert.equal(cls('38;2;64;64;64'), 'ansi-fg-8');  // a dark grey
  assert.equal(cls('38;2;128;128;128'), 'ansi-fg-7');  // a mid grey
});

test('cursor moves, titles, hyperlinks and other escapes are dropped, not shown', () => {
  assert.deepEqual(parse(`a${ESC}[2Kb${ESC}[1Ac`, newState()), [
    { text: 'a', cls: '' }, { text: 'b', cls: '' }, { text: 'c', cls: '' },
  ]);
  assert.deepEqual(parse(`${ESC}]0;title\x07text`, newState()), [{ text: 'text', cls: '' }]);
  assert.deepEqual(parse(`${ESC}]8;;https://example.com${ESC}\\link${ESC}]8;;${ESC}\\`, newState()), [{ text: 'link', cls: '' }]);
  assert.deepEqual(parse(`${ESC}Mx`, newState()), [{ text: 'x', cls: '' }]);
});

test('a malformed parameter counts as a reset, and an SGR without parameters resets', () => {
  assert.deepEqual(parse(`${ESC}[31mred${ESC}[;mplain`, newState()), [{ text: 'red', cls: 'ansi-fg-1' }, { text: 'plain', cls: '' }]);
  assert.deepEqual(parse(`${ESC}[1mb${ESC}[mplain`, newState()), [{ text: 'b', cls: 'ansi-bold' }, { text: 'plain', cls: '' }]);
});
