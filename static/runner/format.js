// Run statuses and times as the page words them (mirrors runner/selectors/sessions.py).

export function isActiveStatus(status) { return status === 'queued' || status === 'running'; }

export function durationText(ms) {
  if (ms === null || ms === undefined) return '';
  const s = ms / 1000;
  if (s < 10) return s.toFixed(2) + ' s';
  if (s < 60) return s.toFixed(1) + ' s';
  return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
}

export function elapsedText(ms) {
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + ' s';
  return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
}

export function relativeText(date) {
  const s = Math.max(0, (Date.now() - date.getTime()) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return Math.max(1, Math.round(s / 60)) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  if (s < 86400 * 7) return Math.round(s / 86400) + ' d ago';
  return date.toLocaleDateString(undefined, { day: '2-digit', month: 'short', year: 'numeric' });
}

/* [visible text, css class, spoken summary] for a finished run. */
export function finishedStatus(status, durationMs, ename) {
  switch (status) {
    case 'succeeded': return ['✓ ' + durationText(durationMs), 'ok', 'succeeded in ' + durationText(durationMs)];
    case 'failed': return ['✗ ' + (ename || 'error'), 'err', 'failed with ' + (ename || 'an error')];
    case 'timed_out': {
      const secs = Math.round((durationMs || 60000) / 1000);
      return ['⏱ timed out after ' + secs + ' s', 'warn', 'timed out after ' + secs + ' seconds'];
    }
    case 'cancelled': return ['■ stopped', 'muted', 'stopped'];
    case 'interrupted': return ['⚠ interrupted (server restarted)', 'warn', 'interrupted because the server restarted'];
    case 'killed': return ['■ sandbox stopped for you', 'warn', 'stopped: the sandbox was closed for you, see the notice'];
    case 'rejected': return ['✗ not run', 'err', 'not run'];
    default: return [status, 'muted', status];
  }
}

/* 0 B, 12.3 KiB, 4.5 MiB: a file's size. */
export function formatSize(bytes) {
  if (bytes < 1024) return bytes + ' B';
  if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + ' KiB';
  return (bytes / (1024 * 1024)).toFixed(1) + ' MiB';
}

/* 146 KB, 1.14 MiB: a size as the server words its limits (mirrors human_bytes in runner/services/output.py). */
export function humanBytes(n) {
  const g3 = (x) => String(Number(x.toPrecision(3)));
  if (n >= 999.5 * 1024) return g3(n / (1024 * 1024)) + ' MiB';
  if (n >= 1024) return g3(n / 1024) + ' KB';
  return n + ' bytes';
}

/* A string's size in UTF-8 bytes, as the server counts it. */
export function utf8Bytes(text) { return new TextEncoder().encode(text).length; }

/* [error name or null, text] under a stopped run, in the language's terms (mirrors STOPPED_NOTES in sessions.py). */
export function stoppedNote(language) {
  if (language === 'python') return ['KeyboardInterrupt', ": stopped; the session's variables are kept."];
  if (language === 'bash') return [null, 'Stopped; the shell and its variables are kept.'];
  return [null, 'Stopped; the session and its variables are kept.'];
}
