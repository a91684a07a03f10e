// A Chromium member of a Janus VideoRoom with end-to-end encryption by the PUBLISHED
// livekit-client E2EE worker (dist/livekit-client.e2ee.worker.mjs, npm 2.23.0,
// unmodified), driven by tests/browser/janus_pages.py.
//
// The page fetches its part from /config (name, key, Janus WebSocket URL, room, what to
// publish, whom to subscribe to), then talks to Janus itself (plain WebSocket, the
// Janus API; no janus.js):
// - publishes the framecrypt test pattern (I420 frames fetched from /pattern, written
//   through a MediaStreamTrackGenerator: exact pixels, no camera) and a WebAudio
//   oscillator tone, VP8 + Opus, optionally as 3 simulcast layers (rids h/m/l), with an
//   RTCRtpScriptTransform ('encode') on both senders;
// - subscribes to each named publisher on its own peer connection, with an
//   RTCRtpScriptTransform ('decode') on each receiver before answering;
// - posts Y planes of decoded frames per source (/frame), and stats per source and
//   per outbound layer, the tone it hears from each source and the worker's errors
//   (/stats), until the harness answers {done: true}.
'use strict';

const hexToBytes = (hex) => new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => fetch('/log', { method: 'POST', body: String(msg) }).catch(() => {});
window.onerror = (m, s, l, c, e) => log(`page error: ${m} ${e && e.stack}`);
window.onunhandledrejection = (e) => log(`page rejection: ${e.reason && (e.reason.stack || e.reason)}`);

// ---- the Janus API over WebSocket ---------------------------------------------------------

class Janus {
  constructor(url) {
    this.url = url;
    this.pending = new Map(); // transaction -> {resolve, reject, finalOnly}
    this.handlers = new Map(); // handle id -> event callback
    this.session = undefined;
    this.next = 0;
  }

  async open() {
    this.ws = new WebSocket(this.url, 'janus-protocol');
    await new Promise((resolve, reject) => {
      this.ws.onopen = resolve;
      this.ws.onerror = () => reject(new Error('janus websocket failed'));
    });
    this.ws.onmessage = (ev) => this.dispatch(JSON.parse(ev.data));
    this.ws.onclose = () => {
      for (const p of this.pending.values()) p.reject(new Error('janus websocket closed'));
      this.pending.clear();
    };
    const created = await this.send({ janus: 'create' });
    this.session = created.data.id;
    this.keepalive = setInterval(() => this.send({ janus: 'keepalive' }).catch(() => {}), 15000);
  }

  send(msg, finalOnly = false) {
    this.next += 1;
    const transaction = `t${this.next}`;
    return new Promise((resolve, reject) => {
      this.pending.set(transaction, { resolve, reject, finalOnly });
      this.ws.send(JSON.stringify({ ...msg, transaction, session_id: this.session }));
    });
  }

  dispatch(msg) {
    const p = this.pending.get(msg.transaction);
    if (p) {
      if (msg.janus === 'ack' && p.finalOnly) return;
      this.pending.delete(msg.transaction);
      const data = msg.plugindata && msg.plugindata.data;
      if (msg.janus === 'error') p.reject(new Error(`janus error ${JSON.stringify(msg.error)}`));
      else if (data && data.error_code) p.reject(new Error(`videoroom error ${data.error_code}: ${data.error}`));
      else p.resolve(msg);
      return;
    }
    const h = this.handlers.get(msg.sender);
    if (h) h(msg);
  }

  async attach(onEvent) {
    const r = await this.send({ janus: 'attach', plugin: 'janus.plugin.videoroom' });
    if (onEvent) this.handlers.set(r.data.id, onEvent);
    return r.data.id;
  }

  message(handle, body, jsep) {
    const msg = { janus: 'message', handle_id: handle, body };
    if (jsep) msg.jsep = { type: jsep.type, sdp: jsep.sdp, trickle: false };
    return this.send(msg, true);
  }

  close() {
    clearInterval(this.keepalive);
    try {
      this.ws.send(JSON.stringify({ janus: 'destroy', session_id: this.session, transaction: 'bye' }));
      this.ws.close();
    } catch (e) {
      // already closed
    }
  }
}

// ---- the livekit-client E2EE worker (as E2eeManager drives it) -------------------------------

