// Worker-thread host for ONE simulated livekit-client peer (see oracle.mjs for the job schema).
//
// It plays the browser's role around the published, unmodified
// `livekit-client/e2ee-worker` bundle:
//   * shims the dedicated-worker globals the bundle touches (self, onmessage, postMessage,
//     RTCEncodedVideoFrame / RTCEncodedAudioFrame);
//   * seeds Math.random (its only use in the bundle is the start of each SSRC's send counter);
//   * wraps crypto.subtle with pass-through spies that record the IV / AAD of every AES-GCM
//     call and the output of every deriveBits call (ratchet chain keys);
//   * forwards the E2EE protocol messages the main thread (oracle.mjs, playing E2eeManager)
//     posts to the bundle's own `onmessage`, and builds the encoded-frame streams that the
//     browser would have transferred with `encode` / `decode`.
// Nothing of the bundle is patched: it is imported as published.

import { parentPort, workerData } from 'node:worker_threads';
import {
  installWorkerGlobals,
  RTCEncodedAudioFrame,
  RTCEncodedVideoFrame,
} from '../../bench/node/worker_globals.mjs';

const { seed, peer, workerUrl, recordKeys } = workerData;
const subtle = globalThis.crypto.subtle;
const hex = (buf) => Buffer.from(buf instanceof ArrayBuffer ? new Uint8Array(buf) : buf).toString('hex');
const toU8 = (v) =>
  v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

