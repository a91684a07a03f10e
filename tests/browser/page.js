// The browser side of the framecrypt <-> livekit-client interop test (tests/browser/harness.py).
//
// It plays livekit-client's E2eeManager around the PUBLISHED E2EE worker bundle
// (livekit-client/dist/livekit-client.e2ee.worker.mjs, npm 2.23.0, unmodified): the key
// comes from the library's ExternalE2EEKeyProvider (a raw key -> HKDF), the worker gets the
// messages E2eeManager posts (init, setKey, enable), and every sender and receiver of the
// peer connection gets a transform BEFORE negotiation: RTCRtpScriptTransform
// (?transform=script) or createEncodedStreams (?transform=insertable).
//
// It sends the fake camera (a y4m test pattern with a frame-index barcode) and the fake
// microphone (a tone), receives aiortc's pattern and tone, and posts to the harness:
// Y planes of received video frames (/frame), stats and the received tone (/stats).
'use strict';

const params = new URLSearchParams(location.search);
const MODE = params.get('transform') || 'script';
const W = 320;
const H = 240;
const FRAMES_TO_POST = Number(params.get('frames') || 20);
const SKIP_FRAMES = 15;

const hexToBytes = (hex) => new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));
const log = (msg) => fetch('/log', { method: 'POST', body: String(msg) }).catch(() => {});
const post = async (path, body, headers = {}) => {
  const r = await fetch(path, { method: 'POST', body, headers });
  return r.json();
};
window.onerror = (m, s, l, c, e) => log(`page error: ${m} ${e && e.stack}`);
window.onunhandledrejection = (e) => log(`page rejection: ${e.reason && (e.reason.stack || e.reason)}`);

async function setupWorker() {
  const LK = window.LivekitClient;
  const worker = new Worker('/lk/livekit-client.e2ee.worker.mjs', { type: 'module' });
  const workerErrors = [];
  worker.onmessage = (ev) => {
    const { kind, data } = ev.data || {};
    if (kind === 'error') workerErrors.push(String(data && data.error));
  };
  worker.onerror = (e) => workerErrors.push(`worker error: ${e.message}`);
  const keyProvider = new LK.ExternalE2EEKeyProvider();
  // what E2eeManager does with the key provider's events
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
  worker.postMessage({
    kind: 'init',
    data: { keyProviderOptions: keyProvider.getOptions(), loglevel: 'warn' },
  });
  const { key_hex: keyHex } = await (await fetch('/config')).json(); // a random test key
  await keyProvider.setKey(hexToBytes(keyHex).buffer); // raw key -> HKDF, as the library does
  for (const id of ['browser', 'python']) {
    worker.postMessage({ kind: 'enable', data: { participantIdentity: id, enabled: true } });
  }
  return { worker, workerErrors };
}

function transform(worker, target, kind, participantIdentity, trackId, codec) {
  if (MODE === 'script') {
    target.transform = new RTCRtpScriptTransform(worker, { kind, participantIdentity, trackId, codec });
  } else {
    const { readable, writable } = target.createEncodedStreams();
    worker.postMessage(
      {
        kind,
        data: { readableStream: readable, writableStream: writable, trackId, codec, participantIdentity },
      },
      [readable, writable],
    );
  }
}

function yPlaneFromRGBA(rgba) {
  const y = new Uint8Array(W * H);
  for (let i = 0, j = 0; j < y.length; i += 4, j += 1) {
    y[j] = Math.round(16 + (65.481 * rgba[i] + 128.553 * rgba[i + 1] + 24.966 * rgba[i + 2]) / 255);
  }
  return y;
}

async function yPlane(video) {
  // exact luma when the decoded frame is planar YUV; a canvas round trip otherwise
  try {
    const vf = new VideoFrame(video);
    try {
      if (vf.format && /^(I420|I420A|NV12)$/.test(vf.format) &&
          vf.visibleRect.width === W && vf.visibleRect.height === H) {
        const buf = new Uint8Array(vf.allocationSize());
        await vf.copyTo(buf);
        return { y: buf.slice(0, W * H), how: vf.format };
      }
    } finally {
      vf.close();
    }
  } catch (e) {
    // fall through to the canvas
  }
  const ctx = document.getElementById('canvas').getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, W, H);
  return { y: yPlaneFromRGBA(ctx.getImageData(0, 0, W, H).data), how: 'canvas' };
}