function setupWorker(cfg) {
  const LK = window.LivekitClient;
  const worker = new Worker('/lk/livekit-client.e2ee.worker.mjs', { type: 'module' });
  const errors = [];
  worker.onmessage = (ev) => {
    const { kind, data } = ev.data || {};
    if (kind === 'error') errors.push(`${data && data.participantIdentity}: ${data && data.error}`);
  };
  worker.onerror = (e) => errors.push(`worker error: ${e.message}`);
  const keyProvider = new LK.ExternalE2EEKeyProvider();
  keyProvider.on(LK.KeyProviderEvent.SetKey, (keyInfo, updateCurrentKeyIndex) =>
    worker.postMessage({
      kind: 'setKey',
      data: {
        participantIdentity: keyInfo.participantIdentity,
        isPublisher: false,
        key: keyInfo.key,
        keyIndex: keyInfo.keyIndex,
        updateCurrentKeyIndex: updateCurrentKeyIndex ?? true,
      },
    }),
  );
  worker.postMessage({ kind: 'init', data: { keyProviderOptions: keyProvider.getOptions(), loglevel: 'warn' } });
  for (const id of [cfg.name, ...cfg.subscribe]) {
    worker.postMessage({ kind: 'enable', data: { participantIdentity: id, enabled: true } });
  }
  return { worker, errors, ready: keyProvider.setKey(hexToBytes(cfg.key_hex).buffer) };
}

function scriptTransform(worker, target, kind, participantIdentity, trackId, codec) {
  target.transform = new RTCRtpScriptTransform(worker, { kind, participantIdentity, trackId, codec });
}

// ---- media: the pattern (exact I420 frames) and a tone ---------------------------------------

async function patternTrack(cfg) {
  const { width: W, height: H, fps } = cfg;
  const frameBytes = (W * H * 3) / 2;
  const buf = await (await fetch(`/pattern?start=${cfg.start}&count=${cfg.pattern_frames}&w=${W}&h=${H}`)).arrayBuffer();
  const count = buf.byteLength / frameBytes;
  const gen = new MediaStreamTrackGenerator({ kind: 'video' });
  const writer = gen.writable.getWriter();
  (async () => {
    const t0 = performance.now();
    for (let i = 0; gen.readyState === 'live'; i += 1) {
      const frame = new VideoFrame(new Uint8Array(buf, (i % count) * frameBytes, frameBytes), {
        format: 'I420', codedWidth: W, codedHeight: H, timestamp: Math.round((i * 1e6) / fps),
      });
      await writer.write(frame);
      const due = t0 + ((i + 1) * 1000) / fps;
      await sleep(Math.max(0, due - performance.now())); // real-time pacing of the source
    }
  })().catch((e) => log(`pattern pump: ${e}`));
  gen.contentHint = 'detail'; // keep the resolution: frames are compared pixel by pixel
  return gen;
}

function toneTrack(hz) {
  const ctx = new AudioContext({ sampleRate: 48000 });
  const osc = ctx.createOscillator();
  osc.frequency.value = hz;
  const gain = ctx.createGain();
  gain.gain.value = 0.4;
  const dest = ctx.createMediaStreamDestination();
  osc.connect(gain).connect(dest);
  osc.start();
  ctx.resume().catch(() => {});
  return dest.stream.getAudioTracks()[0];
}

function toneMeter(track) {
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  ctx.resume().catch(() => {});
  const bins = new Float32Array(analyser.frequencyBinCount);
  return () => {
    analyser.getFloatFrequencyData(bins);
    let best = 0;
    for (let i = 1; i < bins.length; i += 1) if (bins[i] > bins[best]) best = i;
    return { hz: (best * ctx.sampleRate) / analyser.fftSize, db: bins[best] };
  };
}

async function yPlane(video) {
  // the exact luma when the decoded frame is planar YUV; a canvas round trip otherwise
  const W = video.videoWidth;
  const H = video.videoHeight;
  try {
    const vf = new VideoFrame(video);
    try {
      if (vf.format && /^(I420|I420A|NV12)$/.test(vf.format) &&
          vf.visibleRect.width === W && vf.visibleRect.height === H && vf.codedWidth === W) {
        const buf = new Uint8Array(vf.allocationSize());
        await vf.copyTo(buf);
        return { y: buf.slice(0, W * H), how: vf.format, W, H };
      }
    } finally {
      vf.close();
    }
  } catch (e) {
    // fall through to the canvas
  }
  const canvas = document.getElementById('canvas');
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, W, H);
  const rgba = ctx.getImageData(0, 0, W, H).data;
  const y = new Uint8Array(W * H);
  for (let i = 0, j = 0; j < y.length; i += 4, j += 1) {
    y[j] = Math.round(16 + (65.481 * rgba[i] + 128.553 * rgba[i + 1] + 24.966 * rgba[i + 2]) / 255);
  }
  return { y, how: 'canvas', W, H };
}

