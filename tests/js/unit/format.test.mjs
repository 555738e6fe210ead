// The page's wording of run statuses, times and sizes (static/runner/format.js), which mirrors
// runner/selectors/sessions.py: a change on one side must show up here.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  durationText, elapsedText, finishedStatus, formatSize, humanBytes, isActiveStatus, relativeText, stoppedNote, utf8Bytes,
} from '../../../static/runner/format.js';

test('only queued and running runs are active', () => {
  assert.equal(isActiveStatus('queued'), true);
  assert.equal(isActiveStatus('running'), true);
  for (const status of ['succeeded', 'failed', 'timed_out', 'cancelled', 'interrupted', 'rejected', '']) {
    assert.equal(isActiveStatus(status), false, status);
  }
});

test('a duration has two decimals under 10 s, one under a minute, then minutes and seconds', () => {
  assert.equal(durationText(null), '');
  assert.equal(durationText(undefined), '');
  assert.equal(durationText(0), '0.00 s');
  assert.equal(durationText(1234), '1.23 s');
  assert.equal(durationText(9999), '10.00 s');  // rounds up in the 2-decimal band
  assert.equal(durationText(10_000), '10.0 s');
  assert.equal(durationText(59_940), '59.9 s');
  assert.equal(durationText(60_000), '1 min 0 s');
  assert.equal(durationText(125_900), '2 min 5 s');
});

test('the elapsed time of a live run has one decimal under a minute', () => {
  assert.equal(elapsedText(0), '0.0 s');
  assert.equal(elapsedText(4_560), '4.6 s');
  assert.equal(elapsedText(61_000), '1 min 1 s');
});

test('a past moment reads as just now, minutes, hours, days, then a date', () => {
  const ago = (s) => new Date(Date.now() - s * 1000);
  assert.equal(relativeText(ago(10)), 'just now');
  assert.equal(relativeText(new Date(Date.now() + 60_000)), 'just now');  // a clock ahead of ours
  assert.equal(relativeText(ago(50)), '1 min ago');
  assert.equal(relativeText(ago(30 * 60)), '30 min ago');
  assert.equal(relativeText(ago(5 * 3600)), '5 h ago');
  assert.equal(relativeText(ago(3 * 86400)), '3 d ago');
  const old = new Date(2024, 0, 15);
  assert.equal(relativeText(old), old.toLocaleDateString(undefined, { day: '2-digit', month: 'short', year: 'numeric' }));
  assert.match(relativeText(old), /2024/);
});

test('every finished status has its text, class and spoken summary', () => {
  assert.deepEqual(finishedStatus('succeeded', 1500), ['✓ 1.50 s', 'ok', 'succeeded in 1.50 s']);
  assert.deepEqual(finishedStatus('failed', 10, 'ZeroDivisionError'), ['✗ ZeroDivisionError', 'err', 'failed with ZeroDivisionError']);
  assert.deepEqual(finishedStatus('failed', 10, ''), ['✗ error', 'err', 'failed with an error']);
  assert.deepEqual(finishedStatus('timed_out', 30_400), ['⏱ timed out after 30 s', 'warn', 'timed out after 30 seconds']);
  assert.deepEqual(finishedStatus('timed_out', null), ['⏱ timed out after 60 s', 'warn', 'timed out after 60 seconds']);
  assert.deepEqual(finishedStatus('cancelled', 5), ['■ stopped', 'muted', 'stopped']);
  assert.deepEqual(finishedStatus('interrupted', 5), ['⚠ interrupted (server restarted)', 'warn', 'interrupted because the server restarted']);
  assert.deepEqual(finishedStatus('rejected', 0), ['✗ not run', 'err', 'not run']);
  assert.deepEqual(finishedStatus('something-new', 0), ['something-new', 'muted', 'something-new']);
});

test('sizes are in B, then KiB and MiB with one decimal', () => {
  assert.equal(formatSize(0), '0 B');
  assert.equal(formatSize(1023), '1023 B');
  assert.equal(formatSize(1024), '1.0 KiB');
  assert.equal(formatSize(12_595), '12.3 KiB');
  assert.equal(formatSize(1024 * 1024), '1.0 MiB');
  assert.equal(formatSize(4.5 * 1024 * 1024), '4.5 MiB');
});

test('a stopped run is worded in its language', () => {
  assert.deepEqual(stoppedNote('python'), ['KeyboardInterrupt', ": stopped; the session's variables are kept."]);
  assert.deepEqual(stoppedNote('bash'), [null, 'Stopped; the shell and its variables are kept.']);
  assert.deepEqual(stoppedNote('javascript'), [null, 'Stopped; the session and its variables are kept.']);
  assert.deepEqual(stoppedNote('typescript'), [null, 'Stopped; the session and its variables are kept.']);
});

test('a size reads as the server words its limits (human_bytes in runner/services/output.py)', () => {
  assert.equal(humanBytes(512), '512 bytes');
  assert.equal(humanBytes(100 * 1024), '100 KB');
  assert.equal(humanBytes(150000), '146 KB');
  assert.equal(humanBytes(1000000), '977 KB');
  assert.equal(humanBytes(1023000), '999 KB');
  assert.equal(humanBytes(1024 * 1024), '1 MiB');
  assert.equal(humanBytes(1200007), '1.14 MiB');
  assert.equal(humanBytes(Math.round(8.3 * 1048576)), '8.3 MiB');
});

test('code is measured in UTF-8 bytes, as the server counts it', () => {
  assert.equal(utf8Bytes('abc'), 3);
  assert.equal(utf8Bytes('é'), 2);
  assert.equal(utf8Bytes('🐍'), 4);
});