// ---- deterministic Math.random (mulberry32) -------------------------------------------
let rngState = seed >>> 0;
Math.random = () => {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

// ---- event log (drained by the main thread after every operation) ----------------------
let events = [];
const record = (e) => events.push(e);

// ---- crypto.subtle pass-through spies --------------------------------------------------
let inflight = 0;
const track = async (fn) => {
  inflight += 1;
  try {
    return await fn();
  } finally {
    inflight -= 1;
  }
};
const orig = {
  encrypt: subtle.encrypt.bind(subtle),
  decrypt: subtle.decrypt.bind(subtle),
  deriveBits: subtle.deriveBits.bind(subtle),
  deriveKey: subtle.deriveKey.bind(subtle),
};
function algoInfo(params) {
  const info = { name: params.name };
  if (params.salt) info.salt_hex = hex(toU8(params.salt));
  if (params.info) info.info_hex = hex(toU8(params.info));
  if (params.iterations) info.iterations = params.iterations;
  if (params.hash) info.hash = typeof params.hash === 'string' ? params.hash : params.hash.name;
  return info;
}
for (const op of ['encrypt', 'decrypt']) {
  subtle[op] = (params, key, data) =>
    track(async () => {
      const rec = {
        ev: op,
        iv_hex: hex(toU8(params.iv)),
        aad_hex: params.additionalData ? hex(toU8(params.additionalData)) : null,
        in_len: data.byteLength,
      };
      try {
        const out = await orig[op](params, key, data);
        rec.ok = true;
        return out;
      } catch (e) {
        rec.ok = false;
        rec.error = String(e && e.name ? e.name : e);
        throw e;
      } finally {
        record(rec);
      }
    });
}
subtle.deriveBits = (params, key, length) =>
  track(async () => {
    const out = await orig.deriveBits(params, key, length);
    record({ ev: 'deriveBits', ...algoInfo(params), length, out_hex: hex(out) });
    return out;
  });
subtle.deriveKey = (params, key, derived, extractable, usages) =>
  track(async () => {
    const out = await orig.deriveKey(params, key, derived, extractable, usages);
    const rec = { ev: 'deriveKey', ...algoInfo(params), key_bits: derived.length };
    if (recordKeys) {
      // Side-effect-free extra derivation with the exact same parameters and material, so
      // the (non-extractable) AES key the library just derived can be reported.
      rec.key_hex = hex(await orig.deriveBits(params, key, derived.length));
    }
    record(rec);
    return out;
  });

// ---- browser worker globals ------------------------------------------------------------
installWorkerGlobals();

const ackWaiters = new Map();
globalThis.postMessage = (msg) => {
  const kind = msg && msg.kind;
  if (kind === 'log') {
    const { level, msg: text } = msg.data;
    if (level === 'warn' || level === 'error') record({ ev: 'log', level, msg: String(text) });
  } else if (kind === 'error') {
    record({ ev: 'error', msg: String(msg.data.error && msg.data.error.message) });
  } else if (kind === 'ratchetKey') {
    const r = msg.data;
    record({
      ev: 'ratchetKey',
      participant: r.participantIdentity,
      key_index: r.keyIndex,
      chain_hex: hex(r.ratchetResult.chainKey),
    });
  } else if (kind === 'enable' && ackWaiters.has(msg.data.participantIdentity)) {
    const w = ackWaiters.get(msg.data.participantIdentity);
    ackWaiters.delete(msg.data.participantIdentity);
    w();
    return;
  } else {
    record({ ev: 'message', kind });
  }
};

await import(workerUrl);
if (typeof globalThis.onmessage !== 'function') {
  throw new Error('the e2ee worker bundle did not install onmessage');
}
const deliver = (msg) => globalThis.onmessage({ data: msg });

// ---- barrier: the bundle's message queue has drained and no subtle call is in flight ----
let barrierSeq = 0;
async function barrier() {
  const id = `__oracle_barrier_${peer}_${++barrierSeq}`;
  const acked = new Promise((resolve) => ackWaiters.set(id, resolve));
  // `enable` is acknowledged by the worker once its queue reaches it; a never-used identity.
  deliver({ kind: 'enable', data: { participantIdentity: id, enabled: false } });
  await acked;
  // ratchetRequest runs outside the queue: wait until subtle has been idle for a few turns
  let idle = 0;
  while (idle < 3) {
    await new Promise((r) => setImmediate(r));
    idle = inflight === 0 ? idle + 1 : 0;
  }
}

// ---- encoded-frame pipelines -----------------------------------------------------------
const pipes = new Map();
function getPipe(dir, participant, trackName, codec) {
  const key = `${dir}|${participant}|${trackName}`;
  let p = pipes.get(key);
  if (p) return p;
  p = { outputs: [], waiter: null, dead: null };
  const readable = new ReadableStream({
    start(c) {
      p.controller = c;
    },
    cancel(reason) {
      p.dead = `readable cancelled: ${reason}`;
      if (p.waiter) p.waiter();
    },
  });
  const writable = new WritableStream({
    write(frame) {
      if (frame.__sentinel) {
        if (p.waiter) p.waiter();
      } else {
        p.outputs.push(frame);
      }
    },
    abort(reason) {
      p.dead = `writable aborted: ${reason}`;
      if (p.waiter) p.waiter();
    },
  });
  const videoCodec = codec === 'opus' ? undefined : codec;
  deliver({
    kind: dir,
    data: {
      participantIdentity: participant,
      readableStream: readable,
      writableStream: writable,
      trackId: `${dir}-${participant}-${trackName}`,
      codec: videoCodec,
      hasPacketTrailer: false,
    },
  });
  pipes.set(key, p);
  return p;
}

function makeFrame(f) {
  const data = new Uint8Array(Buffer.from(f.data_hex, 'hex')).buffer;
  const metadata = {
    synchronizationSource: f.ssrc,
    rtpTimestamp: f.timestamp,
    payloadType: f.payloadType,
    contributingSources: [],
  };
  if (f.mimeType) metadata.mimeType = f.mimeType;
  if (f.audio) return new RTCEncodedAudioFrame({ data, timestamp: f.timestamp, metadata });
  return new RTCEncodedVideoFrame({ data, type: f.type, timestamp: f.timestamp, metadata });
}

async function runFrame(m) {
  const p = getPipe(m.dir, m.participant, m.track, m.codec);
  p.outputs = [];
  const done = new Promise((resolve) => {
    p.waiter = resolve;
  });
  const sentinel = m.frame.audio
    ? new RTCEncodedAudioFrame({ data: new ArrayBuffer(0), timestamp: 0, metadata: {} })
    : new RTCEncodedVideoFrame({ data: new ArrayBuffer(0), type: 'delta', timestamp: 0, metadata: {} });
  sentinel.__sentinel = true;
  if (!p.dead) {
    p.controller.enqueue(makeFrame(m.frame));
    p.controller.enqueue(sentinel);
    await done;
  }
  p.waiter = null;
  const outputs = p.outputs.map((f) => ({
    data_hex: hex(f.data),
    type: f.type,
  }));
  const dead = p.dead;
  if (dead) pipes.delete(`${m.dir}|${m.participant}|${m.track}`);
  return { outputs, dead };
}

// ---- main-thread protocol --------------------------------------------------------------
const drain = () => {
  const out = events;
  events = [];
  return out;
};
parentPort.on('message', async (m) => {
  try {
    if (m.t === 'lk') {
      deliver(m.msg);
      parentPort.postMessage({ id: m.id, ok: true });
    } else if (m.t === 'barrier') {
      await barrier();
      parentPort.postMessage({ id: m.id, ok: true, events: drain() });
    } else if (m.t === 'frame') {
      await barrier(); // keys / transforms set up before the frame flows
      const r = await runFrame(m);
      parentPort.postMessage({ id: m.id, ok: true, ...r, events: drain() });
    } else {
      throw new Error(`unknown host command ${m.t}`);
    }
  } catch (e) {
    parentPort.postMessage({ id: m.id, ok: false, error: String((e && e.stack) || e) });
  }
});
parentPort.postMessage({ ready: true });
