// Shared helpers: CSRF-protected POST, and signing in again without leaving the page.
// Loaded as a static file (the CSP forbids inline script).
//
// Why an in-page sign-in: a front-office display whose session ended (idle, revoked, or the
// absolute lifetime) must not lose the page, and with it a ring someone is waiting on. A
// refused action (401) opens a small dialog; after signing in, the action is sent again.
"use strict";
const Panel = (() => {
  const meta = (name) => document.querySelector('meta[name="' + name + '"]');
  const csrf = () => meta("csrf-token").content;
  const signedIn = [];           // callbacks after a successful in-page sign-in (e.g. reopen the stream)
  let pending = null;            // one dialog at a time; every caller waits on the same answer

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    (children || []).forEach((c) => node.append(c));
    return node;
  }

  async function signIn(username, password) {
    const headers = { Accept: "application/json" };
    let resp = await fetch("/login", { credentials: "same-origin", headers });
    const token = (await resp.json()).login_csrf;
    const body = new URLSearchParams({ username, password, csrf_token: token });
    resp = await fetch("/login", { method: "POST", body, credentials: "same-origin", headers });
    let data = {};
    try { data = await resp.json(); } catch (err) { data = {}; }
    return { ok: resp.ok, status: resp.status, data };
  }

  // Show the sign-in dialog; resolves true once signed in again, false if the person cancels.
  function reauth(reason) {
    if (pending) return pending;
    pending = new Promise((resolve) => {
      const user = el("input", { id: "reauth-username", name: "username", autocomplete: "username",
        required: true, maxLength: 64, value: (meta("panel-user") || {}).content || "" });
      const pass = el("input", { id: "reauth-password", name: "password", type: "password",
        autocomplete: "current-password", required: true, maxLength: 256 });
      const message = el("p", { id: "reauth-message", className: "error" });
      message.setAttribute("role", "alert");
      const submit = el("button", { id: "reauth-submit", type: "submit", className: "primary", textContent: "Sign in" });
      const cancel = el("button", { id: "reauth-cancel", type: "button", textContent: "Cancel" });
      const form = el("form", { method: "dialog" }, [
        el("h2", { textContent: "Sign in again" }),
        el("p", { textContent: reason || "Your sign-in has ended. Sign in to continue; this page stays open." }),
        el("label", {}, ["Username ", user]), el("label", {}, ["Password ", pass]),
        message, el("p", {}, [submit, " ", cancel])]);
      const dialog = el("dialog", { id: "reauth", className: "card narrow" }, [form]);
      document.body.append(dialog);
      const finish = (ok) => { dialog.close(); dialog.remove(); pending = null; resolve(ok); };
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        submit.disabled = true; message.textContent = "";
        try {
          const r = await signIn(user.value.trim(), pass.value);
          if (r.ok) {
            meta("csrf-token").content = r.data.csrf;
            if (meta("panel-user")) meta("panel-user").content = r.data.username;
            document.body.dataset.reauths = String(Number(document.body.dataset.reauths || 0) + 1);
            finish(true);
            signedIn.forEach((cb) => { try { cb(r.data); } catch (err) { /* one listener must not stop the rest */ } });
            return;
          }
          message.textContent = (r.data.error || "sign-in refused") + " (" + r.status + ")";
        } catch (err) {
          message.textContent = "network error: " + err.message;
        }
        submit.disabled = false; pass.value = ""; pass.focus();
      });
      cancel.addEventListener("click", () => finish(false));
      dialog.addEventListener("cancel", (e) => { e.preventDefault(); finish(false); });
      dialog.showModal();
      (user.value ? pass : user).focus();
    });
    return pending;
  }

  async function post(url, fields, retried) {
    const body = new URLSearchParams(fields || {});
    let resp;
    try {
      resp = await fetch(url, { method: "POST", body, credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" } });
    } catch (err) {
      return { ok: false, status: 0, data: { error: "network error: " + err.message } };
    }
    if (resp.status === 401 && !retried) {
      if (await reauth("Your sign-in has ended. Sign in again and the action will be sent.")) {
        return post(url, fields, true);
      }
      return { ok: false, status: 401, data: { error: "not signed in; the action was not sent" } };
    }
    let data = {};
    try { data = await resp.json(); } catch (err) { data = {}; }
    return { ok: resp.ok, status: resp.status, data };
  }
  return { post, reauth, onSignedIn: (cb) => signedIn.push(cb) };
})();
