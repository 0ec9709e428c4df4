// Simulated visitor station: drives the mock GPIO pins and shows the strike and LEDs live.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let timer = null;
  function show(s) {
    $("strike").textContent = s.strike_on ? "UNLOCKED (energized)" : "locked";
    $("strike").className = "state " + (s.strike_on ? "unlocked" : "locked");
    document.body.dataset.strike = s.strike_on ? "on" : "off";
    // During a lockdown the station shows its own pattern (the red LED flashing fast), never Ringing.
    const locked = s.pattern === "lockdown";
    for (const name of ["ringing", "approved", "denied"]) {
      $("led-" + name).classList.toggle("on", !locked && !!(s.leds && s.leds[name]));
    }
    $("led-denied").classList.toggle("flash", locked);
    $("station-lockdown").hidden = !locked;
    document.body.dataset.pattern = s.pattern || "";
    $("door").textContent = s.door;
    const ic = s.intercom || {};
    $("ic-listening").classList.toggle("on", !!ic.listening);
    $("ic-talking").classList.toggle("on", !!ic.talking);
    document.body.dataset.listening = ic.listening ? "yes" : "no";
    document.body.dataset.talking = ic.talking ? "yes" : "no";
    $("ic-level").value = ic.office_level || 0;
    $("ic-level").dataset.level = String(ic.office_level || 0);
    $("ic-level-text").textContent = ic.office_level > 0.001 ? "office voice " + Math.round(ic.office_level * 100) + "%" : "silent";
    if (document.activeElement !== $("door-open")) { $("door-open").checked = !!s.door_open; }
  }
  async function poll() {
    try {
      const resp = await fetch("/sim/state", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (resp.status === 401) { await Panel.reauth(); timer = setTimeout(poll, 250); return; }
      if (resp.ok) { show(await resp.json()); $("sim-message").textContent = ""; }
    } catch (err) {
      $("sim-message").textContent = "Connection lost; retrying…";
    }
    timer = setTimeout(poll, 250);
  }
  $("press").addEventListener("click", async () => {
    const r = await Panel.post("/sim/press");
    if (r.ok) { show(r.data); } else { $("sim-message").textContent = r.data.error || "press failed"; }
  });
  $("exit").addEventListener("click", async () => {
    const r = await Panel.post("/sim/exit");
    if (r.ok) { show(r.data); } else { $("sim-message").textContent = r.data.error || "failed"; }
  });
  $("desk-panic").addEventListener("click", async () => {
    const r = await Panel.post("/sim/panic");
    if (r.ok) { show(r.data); } else { $("sim-message").textContent = r.data.error || "failed"; }
  });
  $("door-open").addEventListener("change", async (e) => {
    const r = await Panel.post("/sim/door", { open: e.target.checked ? "1" : "0" });
    if (r.ok) { show(r.data); } else { $("sim-message").textContent = r.data.error || "failed"; }
  });
  poll();
})();
