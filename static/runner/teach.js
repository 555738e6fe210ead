// /teach/ and a classroom's page: keep each roster's live dots current (a dot while a student's run
// is going) by polling the classroom's live.json; the server-rendered page is right without it.
const POLL_MS = 5000;

function refresh(table) {
  fetch(table.getAttribute('data-live-url'), { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
    .then(function (response) { return response.ok ? response.json() : null; })
    .then(function (body) {
      if (!body) return;
      const running = new Set(body.running.map(String));
      table.querySelectorAll('.running-dot[data-student-id]').forEach(function (dot) {
        dot.hidden = !running.has(dot.getAttribute('data-student-id'));
      });
    })
    .catch(function () { /* offline for a moment: the next poll tries again */ });
}

function start() {
  const tables = Array.prototype.slice.call(document.querySelectorAll('table.roster[data-live-url]'));
  if (!tables.length) return;
  setInterval(function () {
    if (document.visibilityState === 'visible') tables.forEach(refresh);
  }, POLL_MS);
}

start();
