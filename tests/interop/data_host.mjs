// Worker-thread host for ONE simulated livekit-client peer of data_oracle.mjs (see there for
// the job schema). It imports ONE published, unmodified livekit-client worker bundle:
//   * "e2ee": dist/livekit-client.e2ee.worker.mjs — its DataCryptor (encryptDataRequest /
//     decryptDataRequest, what E2eeManager.encryptData / handleEncryptedData post) and its
//     FrameCryptor with the LKTS packet trailer (encode `packetTrailer`, decode
//     `hasPacketTrailer`, the `packetTrailerMetadata` message);
//   * "fm": dist/livekit-client.fm.worker.mjs — the packet-trailer (frame-metadata) worker
//     that writes / strips LKTS trailers on unencrypted tracks (`metadata` message).
// Like host.mjs it shims the dedicated-worker globals and wraps crypto.subtle with
// pass-through spies (IV / AAD of every AES-GCM call, every deriveBits output). In addition
// the two clocks the bundles read can be pinned per command: `performance.now()` (the
// DataCryptor IV's time field) and `Date.now()` (the LKTS user timestamp). Nothing of the
// bundles is patched.

import { parentPort, workerData } from 'node:worker_threads';
import {
  installWorkerGlobals,
  RTCEncodedAudioFrame,
  RTCEncodedVideoFrame,
} from '../../bench/node/worker_globals.mjs';

const { peer, bundle, bundleUrl, recordKeys } = workerData;
const subtle = globalThis.crypto.subtle;
const toU8 = (v) =>
  v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
const hex = (v) => Buffer.from(toU8(v)).toString('hex');
const fromHex = (h) => new Uint8Array(Buffer.from(h ?? '', 'hex'));

// ---- pinnable clocks -------------------------------------------------------------------
const realPerfNow = performance.now.bind(performance);
const realDateNow = Date.now;
const clock = { perf: undefined, date: undefined };
performance.now = () => (clock.perf === undefined ? realPerfNow() : clock.perf);
Date.now = () => (clock.date === undefined ? realDateNow() : clock.date);
const setClock = (c) => {
  if (c && 'perf_now' in c) clock.perf = c.perf_now ?? undefined;
  if (c && 'date_now' in c) clock.date = c.date_now ?? undefined;
};

// ---- event log (drained after every command) -------------------------------------------
let events = [];
const record = (e) => events.push(e);
const drain = () => {
  const out = events;
  events = [];
  return out;
};

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
for (const op of ['encrypt', 'decrypt']) {
  subtle[op] = (params, key, data) =>
    track(async () => {
      const rec = {
        ev: op,
        iv_hex: hex(params.iv),
        aad_hex: params.additionalData === undefined ? null : hex(params.additionalData),
        in_len: data.byteLength,
      };
      try {
        const out = await orig[op](params, key, data);
        rec.ok = true;
        return out;
      } catch (e) {
        rec.ok = false;
        throw e;
      } finally {
        record(rec);
      }
    });
}
subtle.deriveBits = (params, key, length) =>
  track(async () => {
    const out = await orig.deriveBits(params, key, length);
    record({ ev: 'deriveBits', length, out_hex: hex(out) });
    return out;
  });
subtle.deriveKey = (params, key, derived, extractable, usages) =>
  track(async () => {
    const out = await orig.deriveKey(params, key, derived, extractable, usages);
    const rec = { ev: 'deriveKey', key_bits: derived.length };
    // side-effect-free repeat of the same derivation, to report the non-extractable AES key
    if (recordKeys) rec.key_hex = hex(await orig.deriveBits(params, key, derived.length));
    record(rec);
    return out;
  });

// ---- browser worker globals ------------------------------------------------------------
installWorkerGlobals();

const ackWaiters = new Map(); // enable acks (barrier)
const dataWaiters = new Map(); // uuid -> resolve
const metaText = (m) => ({
  user_timestamp_us: String(m.userTimestamp),
  frame_id: m.frameId,
  ...(m.userData ? { user_data_hex: hex(m.userData) } : {}),
});
globalThis.postMessage = (msg) => {
  const kind = msg && msg.kind;
  const data = msg && msg.data;
  if (kind === 'log') {
    if (data.level === 'warn' || data.level === 'error') {
      record({ ev: 'log', level: data.level, msg: String(data.msg) });
    }
  } else if ((kind === 'encryptDataResponse' || kind === 'decryptDataResponse') && data?.uuid) {
    const w = dataWaiters.get(data.uuid);
    dataWaiters.delete(data.uuid);
    if (w) w({ kind, data });
  } else if (kind === 'error' && data?.uuid && dataWaiters.has(data.uuid)) {
    const w = dataWaiters.get(data.uuid);
    dataWaiters.delete(data.uuid);
    w({ kind, data: { error: String(data.error && data.error.message) } });
  } else if (kind === 'error') {
    record({ ev: 'error', msg: String(data?.error && data.error.message) });
  } else if (kind === 'enable' && ackWaiters.has(data.participantIdentity)) {
    const w = ackWaiters.get(data.participantIdentity);
    ackWaiters.delete(data.participantIdentity);
    w();
  } else if (kind === 'packetTrailerMetadata' || kind === 'metadata') {
    record({
      ev: 'trailer',
      kind,
      track_id: data.trackId,
      rtp_timestamp: data.rtpTimestamp,
      ssrc: data.ssrc,
      ...metaText(data.metadata),
    });
  } else {
    record({ ev: 'message', kind });
  }
};

