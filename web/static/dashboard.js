// The dashboard: live state over Server-Sent Events, ring alert (visual, chime, notification),
// Approve / Deny bound to the request id, unlock with confirmation, lockdown, alarms, health.
// No inline script anywhere (CSP); all assets are local.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const counters = document.body.dataset;          // test hooks: alerts, chimes, notifications
  counters.alerts = "0"; counters.chimes = "0"; counters.notifications = "0"; counters.connected = "no";
  const bump = (k) => { counters[k] = String(Number(counters[k] || 0) + 1); };

  let es = null, lastSeq = 0, retryMs = 1000, watchdog = null, reconnectTimer = null;
  let ring = null;            // {id, deadline, photo (number shown), photoAt, presses (count shown)}
  let alertedFor = null, outcomeTimer = null, audio = null;
  const baseTitle = document.title;
  const STALL_MS = 15000;     // the server sends a ping every few seconds
  const CONN_LOST_TEXT = document.getElementById("conn-lost").textContent;

  // ---------------------------------------------------------------- sound and notifications
  function audioCtx() {
    if (!audio) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      try { audio = new Ctx(); } catch (err) { return null; }
      audio.onstatechange = alertsState;      // the banner follows the real audio state
    }
    if (audio.state === "suspended") { audio.resume().catch(() => {}); }
    return audio;
  }
  function chime() {
    const ctx = audioCtx();
    if (!ctx) return;
    const t0 = ctx.currentTime + 0.02;
    [[880, 0], [660, 0.35], [880, 0.7], [660, 1.05]].forEach(([freq, at]) => {
      const osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.type = "sine"; osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t0 + at);
      gain.gain.exponentialRampToValueAtTime(0.4, t0 + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + at + 0.32);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0 + at); osc.stop(t0 + at + 0.34);
    });
    bump("chimes");
  }
  function notify(id) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const n = new Notification("Someone is at the door", {
        body: "Open the entry panel to approve or deny.", tag: "ring-" + id, requireInteraction: true,
        icon: "/static/icons/bell.svg" });
      n.onclick = () => { window.focus(); n.close(); };
      bump("notifications");
    } catch (err) { /* some browsers only allow notifications from a service worker */ }
  }
  // Sound must never be silently off. Browsers start audio only after a user gesture on the page,
  // so after every load the first click, key or touch anywhere arms it; the browser remembers
  // (localStorage) that alerts were enabled here, and until sound is armed a large banner says so.
  const ALERTS_KEY = "entry-buzzer.alerts-enabled";
  const remembered = () => { try { return localStorage.getItem(ALERTS_KEY) === "yes"; } catch (err) { return false; } };
  function remember() { try { localStorage.setItem(ALERTS_KEY, "yes"); } catch (err) { /* private mode */ } }
  const soundOn = () => !!audio && audio.state === "running";
  function alertsState() {
    const perm = ("Notification" in window) ? Notification.permission : "unsupported";
    $("alerts-state").textContent = "Sound: " + (soundOn() ? "on" : "OFF") + ". Notifications: " + perm + ".";
    $("sound-off").hidden = soundOn();
    counters.sound = soundOn() ? "on" : "off";
    $("sound-off-text").textContent = remembered()
      ? "SOUND IS OFF until you click anywhere on this page (the browser needs one click after each load)."
      : "SOUND IS OFF on this screen: a visitor at the door will make no chime.";
  }
  function arm() {
    const ctx = audioCtx();
    if (ctx && ctx.state !== "running") ctx.resume().then(alertsState, alertsState);
    if (ctx) remember();
    alertsState();
  }
  async function enableAlerts() {
    arm();
    if ("Notification" in window && Notification.permission === "default") {
      try { await Notification.requestPermission(); } catch (err) { /* ignored */ }
    }
    alertsState();
  }
  $("enable-alerts").addEventListener("click", enableAlerts);
  $("sound-on").addEventListener("click", enableAlerts);
  // Any click, key or touch on the page arms the sound (capture: before a handler can stop it).
  ["click", "keydown", "touchstart"].forEach((t) => document.addEventListener(t, arm, { passive: true, capture: true }));

  // ---------------------------------------------------------------- ring
  const hhmmss = (iso) => new Date(iso).toLocaleTimeString();
  // detail (from the status): press_times, photo {n, at, press}, photo_pending
  function showRing(id, secondsLeft, snapshot, presses, detail) {
    const isNew = !ring || ring.id !== id;
    const prev = isNew ? { photo: 0, photoAt: null } : ring;
    ring = { id, deadline: performance.now() + secondsLeft * 1000, photo: prev.photo, photoAt: prev.photoAt,
      presses: presses || 1 };
    $("ring").hidden = false;
    $("ring").dataset.requestId = id;
    $("approve").disabled = false; $("deny").disabled = false;
    // A ring during a lockdown is refused: no Approve (it can never be approved, even later).
    const refused = !!(detail && detail.lockdown);
    $("ring").dataset.refused = refused ? "lockdown" : "";
    $("approve").hidden = refused; $("visitor").hidden = refused; $("ring-refused").hidden = !refused;
    if (isNew) {
      EntryVisitor.reset();
      refusal("ring-message", null); $("snapshot-time").textContent = "";
      $("snapshot").hidden = true; $("snapshot").removeAttribute("src");
      $("snapshot-wait").textContent = "Waiting for the camera…"; $("snapshot-wait").hidden = false;
      $("outcome").hidden = true;
    }
    const d = detail || {};
    if (snapshot && d.photo) showSnapshot(id, d.photo.n, d.photo.at);
    else if (snapshot && !ring.photo) showSnapshot(id, 1, null);
    const times = (d.press_times || []).map(hhmmss);
    $("presses").textContent = presses > 1 ? "Pressed " + presses + " times: " + times.join(", ")
      : (times.length ? "Pressed at " + times[0] : "");
    if (d.photo_pending) $("snapshot-wait").textContent = "New press — taking a new photo…";
    $("snapshot-wait").hidden = !d.photo_pending && !!ring.photo;
    if (alertedFor !== id) {
      alertedFor = id;
      bump("alerts");
      document.title = "🔔 Door! · " + baseTitle;
      chime();
      notify(id);
    }
    tick();
  }
  function showSnapshot(id, n, at) {
    if (!ring || ring.id !== id || (n && n < ring.photo)) return;
    const img = $("snapshot");
    const src = "/snapshot/" + encodeURIComponent(id) + (n > 1 ? "?n=" + n : "");
    if (img.getAttribute("src") !== src) { img.src = src; }
    if (n) ring.photo = n;
    if (at) ring.photoAt = at;
    img.dataset.photo = String(ring.photo);
    $("snapshot-time").textContent = ring.photoAt ? "Photo " + ring.photo + " taken " + hhmmss(ring.photoAt) : "";
    img.hidden = false; $("snapshot-wait").hidden = true;
  }
  function clearRing() {
    ring = null;
    $("ring").hidden = true;
    delete $("ring").dataset.requestId;
    refusal("ring-message", null);           // its cause (this ring) has ended
    document.title = baseTitle;
  }
  function showOutcome(text, kind) {
    const el = $("outcome");
    el.textContent = text; el.className = "outcome " + kind; el.hidden = false;
    clearTimeout(outcomeTimer);
    outcomeTimer = setTimeout(() => { el.hidden = true; }, 15000);
  }
  function tick() {
    if (!ring) return;
    const left = Math.max(0, Math.ceil((ring.deadline - performance.now()) / 1000));
    $("countdown").textContent = String(left);
  }
  setInterval(tick, 250);

  async function act(kind) {
    if (!ring) return;
    const id = ring.id;
    $("approve").disabled = true; $("deny").disabled = true;
    // Name what this screen shows: if a newer press or photo exists, the core refuses.
    const body = kind === "approve" ? Object.assign({ request_id: id, snapshot: String(ring.photo || 0),
      presses: String(ring.presses || 1) }, EntryVisitor.fields()) : { request_id: id };
    const r = await Panel.post("/api/" + kind, body);
    if (!r.ok && r.data.code === "stale") {
      $("ring-message").textContent = "A new press: look again at the new photo before you approve.";
      refreshStatus();
    }
    if (!r.ok && r.data.code !== "stale") {
      refusal("ring-message", r);
      if (ring && ring.id === id) { $("approve").disabled = false; $("deny").disabled = false; }
    }
  }
  // A refusal shown on the panel remembers its code, so it clears when its cause ends (lockdown.js).
  function refusal(id, r) {
    const el = $(id);
    el.textContent = r ? (r.data.reason || r.data.error || "refused") + " (" + r.status + ")" : "";
    el.dataset.code = r ? (r.data.code || "") : "";
  }
  window.EntryPanel = { refusal };
  $("approve").addEventListener("click", () => act("approve"));
  $("deny").addEventListener("click", () => act("deny"));

  // ---------------------------------------------------------------- confirmations
  function confirmPair(openId, boxId, yesId, noId, run) {
    $(openId).addEventListener("click", () => { $(boxId).hidden = false; $(openId).hidden = true; $(yesId).focus(); });
    $(noId).addEventListener("click", () => { $(boxId).hidden = true; $(openId).hidden = false; $(openId).focus(); });
    $(yesId).addEventListener("click", async () => {
      $(boxId).hidden = true; $(openId).hidden = false;
      const r = await run();
      refusal("action-message", r.ok ? null : r);
    });
  }
  confirmPair("unlock", "unlock-confirm", "unlock-yes", "unlock-no",
    () => Panel.post("/api/unlock", { confirm: "yes", note: "panel unlock now" }));
  confirmPair("lockdown-end", "lockdown-end-confirm", "lockdown-end-yes", "lockdown-end-no",
    () => Panel.post("/api/lockdown/end", { confirm: "yes", reason: "ended from the panel" }));

  // ---------------------------------------------------------------- state
  // The one table of words (controller/labels.py), served in a data attribute (no inline script).
  const LABELS = JSON.parse($("labels").dataset.labels || "{}");
  const ALARM_TEXT = LABELS.alarms || {};
  const NO_ACK = ["journal_failure", "journal_lost", "disk_full", "lockdown_not_durable"];
  function fmtBytes(n) {
    if (n === null || n === undefined) return "unknown";
    const gb = n / 1e9;
    return gb >= 1 ? gb.toFixed(1) + " GB" : (n / 1e6).toFixed(0) + " MB";
  }
  function setText(id, text, cls) { const el = $(id); el.textContent = text; el.className = cls || ""; }
  function applyStatus(s, health) {
    const door = s.door;
    setText("door-state", door === "locked" ? "Locked" : door === "unlocked" ? "Unlocked" : "Open", "state big-text " + door);
    document.body.dataset.door = door;
    $("pulse-text").textContent = s.pulse ? "Unlocked by " + s.pulse.actor + " (" + Math.ceil(s.pulse.seconds_left) + " s)" : "";
    if (s.lockdown) {
      const lvl = s.lockdown.level === "secure" ? "secure" : "lockdown", words = (LABELS.levels || {})[lvl] || lvl;
      $("lockdown-banner").hidden = false; $("lockdown-banner").className = "banner " + lvl;
      $("lockdown-level").textContent = words;
      $("lockdown-hint").textContent = "— " + ((LABELS.level_hints || {})[lvl] || "") + ".";
      $("lockdown-escalate").hidden = lvl === "lockdown";
      $("lockdown-text").textContent = "since " + new Date(s.lockdown.since).toLocaleTimeString() + " by " + s.lockdown.actor +
        (s.lockdown.reason ? " — " + s.lockdown.reason : "") + ". Exit stays free.";
      setText("lockdown-state", words + " active", "state bad " + lvl); $("lockdown-start").hidden = true;
      $("lockdown-start-confirm").hidden = true;
    } else {
      $("lockdown-banner").hidden = true; setText("lockdown-state", "Not active", "state good");
      if ($("lockdown-start-confirm").hidden) $("lockdown-start").hidden = false;
    }
    document.body.dataset.lockdown = s.lockdown ? (s.lockdown.level || "lockdown") : "";
    $("fault-banner").hidden = !s.fault;
    $("fault-banner").textContent = s.fault ? "Controller fault (failing closed): " + s.fault : "";
    const box = $("alarms"); box.replaceChildren();
    Object.entries(s.alarms || {}).forEach(([name, since]) => {
      const div = document.createElement("div"); div.className = "banner"; div.dataset.alarm = name;
      div.textContent = "Alarm: " + (ALARM_TEXT[name] || name) + " since " + new Date(since).toLocaleTimeString() + " ";
      if (!NO_ACK.includes(name)) {
        const b = document.createElement("button"); b.type = "button"; b.textContent = "Acknowledge";
        b.addEventListener("click", async () => {
          const r = await Panel.post("/api/alarm/ack", { alarm: name });
          if (!r.ok) refusal("action-message", r);
        });
        div.appendChild(b);
      }
      box.appendChild(div);
    });
    if (s.ring) { showRing(s.ring.request_id, s.ring.seconds_left, s.ring.snapshot, s.ring.presses, s.ring); } else if (ring) { clearRing(); }
    document.dispatchEvent(new CustomEvent("entry:status", { detail: s }));   // lockdown.js, panic.js
    // Not lastSeq: a status refresh is computed when it is sent and may already count journal
    // events still queued behind it on the stream; only the full state (with recent) sets it.
    if (health) {
      const m = health.mqtt;
      setText("h-mqtt", !m.enabled ? "not configured" : m.connected ? "connected" : "DISCONNECTED", !m.enabled ? "muted" : m.connected ? "good" : "bad");
      setText("h-outbox", String(health.outbox_depth), health.outbox_depth > 100 ? "bad" : "");
      const cam = health.camera || {};
      setText("h-camera", cam.ok ? "OK (" + (cam.kind || "camera") + ")" : "FAILED" + (cam.error ? ": " + cam.error : ""), cam.ok ? "good" : "bad");
      const d = health.disk || {};
      const low = d.free_bytes !== null && d.total_bytes && d.free_bytes / d.total_bytes < 0.05;
      setText("h-disk", fmtBytes(d.free_bytes) + (d.total_bytes ? " of " + fmtBytes(d.total_bytes) : ""), low ? "bad" : "");
    }
  }
  // Every event arrives with its sentence (label, made on the server from the same table).
  const describe = (e) => e.label || (LABELS.types || {})[e.type] || e.type;
  function addRecent(e, atEnd) {
    const li = document.createElement("li");
    li.textContent = new Date(e.ts).toLocaleTimeString() + " — " + describe(e);
    li.dataset.type = e.type;
    const list = $("recent");
    if (atEnd) list.appendChild(li); else list.prepend(li);
    while (list.children.length > 15) list.removeChild(list.lastChild);
  }
  function onJournal(e) {
    if (e.seq <= lastSeq) return;            // already part of the state we drew
    lastSeq = e.seq;
    addRecent(e, false);
    if (e.type === "buzzer_pressed") {
      showRing(e.request_id, e.expires_in || 60, false, 1, { lockdown: !!e.lockdown });
    } else if (e.type === "snapshot_captured") {
      showSnapshot(e.request_id, e.snapshot || 1, e.ts);
    } else if (e.type === "camera_failed" && ring && ring.id === e.request_id) {
      $("snapshot-wait").textContent = "No snapshot: " + (e.reason || "camera failed");
    } else if (e.type === "entry_approved" || e.type === "entry_denied" || e.type === "ring_expired") {
      if (ring && ring.id === e.request_id) clearRing();
      if (e.type === "entry_approved") showOutcome("Approved by " + e.actor, "approved");
      else if (e.type === "entry_denied") showOutcome("Denied by " + e.actor, "denied");
      else showOutcome("No answer — the ring expired", "expired");
    }
  }

  // Rings that expired unanswered stay here, photo and all, until someone acknowledges them.
  function showMissed(list) {
    const ul = $("missed-list");
    ul.replaceChildren();
    list.forEach((m) => {
      const li = document.createElement("li"); li.dataset.requestId = m.request_id;
      if (m.snapshot) {
        const img = document.createElement("img");
        img.src = "/snapshot/" + encodeURIComponent(m.request_id); img.alt = "Visitor snapshot (missed)";
        li.appendChild(img);
      }
      const text = document.createElement("span");
      text.textContent = m.reason === "lockdown_ended"
        ? "Rang during the lockdown (entry refused) — closed at " + hhmmss(m.expired)
        : "Nobody answered — ring expired at " + hhmmss(m.expired);
      const b = document.createElement("button"); b.type = "button"; b.textContent = "Seen";
      b.className = "secondary";
      b.addEventListener("click", async () => {
        const r = await Panel.post("/api/missed/ack", { request_id: m.request_id });
        if (r.ok) { li.remove(); $("missed").hidden = !ul.children.length; }
        else $("action-message").textContent = (r.data.error || "refused") + " (" + r.status + ")";
      });
      li.append(text, b);
      ul.appendChild(li);
    });
    $("missed").hidden = list.length === 0;
  }

  async function refreshStatus() {
    try {
      const resp = await fetch("/api/status", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (resp.ok) { const st = await resp.json(); applyStatus(st.status, st.health); if (st.missed) showMissed(st.missed); }
    } catch (err) { /* the stream brings it soon */ }
    if (ring) { $("approve").disabled = false; $("deny").disabled = false; }
  }

  // ---------------------------------------------------------------- stream
  function lost() {
    $("conn-lost").hidden = false;
    counters.connected = "no";
    if (es) { es.close(); es = null; }
    clearTimeout(watchdog);
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  }
  function alive() {
    clearTimeout(watchdog);
    watchdog = setTimeout(lost, STALL_MS);
  }
  // ---------------------------------------------------------------- session: stay signed in, warn, sign in again
  let sessionEnds = null, warnBefore = 600000;
  function sessionTick() {
    const left = sessionEnds === null ? Infinity : sessionEnds - performance.now();
    if (left <= warnBefore && $("signed-out").hidden) {
      const s = Math.max(0, Math.round(left / 1000));
      $("session-warning-text").textContent = "This screen's sign-in ends in " + Math.floor(s / 60) + " min " +
        (s % 60) + " s (maximum session length). Sign in again to keep it alerting.";
      $("session-warning").hidden = false;
    } else {
      $("session-warning").hidden = true;
    }
  }
  setInterval(sessionTick, 1000);
  function stopStream() {
    if (es) { es.close(); es = null; }
    clearTimeout(watchdog); clearTimeout(reconnectTimer);
  }
  function signInAgain(reason) {
    $("signed-out").hidden = false;
    counters.connected = "no";
    return Panel.reauth(reason);          // on success, onSignedIn below reconnects
  }
  Panel.onSignedIn(() => {
    $("signed-out").hidden = true; sessionEnds = null; sessionTick();
    stopStream(); retryMs = 1000; connect();
  });
  $("signed-out-signin").addEventListener("click", () => signInAgain());
  $("session-renew").addEventListener("click", () => Panel.reauth("Sign in again to keep this screen signed in and alerting."));

  async function connect() {
    try {
      const probe = await fetch("/api/status", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (probe.status === 401) { signInAgain(); return; }
      const st = probe.ok ? await probe.json() : {};
      if (st.streams && !st.streams.available) {      // refused a live stream: say why, keep retrying
        lost();
        $("conn-lost").textContent = "Not connected: " + st.streams.reason + ". Retrying…";
        return;
      }
    } catch (err) { lost(); return; }
    $("conn-lost").textContent = CONN_LOST_TEXT;
    stopStream();
    es = new EventSource("/events");
    es.addEventListener("state", (m) => {
      const st = JSON.parse(m.data);
      $("conn-lost").hidden = true; counters.connected = "yes"; retryMs = 1000; alive();
      if (st.recent) {
        $("recent").replaceChildren();
        st.recent.forEach((e) => addRecent(e, true));
        lastSeq = st.status.last_seq || 0;
      }
      applyStatus(st.status, st.health);
      if (st.missed) showMissed(st.missed);
    });
    es.addEventListener("journal", (m) => { alive(); onJournal(JSON.parse(m.data)); });
    es.addEventListener("ping", alive);
    es.addEventListener("session", (m) => {
      const info = JSON.parse(m.data);
      sessionEnds = performance.now() + info.expires_in * 1000;
      warnBefore = info.warn_before * 1000;
      $("signed-out").hidden = true;
      sessionTick();
    });
    // the session ended: connect() finds out whether a newer sign-in exists, else asks for one
    es.addEventListener("signed_out", () => { stopStream(); connect(); });
    es.addEventListener("reset", lost);
    es.onerror = lost;
  }
  alertsState();
  connect();
})();