// ---- the member -------------------------------------------------------------------------------

async function waitGathered(pc) {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise((resolve) => {
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    });
  });
}

function onlyVP8(transceiver) {
  const caps = RTCRtpReceiver.getCapabilities('video').codecs.filter((c) =>
    /^video\/(VP8|rtx)$/i.test(c.mimeType));
  transceiver.setCodecPreferences(caps);
}

// Chromium starts VP8 at 300 kbit/s and ramps up over seconds; the recording is scored
// from its first frame, so the answer asks for a higher start (x-google-start-bitrate,
// a Chromium fmtp parameter of the remote description; nothing else is changed).
function startBitrate(sdp, kbps) {
  if (!kbps) return sdp;
  const m = sdp.match(/a=rtpmap:(\d+) VP8\/90000/i);
  if (!m) return sdp;
  const pt = m[1];
  const param = `x-google-start-bitrate=${kbps}`;
  const fmtp = new RegExp(`a=fmtp:${pt} ([^\\r\\n]*)`);
  if (fmtp.test(sdp)) return sdp.replace(fmtp, (line) => `${line};${param}`);
  return sdp.replace(m[0], `${m[0]}\r\na=fmtp:${pt} ${param}`);
}

async function publish(cfg, janus, handle, worker) {
  const pc = new RTCPeerConnection({});
  const video = await patternTrack(cfg);
  const audio = toneTrack(cfg.tone_hz);
  const sendEncodings = cfg.simulcast
    ? [
      { rid: 'h', active: true, maxBitrate: 1200000 },
      { rid: 'm', active: true, maxBitrate: 500000, scaleResolutionDownBy: 2 },
      { rid: 'l', active: true, maxBitrate: 200000, scaleResolutionDownBy: 4 },
    ]
    : [{ maxBitrate: 1500000 }];
  const vt = pc.addTransceiver(video, { direction: 'sendonly', sendEncodings });
  const at = pc.addTransceiver(audio, { direction: 'sendonly' });
  onlyVP8(vt);
  scriptTransform(worker, vt.sender, 'encode', cfg.name, `${cfg.name}-video`, 'vp8');
  scriptTransform(worker, at.sender, 'encode', cfg.name, `${cfg.name}-audio`, undefined);
  await pc.setLocalDescription(await pc.createOffer());
  await waitGathered(pc);
  const r = await janus.message(handle, { request: 'publish', audio: true, video: true }, pc.localDescription);
  await pc.setRemoteDescription({ type: 'answer', sdp: startBitrate(r.jsep.sdp, cfg.start_kbps) });
  return pc;
}

async function subscribe(cfg, janus, pub, worker, sources) {
  const handle = await janus.attach();
  const r = await janus.message(handle, {
    request: 'join', ptype: 'subscriber', room: cfg.room, streams: [{ feed: pub.id }],
    private_id: cfg.private_id,
  });
  const pc = new RTCPeerConnection({});
  const src = { name: pub.display, pc, frames: 0, posted: 0, tone: null, errors: 0 };
  sources.set(pub.display, src);
  pc.ontrack = (ev) => {
    if (ev.track.kind === 'video') {
      const el = document.createElement('video');
      el.muted = true;
      el.autoplay = true;
      el.srcObject = new MediaStream([ev.track]);
      document.getElementById('remotes').appendChild(el);
      el.play().catch(() => {});
      const onFrame = async () => {
        src.frames += 1;
        if (src.frames > cfg.skip_frames && src.posted < cfg.frames_to_post) {
          src.posted += 1;
          const { y, how, W, H } = await yPlane(el);
          await fetch('/frame', {
            method: 'POST', body: y,
            headers: { 'x-from': pub.display, 'x-how': how, 'x-width': String(W), 'x-height': String(H) },
          });
        }
        el.requestVideoFrameCallback(onFrame);
      };
      el.requestVideoFrameCallback(onFrame);
    } else {
      // Chromium pulls remote audio only for a media element sink (muted: --mute-audio)
      const el = document.createElement('audio');
      el.muted = true;
      el.autoplay = true;
      el.srcObject = new MediaStream([ev.track]);
      document.getElementById('remotes').appendChild(el);
      el.play().catch(() => {});
      src.tone = toneMeter(ev.track);
    }
  };
  await pc.setRemoteDescription(r.jsep);
  for (const t of pc.getTransceivers()) {
    const kind = t.receiver.track.kind;
    scriptTransform(worker, t.receiver, 'decode', pub.display, `${pub.display}-${kind}-at-${cfg.name}`,
      kind === 'video' ? 'vp8' : undefined);
  }
  await pc.setLocalDescription(await pc.createAnswer());
  await waitGathered(pc);
  await janus.message(handle, { request: 'start' }, pc.localDescription);
  return pc;
}

