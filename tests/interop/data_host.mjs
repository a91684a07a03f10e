// Worker-thread host for ONE simulated livekit-client peer of data_oracle.mjs (see there for
// the job schema). It imports ONE published, unmodified livekit-client worker bundle:
//   * "e2ee": dist/livekit-client.e2ee.worker.mjs — its DataCryptor (encryptDataRequest /
//     decryptDataRequest, what E2eeManager.encryptData / handleEncryptedData post) and its
//     FrameCryptor with the LKTS packet trailer (encode `packetTrailer`, decode
//     `hasPacketTrailer`, the `packetTrailerMetadata` message);
//   * "fm": dist/livekit-client.fm.worker.mjs — the packet-trailer (frame-metadata) worker
//     that writes / strips LKTS trailers on unencrypted tracks (`metadata` message).
// Like host.mjs it shims the dedicated-worker globals and wraps crypto.subtle with
// pass-through spies (IV / AAD of every AES-GCM call, every deriveBits output), both from
// harness_common.mjs's startHost. In addition the two clocks the bundles read can be pinned
// per command: `performance.now()` (the DataCryptor IV's time field) and `Date.now()` (the
// LKTS user timestamp). Nothing of the bundles is patched.

import { workerData } from 'node:worker_threads';
import { FramePipes, fromHex, hex, startHost } from './harness_common.mjs';

const { peer, bundle, bundleUrl, recordKeys } = workerData;

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

// ---- what the bundles post beyond the common log / error / ratchetKey / enable ---------
const dataWaiters = new Map(); // uuid -> resolve
const metaText = (m) => ({
  user_timestamp_us: String(m.userTimestamp),
  frame_id: m.frameId,
  ...(m.userData ? { user_data_hex: hex(m.userData) } : {}),
});
function onMessage(kind, data, record) {
  if ((kind === 'encryptDataResponse' || kind === 'decryptDataResponse') && data?.uuid) {
    const w = dataWaiters.get(data.uuid);
    dataWaiters.delete(data.uuid);
    if (w) w({ kind, data });
  } else if (kind === 'error' && data?.uuid && dataWaiters.has(data.uuid)) {
    const w = dataWaiters.get(data.uuid);
    dataWaiters.delete(data.uuid);
    w({ kind, data: { error: String(data.error && data.error.message) } });
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
    return false;
  }
  return true;
}

const host = await startHost({
  peer,
  bundle,
  bundleUrl,
  recordKeys,
  barrierTag: '__data_oracle_barrier',
  onMessage,
});

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
  host.deliver({ kind: m.kind, data });
  const r = await reply;
  await host.barrier(); // ratchet promises and spies settled
  if (r.kind === 'error') return { error: r.data.error };
  const out = { payload_hex: hex(r.data.payload) };
  if (r.kind === 'encryptDataResponse') {
    out.iv_hex = hex(r.data.iv);
    out.key_index = r.data.keyIndex;
  }
  return out;
}

// ---- encoded-frame pipelines (one per direction / participant / track) -----------------
const pipes = new FramePipes(host.deliver, {
  describe: (m) => {
    const data =
      bundle === 'e2ee'
        ? {
            participantIdentity: m.participant,
            codec: m.codec === 'opus' ? undefined : m.codec,
            hasPacketTrailer: !!m.has_packet_trailer,
          }
        : { hasPacketTrailer: !!m.has_packet_trailer };
    if (m.dir === 'encode' && m.packet_trailer) data.packetTrailer = m.packet_trailer;
    return data;
  },
  // e2ee: the sentinel (an empty frame, passed through untouched) consumes no frame id.
  // The packet-trailer worker never drops a frame: its output is the signal (a sentinel
  // would consume a frame id there, since it counts empty frames too).
  sentinel: bundle === 'e2ee',
  signalOnOutput: bundle === 'fm',
});

// ---- main-thread protocol --------------------------------------------------------------
host.serve(
  {
    data: async (m) => {
      await host.barrier();
      host.drain();
      const r = await dataRequest(m);
      return { ...r, events: host.drain() };
    },
    frame: async (m) => {
      await host.barrier();
      host.drain();
      const { frames, dead } = await pipes.run(m);
      await host.barrier();
      return { outputs: frames.map((f) => hex(f.data)), dead, events: host.drain() };
    },
  },
  (m) => setClock(m.clock),
);