await import(bundleUrl);
if (typeof globalThis.onmessage !== 'function') {
  throw new Error(`the ${bundle} worker bundle did not install onmessage`);
}
const deliver = (msg) => globalThis.onmessage({ data: msg });

// ---- barrier: the e2ee bundle's message queue has drained, no subtle call in flight -----
let barrierSeq = 0;
async function barrier() {
  if (bundle === 'e2ee') {
    const id = `__data_oracle_barrier_${peer}_${++barrierSeq}`;
    const acked = new Promise((resolve) => ackWaiters.set(id, resolve));
    deliver({ kind: 'enable', data: { participantIdentity: id, enabled: false } });
    await acked;
  }
  let idle = 0;
  while (idle < 3) {
    await new Promise((r) => setImmediate(r));
    idle = inflight === 0 ? idle + 1 : 0;
  }
}

// ---- data packets (E2eeManager.encryptData / handleEncryptedData) -----------------------
let uuidSeq = 0;
async function dataRequest(m) {
  const uuid = `data-oracle-${peer}-${++uuidSeq}`;
  const reply = new Promise((resolve) => dataWaiters.set(uuid, resolve));
  const data = { uuid, participantIdentity: m.participant, payload: fromHex(m.payload_hex) };
  if (m.kind === 'decryptDataRequest') {
    data.iv = fromHex(m.iv_hex);
    data.keyIndex = m.key_index;
  }
  deliver({ kind: m.kind, data });
  const r = await reply;
  await barrier(); // ratchet promises and spies settled
  if (r.kind === 'error') return { error: r.data.error };
  const out = { payload_hex: hex(r.data.payload) };
  if (r.kind === 'encryptDataResponse') {
    out.iv_hex = hex(r.data.iv);
    out.key_index = r.data.keyIndex;
  }
  return out;
}

// ---- encoded-frame pipelines (one per direction / participant / track) -----------------
const pipes = new Map();
function getPipe(m) {
  const key = `${m.dir}|${m.participant}|${m.track}`;
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
        // the packet-trailer worker never drops a frame: its output is the signal (a
        // sentinel would consume a frame id there, since it counts empty frames too)
        if (bundle === 'fm' && p.waiter) p.waiter();
      }
    },
    abort(reason) {
      p.dead = `writable aborted: ${reason}`;
      if (p.waiter) p.waiter();
    },
  });
  const trackId = `${m.dir}-${m.participant}-${m.track}`;
  const data = { readableStream: readable, writableStream: writable, trackId };
  if (bundle === 'e2ee') {
    Object.assign(data, {
      participantIdentity: m.participant,
      codec: m.codec === 'opus' ? undefined : m.codec,
      hasPacketTrailer: !!m.has_packet_trailer,
    });
  } else {
    data.hasPacketTrailer = !!m.has_packet_trailer;
  }
  if (m.dir === 'encode' && m.packet_trailer) data.packetTrailer = m.packet_trailer;
  deliver({ kind: m.dir, data });
  pipes.set(key, p);
  return p;
}

function makeFrame(f) {
  const data = fromHex(f.data_hex).buffer;
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
  const p = getPipe(m);
  p.outputs = [];
  const done = new Promise((resolve) => {
    p.waiter = resolve;
  });
  // e2ee: an empty frame after the real one (passed through untouched, consumes no frame
  // id), so the sentinel arriving alone means the real frame was dropped
  const sentinel = m.frame.audio
    ? new RTCEncodedAudioFrame({ data: new ArrayBuffer(0), timestamp: 0, metadata: {} })
    : new RTCEncodedVideoFrame({ data: new ArrayBuffer(0), type: 'delta', timestamp: 0, metadata: {} });
  sentinel.__sentinel = true;
  if (!p.dead) {
    p.controller.enqueue(makeFrame(m.frame));
    if (bundle === 'e2ee') p.controller.enqueue(sentinel);
    await done;
  }
  p.waiter = null;
  const outputs = p.outputs.map((f) => hex(f.data));
  const dead = p.dead;
  if (dead) pipes.delete(`${m.dir}|${m.participant}|${m.track}`);
  return { outputs, dead };
}

// ---- main-thread protocol --------------------------------------------------------------
parentPort.on('message', async (m) => {
  try {
    setClock(m.clock);
    if (m.t === 'lk') {
      deliver(m.msg);
      parentPort.postMessage({ id: m.id, ok: true });
    } else if (m.t === 'barrier') {
      await barrier();
      parentPort.postMessage({ id: m.id, ok: true, events: drain() });
    } else if (m.t === 'data') {
      await barrier();
      drain();
      const r = await dataRequest(m);
      parentPort.postMessage({ id: m.id, ok: true, ...r, events: drain() });
    } else if (m.t === 'frame') {
      await barrier();
      drain();
      const r = await runFrame(m);
      await barrier();
      parentPort.postMessage({ id: m.id, ok: true, ...r, events: drain() });
    } else {
      throw new Error(`unknown host command ${m.t}`);
    }
  } catch (e) {
    parentPort.postMessage({ id: m.id, ok: false, error: String((e && e.stack) || e) });
  }
});
parentPort.postMessage({ ready: true });
