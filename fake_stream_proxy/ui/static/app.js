// Live updates for the fake's web page: every second, fetch the page's sections (rendered and escaped on
// the server) for the same address, and swap in those that changed. No framework, no build step.
"use strict";
(function () {
  const status = document.getElementById("live");
  if (!status) return;
  const last = new Map();
  async function tick() {
    try {
      const response = await fetch("/_fake/ui/live" + window.location.search, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (response.status === 401) {
        window.location.reload(); // the session ended (logout, restarted fake): show the log-in form
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const body = await response.json();
      for (const [id, html] of Object.entries(body.sections)) {
        const section = document.getElementById(id);
        // The first answer is swapped in too: state may have changed since the page was rendered.
        if (section && last.get(id) !== html) {
          section.innerHTML = html;
          last.set(id, html);
        }
      }
      status.textContent = "live · " + body.time.replace("T", " ").replace(/\.\d+Z$/, "Z");
      status.className = "live ok";
    } catch (error) {
      status.textContent = "not updating: " + error.message;
      status.className = "live down";
    }
    window.setTimeout(tick, 1000);
  }
  window.setTimeout(tick, 1000);
})();
