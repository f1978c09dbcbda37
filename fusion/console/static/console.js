// The console's only script: reload the live list and map when the server sends a revision.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (!live) return;
  const events = new EventSource(live.dataset.events);
  let loading = false, again = false;
  async function reload() {
    if (loading) { again = true; return; }
    loading = true;
    try {
      const response = await fetch(live.dataset.live, {credentials: "same-origin"});
      if (response.redirected || response.status === 401) window.location.reload();   // signed out
      else if (response.ok) live.innerHTML = await response.text();
    } finally {
      loading = false;
      if (again) { again = false; reload(); }
    }
  }
  events.addEventListener("revision", reload);
  events.addEventListener("open", reload);  // revisions missed while the stream was down
});
