// Lockdown levels on the dashboard (Standard Response Protocol): staff choose LOCKDOWN (threat
// inside or near) or SECURE (threat outside) when starting; SECURE can be escalated in one
// click (the safe direction needs no confirmation). Both refuse entry; exit stays free.
//
// Refusals shown on the panel clear when their cause ends: dashboard.js keeps each message's
// code (EntryPanel.refusal) and every status it draws is checked here.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  async function start(level) {
    $("lockdown-start-confirm").hidden = true;
    const r = await Panel.post("/api/lockdown/start", { level, reason: "started from the panel" });
    EntryPanel.refusal("action-message", r.ok ? null : r);
    if (!r.ok) $("lockdown-start").hidden = false;
  }
  $("lockdown-start").addEventListener("click", () => {
    $("lockdown-start-confirm").hidden = false; $("lockdown-start").hidden = true; $("lockdown-start-yes").focus();
  });
  $("lockdown-start-no").addEventListener("click", () => {
    $("lockdown-start-confirm").hidden = true; $("lockdown-start").hidden = false; $("lockdown-start").focus();
  });
  $("lockdown-start-yes").addEventListener("click", () => start("lockdown"));
  $("lockdown-start-secure").addEventListener("click", () => start("secure"));
  $("lockdown-escalate").addEventListener("click", () => start("lockdown"));

  // code of a refusal -> "its cause still holds" for a status
  const CAUSES = {
    lockdown: (s) => !!s.lockdown,
    fault: (s) => !!s.fault,
    busy: (s) => !!(s.alarms || {}).held_open,
    handled: (s) => !!s.ring, expired: (s) => !!s.ring, unknown: (s) => !!s.ring, stale: (s) => !!s.ring,
  };
  document.addEventListener("entry:status", (e) => {
    const s = e.detail;
    ["action-message", "ring-message"].forEach((id) => {
      const code = $(id).dataset.code;
      if (code && CAUSES[code] && !CAUSES[code](s)) EntryPanel.refusal(id, null);
    });
  });
})();
