// The assignment page: while checks are pending, poll status.json and reload once they are done.
const main = document.getElementById("main");
if (main && main.dataset.pending === "1" && main.dataset.statusUrl) {
  const poll = async () => {
    try {
      const response = await fetch(main.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const body = await response.json();
        if (!body.check || (body.check.status !== "queued" && body.check.status !== "running")) {
          window.location.reload();
          return;
        }
      }
    } catch (_error) {
      // offline for a moment: try again
    }
    window.setTimeout(poll, 2000);
  };
  window.setTimeout(poll, 1500);
}
