// The panic (duress) control: press and HOLD for one second; no dialog (a dialog is what an
// intruder at the desk would see). Pointer, touch and keyboard (Space/Enter held) all work;
// letting go early sends nothing. The server raises the panic alarm at once and, by config,
// starts a LOCKDOWN; only staff acknowledge it (the alarm banner's Acknowledge button).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const HOLD_MS = 1000;
  const btn = $("panic"), fill = $("panic-fill"), msg = $("panic-message");
  let timer = null, started = 0, frame = 0;
  function paint() {
    fill.style.width = Math.min(100, (performance.now() - started) / HOLD_MS * 100) + "%";
    if (timer) frame = requestAnimationFrame(paint);
  }
  function reset() {
    btn.classList.remove("holding"); delete btn.dataset.holding;
    cancelAnimationFrame(frame); fill.style.width = "0";
  }
  function begin(e) {
    if (e) e.preventDefault();
    if (timer) return;
    started = performance.now();
    btn.classList.add("holding"); btn.dataset.holding = "yes";
    timer = setTimeout(send, HOLD_MS);
    paint();
  }
  function cancel() {
    if (!timer) return;
    clearTimeout(timer); timer = null; reset();
    msg.textContent = "Not sent: hold for a full second to send a panic alarm.";
  }
  async function send() {
    timer = null; reset();
    msg.textContent = "Sending panic alarm…";
    const r = await Panel.post("/api/panic", { held: "yes" });
    msg.textContent = r.ok ? (r.data.code === "already" ? "Panic alarm already active." : "PANIC alarm sent.")
      : "Panic NOT sent: " + (r.data.reason || r.data.error || "refused") + " (" + r.status + ")";
    document.body.dataset.panicSent = r.ok ? "yes" : "failed";
  }
  btn.addEventListener("pointerdown", begin);
  ["pointerup", "pointerleave", "pointercancel"].forEach((t) => btn.addEventListener(t, cancel));
  btn.addEventListener("contextmenu", (e) => e.preventDefault());     // a long touch is not a menu
  btn.addEventListener("keydown", (e) => {
    if (e.key !== " " && e.key !== "Enter") return;
    e.preventDefault();
    if (!e.repeat) begin();
  });
  btn.addEventListener("keyup", (e) => { if (e.key === " " || e.key === "Enter") cancel(); });
  btn.addEventListener("blur", cancel);
  document.addEventListener("entry:status", (e) => {
    document.body.dataset.panic = (e.detail.alarms || {}).panic ? "active" : "";
  });
})();
