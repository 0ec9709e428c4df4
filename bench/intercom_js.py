"""The browser side of the intercom benchmark: JavaScript run in the dashboard (Chromium).

Every time is wall-clock milliseconds (Date.now() / performance.timeOrigin), the same clock as
the daemon's time.time() on this machine, so the drawn capture time and the click times can
be compared with it directly.
"""

# Glass-to-glass: for each presented frame (requestVideoFrameCallback), read the time pattern
# (controller/live_frames.py TimePattern: a white and a black sync block, then 32 bits of
# ms-since-epoch mod 2**32, blocks of max(8, width // 40) px on the row 2 blocks above the
# bottom) and subtract it from the frame's expected display time.
VIDEO_LATENCY = """async ([n, timeoutMs]) => {
  const v = document.getElementById('live-video');
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d', {willReadFrequently: true});
  const b = Math.max(8, Math.floor(c.width / 40));
  const y = c.height - 2 * b + Math.floor(b / 2);
  const mod = 2 ** 32;
  const out = [];
  return await new Promise((resolve) => {
    setTimeout(() => resolve(out), timeoutMs);
    const step = (now, meta) => {
      const glass = performance.timeOrigin + meta.expectedDisplayTime;
      g.drawImage(v, 0, 0);
      const row = g.getImageData(0, y, b * 34, 1).data;
      const bit = (i) => { const k = 4 * (i * b + (b >> 1)); return (row[k] + row[k + 1] + row[k + 2]) / 3 >= 128 ? 1 : 0; };
      if (bit(0) === 1 && bit(1) === 0) {
        let val = 0;
        for (let i = 2; i < 34; i++) val = val * 2 + bit(i);
        out.push(((Math.floor(glass) % mod) - val + mod) % mod);
      }
      if (out.length >= n) resolve(out); else v.requestVideoFrameCallback(step);
    };
    v.requestVideoFrameCallback(step);
  });
}"""

# Door -> office audio: the synthetic visitor voice clicks (2 kHz, 0.9 of full scale, 5 ms) at
# every whole second of wall time; find each click's onset in the received audio (a
# ScriptProcessor of 256 samples: its buffer just ended when the callback runs) and take its
# offset from the whole second.
AUDIO_IN_LATENCY = """async ([n, timeoutMs]) => {
  const v = document.getElementById('live-video');
  const ctx = new AudioContext({sampleRate: 48000});
  await ctx.resume();
  const src = ctx.createMediaStreamSource(v.srcObject);
  const proc = ctx.createScriptProcessor(256, 1, 1);
  const out = [];
  let last = 0;
  return await new Promise((resolve) => {
    const done = () => { proc.disconnect(); src.disconnect(); ctx.close(); resolve(out); };
    setTimeout(done, timeoutMs);
    proc.onaudioprocess = (e) => {
      const now = Date.now();
      const d = e.inputBuffer.getChannelData(0);
      for (let i = 0; i < d.length; i++) {
        if (Math.abs(d[i]) > 0.5) {
          const at = now - (d.length - i) * 1000 / ctx.sampleRate;
          if (at - last > 500) { last = at; const ms = at % 1000; out.push(ms < 800 ? ms : ms - 1000); }
          break;
        }
      }
      if (out.length >= n) done();
    };
    src.connect(proc); proc.connect(ctx.destination);
  });
}"""

# Office -> door audio: Talk on, then the office "microphone" is a WebAudio oscillator gated
# on for 5 ms at every whole second of wall time (mapped from the context's render clock);
# the door side detects the onsets (bench/intercom.py ClickDetector).
AUDIO_OUT_START = """async ([seconds]) => {
  await Intercom.talk(true);
  const v = Intercom.view();
  const ctx = new AudioContext({sampleRate: 48000});
  await ctx.resume();
  const dest = ctx.createMediaStreamDestination();
  const osc = ctx.createOscillator(); osc.frequency.value = 2000;
  const gain = ctx.createGain(); gain.gain.value = 0;
  osc.connect(gain).connect(dest); osc.start();
  const wallAtZero = Date.now() - ctx.currentTime * 1000;
  const first = Math.ceil(Date.now() / 1000) + 1;
  for (let k = 0; k < seconds; k++) {
    const t = ((first + k) * 1000 - wallAtZero) / 1000;
    gain.gain.setValueAtTime(0.9, t); gain.gain.setValueAtTime(0, t + 0.005);
  }
  await v.audio.sender.replaceTrack(dest.stream.getAudioTracks()[0]);
  window.__benchCtx = ctx;
  return first;
}"""

# Press -> first live frame: resolves with the expected display time of the first frame shown
# after the live view appears by itself (the ring starts it).
FIRST_FRAME = """() => { window.__firstFrame = new Promise((resolve) => {
  const v = document.getElementById('live-video');
  const poll = () => {
    if (!v.hidden && v.srcObject) v.requestVideoFrameCallback((now, meta) => resolve(performance.timeOrigin + meta.expectedDisplayTime));
    else setTimeout(poll, 2);
  };
  poll();
}); }"""
