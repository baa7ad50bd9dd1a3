// smsbridge console: confirm before acting, and live updates by server-sent events.
// Small on purpose: no build step, no dependencies.
"use strict";

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

function busy() {
  // Never swap the page under someone typing in a form.
  const active = document.activeElement;
  return active && active.closest("form") && /INPUT|TEXTAREA|SELECT/.test(active.tagName);
}

async function refresh() {
  if (busy()) return;
  const response = await fetch(window.location.href, { credentials: "same-origin" });
  if (!response.ok || response.redirected) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("main");
  const main = document.getElementById("main");
  if (fresh && main) {
    main.replaceChildren(...fresh.childNodes);
    document.body.dispatchEvent(new CustomEvent("console:refreshed"));
  }
}

if (document.body.dataset.live && window.EventSource) {
  let pending = null;
  const source = new EventSource("/console/events");
  source.addEventListener("changed", () => {
    // Several commits in a burst make one refresh.
    if (pending === null) {
      pending = setTimeout(() => { pending = null; refresh(); }, 200);
    }
  });
  window.addEventListener("pagehide", () => source.close());
}
