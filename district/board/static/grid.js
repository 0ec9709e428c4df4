// The live grid: one EventSource on /live. The first "grid" event is the whole grid (full: true);
// later ones carry only the campuses that changed (and the ones removed), and only those
// cards are redrawn, so a district of hundreds of campuses stays light in the browser.
// Ring ages run here (server time + local elapsed), so an unanswered ring turns "overdue"
// without a server round trip; the threshold comes from the server (ring_alert_seconds).
(function () {
  "use strict";
  const root = document.getElementById("grid");
  const status = document.getElementById("live-status");
  const operator = document.body.dataset.role === "operator";
  let grid = null;
  let offset = 0;           // server clock minus this browser's clock, ms

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) e.setAttribute(k, v);
    }
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, Math.round((Date.now() + offset - Date.parse(iso)) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }

  function ringAge(ring) {
    return Math.max(0, (Date.now() + offset - Date.parse(ring.since)) / 1000);
  }

  function lockLink(campus, action, label, cls) {
    const a = el("a", {class: "button " + (cls || ""), href: "/lockdown?campus=" + encodeURIComponent(campus) +
      "&action=" + action, "data-lockdown": action}, label);
    return a;
  }

  function card(c) {
    const section = el("section", {class: "campus" + (c.lockdown ? " locked" : ""), "data-campus": c.campus});
    const head = el("h2", {}, c.name + " ");
    head.append(el("span", {class: "count"}, c.online + "/" + c.doors.length + " online"));
    if (c.lockdown) head.append(el("span", {class: "badge lockdown", "data-level": c.lockdown},
      c.lockdown.toUpperCase() + " (" + c.lockdown_doors + "/" + c.doors.length + ")"));
    if (c.link_down) head.append(el("span", {class: "badge link-down"}, "CAMPUS LINK DOWN since " +
      (c.link_since || "?")));
    section.append(head);
    const tools = el("p", {class: "tools"});
    if (c.panel_url) tools.append(el("a", {href: c.panel_url, target: "_blank", rel: "noopener noreferrer",
      class: "panel-link"}, "campus panel"));
    if (operator) {
      tools.append(" ", lockLink(c.campus, "start", "Start lockdown", "danger"));
      tools.append(" ", lockLink(c.campus, "end", "End lockdown"));
    }
    section.append(tools);
    const table = el("table", {class: "doors"});
    for (const d of c.doors) {
      const tr = el("tr", {class: "door " + (d.online ? "online" : "offline"), "data-door": c.campus + "/" + d.door,
        "data-state": d.state, "data-online": d.online ? "yes" : "no"});
      const name = el("td", {});
      name.append(el("a", {href: "/door/" + c.campus + "/" + d.door}, d.door));
      tr.append(name);
      tr.append(el("td", {class: "avail"}, (d.online ? "online" : "OFFLINE") + " · " + ago(d.last_seen)));
      tr.append(el("td", {class: "state"}, d.state));
      const ring = el("td", {class: "ring"});
      if (d.ring) {
        ring.dataset.since = d.ring.since;
        ring.dataset.requestId = d.ring.request_id;
        ring.classList.add("pending");
      }
      tr.append(ring);
      tr.append(el("td", {class: "alarms" + (d.alarms.length ? " active" : ""), "data-alarms": d.alarms.join(" ")},
        d.alarm_words.join(", ")));
      tr.append(el("td", {class: "lock"}, d.lockdown ? d.lockdown.toUpperCase() : ""));
      table.append(tr);
    }
    if (!c.doors.length) table.append(el("tr", {}, "no doors heard from yet"));
    section.append(table);
    return section;
  }

  // Merge an update into the grid and redraw only the cards it names.
  function apply(update) {
    if (update.full || !grid) {
      grid = {campuses: []};
      root.replaceChildren();
    }
    grid.now = update.now;
    grid.ring_alert_seconds = update.ring_alert_seconds;
    const bySlug = new Map(grid.campuses.map((c) => [c.campus, c]));
    for (const slug of update.removed || []) {
      bySlug.delete(slug);
      const old = root.querySelector('section[data-campus="' + CSS.escape(slug) + '"]');
      if (old) old.remove();
    }
    for (const c of update.campuses) {
      bySlug.set(c.campus, c);
      const fresh = card(c);
      const old = root.querySelector('section[data-campus="' + CSS.escape(c.campus) + '"]');
      if (old) { old.replaceWith(fresh); continue; }
      const next = Array.from(root.children).find((s) => s.dataset.campus > c.campus);
      root.insertBefore(fresh, next || null);
    }
    grid.campuses = Array.from(bySlug.values()).sort((a, b) => (a.campus < b.campus ? -1 : 1));
    tick();
  }

  function tick() {
    if (!grid) return;
    const limit = grid.ring_alert_seconds;
    for (const td of root.querySelectorAll("td.ring.pending")) {
      const age = ringAge({since: td.dataset.since});
      td.textContent = "ringing " + Math.floor(age) + " s";
      td.classList.toggle("overdue", age > limit);
      td.closest("tr").classList.toggle("overdue", age > limit);
    }
    for (const td of root.querySelectorAll("td.avail")) {
      const tr = td.closest("tr");
      const d = findDoor(tr.dataset.door);
      if (d) td.textContent = (d.online ? "online" : "OFFLINE") + " · " + ago(d.last_seen);
    }
  }

  function findDoor(key) {
    const [campus, door] = key.split("/");
    for (const c of grid.campuses) if (c.campus === campus) for (const d of c.doors) if (d.door === door) return d;
    return null;
  }

  function connect() {
    const es = new EventSource("/live");
    es.addEventListener("grid", (e) => {
      const update = JSON.parse(e.data);
      offset = Date.parse(update.now) - Date.now();
      status.textContent = "live";
      status.dataset.live = "yes";
      apply(update);
    });
    es.addEventListener("signed_out", () => { es.close(); window.location = "/login"; });
    es.onerror = () => { status.textContent = "reconnecting…"; status.dataset.live = "no"; };
  }

  connect();
  setInterval(tick, 1000);
})();
