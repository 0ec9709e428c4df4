// Shared helpers: CSRF-protected POST. Loaded as a static file (the CSP forbids inline script).
"use strict";
const Panel = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  async function post(url, fields) {
    const body = new URLSearchParams(fields || {});
    let resp;
    try {
      resp = await fetch(url, { method: "POST", body, credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" } });
    } catch (err) {
      return { ok: false, status: 0, data: { error: "network error: " + err.message } };
    }
    if (resp.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(location.pathname)); }
    let data = {};
    try { data = await resp.json(); } catch (err) { data = {}; }
    return { ok: resp.ok, status: resp.status, data };
  }
  return { post };
})();
