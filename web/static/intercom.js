// The intercom on the dashboard: live video (WebRTC, or MJPEG over HTTPS as a fallback),
// the visitor's voice, and Talk (press-and-hold, or a toggle).
//
// Why this shape: the view starts by itself when the buzzer rings (the ring card appears),
// with the visitor's audio on and the office microphone off; the microphone is asked for
// and sent only while Talk is on (the door also gates it). Signalling is non-trickle: one
// complete offer after ICE gathering, one complete answer. If WebRTC cannot connect (UDP
// blocked) or the config turns it off, the MJPEG view appears with a visible note.
"use strict";
const Intercom = (() => {
  const $ = (id) => document.getElementById(id);
  const box = $("intercom");
  let info = null;
  let view = null;            // {mode, viewer, reason, pc, audio (transceiver), stream}
  let mic = null;             // the office microphone track, asked for on the first Talk
  let talking = false;
  let starting = null;

  function setState(text) { $("live-state").textContent = text; }
  function note(text) { $("live-note").textContent = text || ""; $("live-note").hidden = !text; }
  function mark(mode) { document.body.dataset.live = mode; }

  async function loadInfo() {
    const resp = await fetch("/api/intercom", { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error("intercom info: " + resp.status);
    info = await resp.json();
    return info;
  }

  function gathered(pc, ms) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); } };
      const t = setTimeout(resolve, ms);          // send what we have: host candidates come first
      pc.addEventListener("icegatheringstatechange", done);
    });
  }

  function connected(pc, ms) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pc.connectionState === "connected") { clearTimeout(t); resolve(); }
        else if (pc.connectionState === "failed" || pc.connectionState === "closed") { clearTimeout(t); reject(new Error(pc.connectionState)); }
      };
      const t = setTimeout(() => reject(new Error("timed out")), ms);
      pc.addEventListener("connectionstatechange", check);
      check();
    });
  }

  async function startWebrtc(reason) {
    const pc = new RTCPeerConnection({ iceServers: (info.ice_servers || []).map((u) => ({ urls: u })) });
    pc.addTransceiver("video", { direction: "recvonly" });
    const audio = pc.addTransceiver("audio", { direction: "sendrecv" });   // office mic: no track until Talk
    const stream = new MediaStream();
    const video = $("live-video");
    pc.addEventListener("track", (e) => { stream.addTrack(e.track); video.srcObject = stream; });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 3000);
    const r = await Panel.post("/api/intercom/offer", { sdp: pc.localDescription.sdp, reason });
    if (!r.ok) { pc.close(); throw new Error(r.data.error || ("refused (" + r.status + ")")); }
    view = { mode: "webrtc", viewer: r.data.viewer, reason, pc, audio, stream };
    await pc.setRemoteDescription({ type: "answer", sdp: r.data.sdp });
    try {
      await connected(pc, (info.connect_timeout_seconds || 15) * 1000);
    } catch (err) {                               // free the door's side now, then fall back
      view = null;
      pc.close();
      Panel.post("/api/intercom/hangup", { viewer: r.data.viewer });
      throw new Error("WebRTC could not connect (" + err.message + "; UDP may be blocked)");
    }
    pc.addEventListener("connectionstatechange", () => {
      if (view && view.pc === pc && (pc.connectionState === "failed" || pc.connectionState === "closed")) {
        stop(); setState("Live view ended (connection lost).");
      }
    });
    video.hidden = false;
    video.muted = false;                           // the visitor's voice on
    try { await video.play(); } catch (err) {
      video.muted = true; video.play().catch(() => {});
      note("Click the video to hear the visitor (the browser blocked sound).");
      video.addEventListener("click", () => { video.muted = false; note(""); }, { once: true });
    }
    mark("webrtc");
    $("talk-hold").hidden = $("talk-toggle").hidden = false;
    $("talk-hold").disabled = $("talk-toggle").disabled = false;
    setState(reason === "ring" ? "Live: the visitor at the door (you hear them; they hear you only while you talk)."
      : "Live look at the entrance (you hear the door; they hear you only while you talk).");
  }

  function startMjpeg(reason, why) {
    const img = $("live-mjpeg");
    img.src = "/api/intercom/mjpeg?reason=" + encodeURIComponent(reason) + "&t=" + Date.now();
    img.hidden = false;
    view = { mode: "mjpeg", viewer: null, reason };
    mark("mjpeg");
    note("Video only (MJPEG over HTTPS): " + why + " No audio and no Talk in this mode.");
    setState(reason === "ring" ? "Live: the visitor at the door (video only)." : "Live look at the entrance (video only).");
    img.onerror = () => { if (view && view.mode === "mjpeg") { stop(); setState("Live view ended."); } };
  }

  async function start(reason) {
    if (view || starting) return starting;
    starting = (async () => {
      $("live-look").hidden = true; $("live-close").hidden = false;
      setState("Connecting the live view…");
      note("");
      try {
        if (!info) await loadInfo();
        if (!info.enabled) { setState("Live view is off on this controller."); mark("off"); return; }
        if (info.webrtc) {
          try { await startWebrtc(reason); return; }
          catch (err) { if (!$("live-close").hidden) startMjpeg(reason, err.message + "."); return; }
        }
        startMjpeg(reason, "WebRTC is turned off or its media engine is not running.");
      } catch (err) {
        setState("Live view unavailable: " + err.message); mark("error");
        $("live-look").hidden = false; $("live-close").hidden = true;
      }
    })();
    try { await starting; } finally { starting = null; }
  }

  async function stop() {
    const v = view;
    view = null;
    if (talking) setTalk(false, v);
    $("live-video").hidden = true; $("live-mjpeg").hidden = true;
    $("live-mjpeg").removeAttribute("src");
    $("talk-hold").hidden = $("talk-toggle").hidden = true;
    $("live-look").hidden = false; $("live-close").hidden = true;
    note(""); mark("off"); setState("Live view off.");
    if (v && v.pc) {
      v.pc.close();
      $("live-video").srcObject = null;
      if (v.viewer) await Panel.post("/api/intercom/hangup", { viewer: v.viewer });
    }
  }

  async function setTalk(on, v) {
    v = v || view;
    if (!v || v.mode !== "webrtc" || talking === on) return;
    talking = on;
    $("talk-toggle").setAttribute("aria-pressed", on ? "true" : "false");
    $("talk-toggle").textContent = on ? "Stop talking" : "Talk";
    box.classList.toggle("talking", on);
    document.body.dataset.talking = on ? "yes" : "no";
    $("talk-state").textContent = on ? "TALKING: the visitor hears you." : "";
    if (on) {
      try {
        if (!mic) mic = (await navigator.mediaDevices.getUserMedia({ audio: true, video: false })).getAudioTracks()[0];
        mic.enabled = true;
        await v.audio.sender.replaceTrack(mic);
      } catch (err) {
        talking = false; box.classList.remove("talking"); document.body.dataset.talking = "no";
        $("talk-state").textContent = "No microphone: " + err.message;
        return;
      }
    } else if (mic) {
      mic.enabled = false;
    }
    const r = await Panel.post("/api/intercom/talk", { viewer: v.viewer, on: on ? "1" : "0" });
    if (!r.ok && on) { $("talk-state").textContent = r.data.error || "Talk refused"; }
  }

  function wire() {
    $("live-look").addEventListener("click", () => start("look"));
    $("live-close").addEventListener("click", () => stop());
    const hold = $("talk-hold");
    hold.addEventListener("pointerdown", (e) => { e.preventDefault(); setTalk(true); });
    for (const ev of ["pointerup", "pointerleave", "pointercancel"]) hold.addEventListener(ev, () => { if (!$("talk-toggle").dataset.latched) setTalk(false); });
    hold.addEventListener("keydown", (e) => { if ((e.key === " " || e.key === "Enter") && !e.repeat) setTalk(true); });
    hold.addEventListener("keyup", (e) => { if (e.key === " " || e.key === "Enter") setTalk(false); });
    $("talk-toggle").addEventListener("click", () => {
      const on = !talking;
      if (on) $("talk-toggle").dataset.latched = "1"; else delete $("talk-toggle").dataset.latched;
      setTalk(on);
    });
    // The ring card appears: start the live view by itself; it ends with the ring (unless talking).
    const ring = $("ring");
    new MutationObserver(() => {
      if (!ring.hidden && !view) start("ring");
      else if (ring.hidden && view && view.reason === "ring" && !talking) stop();
    }).observe(ring, { attributes: true, attributeFilter: ["hidden"] });
    if (!ring.hidden) start("ring");
    loadInfo().then((i) => { if (!i.enabled) box.hidden = true; }).catch(() => {});   // no intercom here
    window.addEventListener("pagehide", () => {
      if (view && view.viewer) {
        const form = new FormData();
        form.append("viewer", view.viewer);
        form.append("csrf_token", document.querySelector('meta[name="csrf-token"]').content);
        navigator.sendBeacon("/api/intercom/hangup", form);
      }
    });
    mark("off");
  }

  if (box) wire();
  return { start, stop, talk: setTalk, view: () => view };
})();