async function statsOf(pc) {
  const out = { inbound: {}, outbound: [] };
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp') {
      if (s.kind === 'video') {
        Object.assign(out.inbound, {
          video_frames_received: s.framesReceived || 0,
          video_frames_decoded: s.framesDecoded || 0,
          video_packets_received: s.packetsReceived || 0,
          frame_width: s.frameWidth || 0,
          pli_sent: s.pliCount || 0,
        });
      } else {
        Object.assign(out.inbound, {
          audio_packets_received: s.packetsReceived || 0,
          audio_samples_received: s.totalSamplesReceived || 0,
          audio_concealed_samples: s.concealedSamples || 0,
        });
      }
    } else if (s.type === 'outbound-rtp') {
      out.outbound.push({
        kind: s.kind, rid: s.rid || '', ssrc: s.ssrc, packets_sent: s.packetsSent || 0,
        frames_encoded: s.framesEncoded || 0, width: s.frameWidth || 0, height: s.frameHeight || 0,
        pli_received: s.pliCount || 0,
      });
    }
  });
  return out;
}

async function main() {
  const cfg = await (await fetch('/config')).json();
  const { worker, errors, ready } = setupWorker(cfg);
  await ready;
  const janus = new Janus(cfg.janus);
  await janus.open();
  const publishers = new Map(); // display -> {id, display}
  const handle = await janus.attach((msg) => {
    const data = msg.plugindata && msg.plugindata.data;
    for (const p of (data && data.publishers) || []) publishers.set(p.display, p);
  });
  const joined = await janus.message(handle, { request: 'join', ptype: 'publisher', room: cfg.room, display: cfg.name });
  const jdata = joined.plugindata.data;
  cfg.private_id = jdata.private_id;
  for (const p of jdata.publishers || []) publishers.set(p.display, p);
  const pcs = [];
  let pubPc = null;
  if (cfg.publish) {
    pubPc = await publish(cfg, janus, handle, worker);
    pcs.push(pubPc);
  }
  const sources = new Map();
  const wanted = new Set(cfg.subscribe);
  for (;;) {
    for (const name of wanted) {
      const p = publishers.get(name);
      if (p && p.streams && p.streams.length) {
        wanted.delete(name);
        pcs.push(await subscribe(cfg, janus, p, worker, sources));
      }
    }
    const bySource = {};
    for (const [name, src] of sources) {
      const st = await statsOf(src.pc);
      const t = src.tone ? src.tone() : { hz: 0, db: -Infinity };
      bySource[name] = { ...st.inbound, frames_seen: src.frames, frames_posted: src.posted,
        tone_hz: t.hz, tone_db: t.db, connection: src.pc.connectionState };
    }
    const own = pubPc ? await statsOf(pubPc) : { outbound: [] };
    const reply = await (await fetch('/stats', {
      method: 'POST',
      body: JSON.stringify({
        sources: bySource, outbound: own.outbound, waiting_for: [...wanted],
        publish_connection: pubPc ? pubPc.connectionState : null,
        worker_errors: errors.slice(0, 5), worker_error_count: errors.length,
        script_transform: typeof RTCRtpScriptTransform !== 'undefined',
      }),
    })).json();
    if (reply.done) break;
    await sleep(250); // the stats polling interval
  }
  for (const pc of pcs) pc.close();
  janus.close();
  worker.terminate();
}

main().catch((e) => log(`main failed: ${e && (e.stack || e)}`));
