// Worker-thread host for ONE simulated livekit-client peer (see oracle.mjs for the job schema).
//
// It plays the browser's role around the published, unmodified
// `livekit-client/e2ee-worker` bundle (harness_common.mjs's startHost / FramePipes):
//   * shims the dedicated-worker globals the bundle touches (self, onmessage, postMessage,
//     RTCEncodedVideoFrame / RTCEncodedAudioFrame);
//   * seeds Math.random (its only use in the bundle is the start of each SSRC's send counter);
//   * wraps crypto.subtle with pass-through spies that record the IV / AAD of every AES-GCM
//     call and the output of every deriveBits call (ratchet chain keys);
//   * forwards the E2EE protocol messages the main thread (oracle.mjs, playing E2eeManager)
//     posts to the bundle's own `onmessage`, and builds the encoded-frame streams that the
//     browser would have transferred with `encode` / `decode`.
// Nothing of the bundle is patched: it is imported as published.

import { workerData } from 'node:worker_threads';
import { FramePipes, hex, startHost } from './harness_common.mjs';

const { seed, peer, workerUrl, recordKeys } = workerData;

// ---- deterministic Math.random (mulberry32) -------------------------------------------
let rngState = seed >>> 0;
Math.random = () => {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const host = await startHost({
  peer,
  bundle: 'e2ee',
  bundleUrl: workerUrl,
  recordKeys,
  barrierTag: '__oracle_barrier',
});

// ---- encoded-frame pipelines -----------------------------------------------------------
const pipes = new FramePipes(host.deliver, {
  describe: (m) => ({
    participantIdentity: m.participant,
    codec: m.codec === 'opus' ? undefined : m.codec,
    hasPacketTrailer: false,
  }),
});

// ---- main-thread protocol --------------------------------------------------------------
host.serve({
  frame: async (m) => {
    await host.barrier(); // keys / transforms set up before the frame flows
    const { frames, dead } = await pipes.run(m);
    const outputs = frames.map((f) => ({ data_hex: hex(f.data), type: f.type }));
    return { outputs, dead, events: host.drain() };
  },
});