function captureFrames(video) {
  let seen = 0;
  let posted = 0;
  const onFrame = async () => {
    seen += 1;
    if (seen > SKIP_FRAMES && posted < FRAMES_TO_POST) {
      posted += 1;
      const { y, how } = await yPlane(video);
      await fetch('/frame', { method: 'POST', body: y, headers: { 'x-how': how } });
    }
    if (posted < FRAMES_TO_POST) video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

function toneMeter(stream) {
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  source.connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  return () => {
    analyser.getFloatFrequencyData(bins);
    let best = 0;
    for (let i = 1; i < bins.length; i += 1) if (bins[i] > bins[best]) best = i;
    return { hz: (best * ctx.sampleRate) / analyser.fftSize, db: bins[best], state: ctx.state };
  };
}

async function statsOf(pc) {
  const out = {};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      Object.assign(out, {
        video_frames_received: s.framesReceived || 0,
        video_frames_decoded: s.framesDecoded || 0,
        video_packets_received: s.packetsReceived || 0,
        pli_sent: s.pliCount || 0,
        frame_width: s.frameWidth || 0,
      });
    } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      Object.assign(out, {
        audio_packets_received: s.packetsReceived || 0,
        audio_samples_received: s.totalSamplesReceived || 0,
        audio_concealed_samples: s.concealedSamples || 0,
        audio_energy: s.totalAudioEnergy || 0,
      });
    } else if (s.type === 'outbound-rtp' && s.kind === 'video') {
      Object.assign(out, {
        video_frames_encoded: s.framesEncoded || 0,
        video_frames_sent: s.framesSent || 0,
        sent_width: s.frameWidth || 0,
        pli_received: s.pliCount || 0,
      });
    } else if (s.type === 'outbound-rtp' && s.kind === 'audio') {
      out.audio_packets_sent = s.packetsSent || 0;
    }
  });
  return out;
}

async function main() {
  const { worker, workerErrors } = await setupWorker();
  const pc = new RTCPeerConnection(MODE === 'insertable' ? { encodedInsertableStreams: true } : {});
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: W, height: H, frameRate: 30 },
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const [camera] = stream.getVideoTracks();
  const [mic] = stream.getAudioTracks();
  camera.contentHint = 'detail'; // keep the resolution: frames are compared pixel by pixel
  const vt = pc.addTransceiver(camera, { direction: 'sendrecv' });
  const at = pc.addTransceiver(mic, { direction: 'sendrecv' });
  const vp8 = RTCRtpReceiver.getCapabilities('video').codecs.filter((c) =>
    /^video\/(VP8|rtx)$/i.test(c.mimeType));
  vt.setCodecPreferences(vp8);
  // every transform is in place before negotiation
  transform(worker, vt.sender, 'encode', 'browser', 'browser-video', 'vp8');
  transform(worker, at.sender, 'encode', 'browser', 'browser-audio', undefined);
  transform(worker, vt.receiver, 'decode', 'python', 'python-video', 'vp8');
  transform(worker, at.receiver, 'decode', 'python', 'python-audio', undefined);

  const remote = new MediaStream([vt.receiver.track, at.receiver.track]);
  const video = document.getElementById('remote');
  video.srcObject = new MediaStream([vt.receiver.track]);
  document.getElementById('remote-audio').srcObject = new MediaStream([at.receiver.track]);
  video.play().catch(() => {});
  captureFrames(video);
  const tone = toneMeter(remote);

  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    });
  });
  const answer = await post('/offer', JSON.stringify({
    sdp: pc.localDescription.sdp,
    type: pc.localDescription.type,
    mode: MODE,
    script_transform: typeof RTCRtpScriptTransform !== 'undefined',
  }));
  await pc.setRemoteDescription(answer);

  for (;;) {
    await new Promise((r) => setTimeout(r, 250)); // stats polling interval
    const s = await statsOf(pc);
    const t = tone();
    const reply = await post('/stats', JSON.stringify({
      ...s,
      tone_hz: t.hz,
      tone_db: t.db,
      audio_context: t.state,
      connection: pc.connectionState,
      worker_errors: workerErrors.slice(0, 5),
      worker_error_count: workerErrors.length,
    }));
    if (reply.done) break;
  }
  pc.close();
  worker.terminate();
}

main().catch((e) => log(`main failed: ${e && (e.stack || e)}`));
