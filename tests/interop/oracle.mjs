#!/usr/bin/env node
// framecrypt interop oracle: runs the UNMODIFIED published livekit-client E2EE worker
// (`livekit-client/e2ee-worker`, dist/livekit-client.e2ee.worker.mjs) under Node.js.
//
// Usage:  node oracle.mjs < job.json > result.json     (one JSON job in, one JSON result out)
//
// Each simulated peer is its own worker_threads Worker (host.mjs) in which the bundle is
// imported as published. This main thread plays livekit-client's main thread: it builds
// keys with the library's own createKeyMaterialFromString / createKeyMaterialFromBuffer,
// options with its BaseKeyProvider / ExternalE2EEKeyProvider, and posts the messages
// E2eeManager posts (init, setKey, enable, encode/decode, ratchetRequest, setSifTrailer).
// The plumbing it shares with data_oracle.mjs (job in / result out, peer threads, round
// trips, bundle sha256, the host side) is in harness_common.mjs.
//
// Job schema
// ----------
// {
//   "seed": 1,                      // Math.random seed; each peer gets seed + fnv1a(peer name)
//   "options": {                    // defaults for every peer (livekit defaults otherwise)
//     "shared_key": false,          // true: ExternalE2EEKeyProvider (forces window 0, tol. -1)
//     "ratchet_window_size": 8, "failure_tolerance": 10, "keyring_size": 16,
//     "ratchet_salt": "LKFrameEncryptionKey", "key_size": 128,
//     "loglevel": "warn", "record_keys": true,   // record_keys: report derived AES keys
//     "timeout_ms": 20000,
//     "peers": { "b": { ...same keys, per-peer override } }
//   },
//   "ops": [ ... ]                  // run in order; "peer" defaults to "a"
// }
// Ops (fields → result entry, one per op, in order):
//   {"op":"setKey","peer","participant","key":{"passphrase":s}|{"raw_hex":h},"index":0}
//        participant is ignored (undefined) in shared_key mode
//        → {"aes_key_hex"?, "derivations":[...]}   (recorded deriveKey calls)
//   {"op":"encrypt","peer","participant","codec","keyframe":true,"ssrc","timestamp",
//    "data_hex","track"?,"codec_hint"?:"mime"|"message"|"both"|"none","payload_type"?}
//        codec ∈ vp8|vp9|h264|h265|av1|opus; codec_hint default "both" (mimeType on the frame
//        metadata and codec in the encode message)
//        → {"data_hex","iv_hex","aad_hex","send_count","key_index"} | {"dropped":true} | {"error"}
//          send_count = (timestamp - IV[8:12]) mod 2^32, i.e. sendCount % 0xFFFF
//   {"op":"decrypt", same fields as encrypt (ssrc/timestamp optional);
//    "data_from": i instead of data_hex takes the data_hex output of earlier op i}
//        → {"data_hex"} | {"dropped":true} | {"error"} (the pipe died), plus
//          "attempts":[{iv_hex,aad_hex,ok}] and "chains":[hex...] (auto-ratchet outputs)
//   encrypt/decrypt first send `enable` for the participant unless "auto_enable": false
//   {"op":"ratchet","peer","participant","index"?}   (BaseKeyProvider.ratchetKey → ratchetRequest)
//        → {"chain_hex", "chains":[...], "event_chain_hex"?, "aes_key_hex"?}
//   {"op":"setSifTrailer","peer","hex"}  → {}
//   {"op":"enable","peer","participant","enabled":bool} → {}
// Every entry also carries "op" and, where the worker warned or posted an error event, "logs".
// Result: {"results":[...], "worker_sha256", "worker_path", "livekit_client_version",
//          "sif_allowlist":{name: sha256hex}, "peers":{name:{keyProviderOptions, seed}},
//          "elapsed_ms"}
// Exit status: 0 ok; 2 bad job / harness failure (message on stderr); 3 global timeout.

import { Harness, HarnessPeer, logsOf, packageVersionOf, readBundle } from './harness_common.mjs';

const harness = new Harness('oracle');
const workerUrl = import.meta.resolve('livekit-client/e2ee-worker');
const { path: workerPath, bytes: workerSrc, sha256: workerSha256 } = readBundle(workerUrl);
const livekitClientVersion = packageVersionOf(workerUrl);
const sifAllowlist = {};
for (const m of workerSrc.toString('utf8').matchAll(/(\w+): '([0-9a-f]{64})'/g)) {
  sifAllowlist[m[1]] = m[2];
}

const lk = await import('livekit-client');

function fnv1a(s) {
  let h = 0x811c9dc5;
  for (const ch of Buffer.from(s)) h = Math.imul(h ^ ch, 0x01000193) >>> 0;
  return h;
}

const MIME = {
  vp8: 'video/VP8',
  vp9: 'video/VP9',
  h264: 'video/H264',
  h265: 'video/H265',
  av1: 'video/AV1',
  opus: 'audio/opus',
};

class Peer extends HarnessPeer {
  constructor(name, opts, seed) {
    super({
      lk,
      fail: harness.fail,
      name,
      opts,
      hostUrl: new URL('./host.mjs', import.meta.url),
      workerData: { seed, peer: name, workerUrl, recordKeys: opts.record_keys !== false },
    });
    this.seed = seed;
  }
}

function getPeer(name, job) {
  const seed = ((job.seed ?? 1) + fnv1a(name)) >>> 0;
  return harness.getPeer(name, job, (opts) => new Peer(name, opts, seed));
}

function splitEvents(events) {
  return { logs: logsOf(events), events };
}

function frameFields(op, dir) {
  const codec = op.codec ?? 'vp8';
  if (!(codec in MIME)) throw new Error(`unknown codec ${codec}`);
  const hint = op.codec_hint ?? 'both';
  const audio = codec === 'opus';
  return {
    dir,
    participant: op.participant ?? 'alice',
    track: op.track ?? codec,
    codec: hint === 'message' || hint === 'both' ? codec : audio ? 'opus' : undefined,
    frame: {
      audio,
      type: audio ? undefined : op.keyframe === false ? 'delta' : 'key',
      data_hex: op.data_hex ?? '',
      ssrc: op.ssrc ?? 1234,
      timestamp: (op.timestamp ?? 9000) >>> 0,
      payloadType: op.payload_type ?? (audio ? 111 : 96),
      mimeType: hint === 'mime' || hint === 'both' ? MIME[codec] : undefined,
    },
  };
}

async function runOp(op, job, results) {
  if (op.data_from !== undefined) {
    const src = results[op.data_from];
    if (!src || src.data_hex === undefined) throw new Error(`data_from ${op.data_from}: no data_hex`);
    op = { ...op, data_hex: src.data_hex };
  }
  const peer = await getPeer(op.peer ?? 'a', job);
  const participant = op.participant ?? 'alice';
  switch (op.op) {
    case 'setKey': {
      const r = await peer.setKey(op.key, participant, op.index);
      const { logs, events } = splitEvents(r.events);
      const derivations = events.filter((e) => e.ev === 'deriveKey');
      const out = { derivations };
      if (derivations.length && derivations.at(-1).key_hex) {
        out.aes_key_hex = derivations.at(-1).key_hex;
      }
      if (logs.length) out.logs = logs;
      return out;
    }
    case 'ratchet': {
      const r = await peer.ratchet(participant, op.index);
      const { logs, events } = splitEvents(r.events);
      const chains = events.filter((e) => e.ev === 'deriveBits').map((e) => e.out_hex);
      const out = { chains };
      if (chains.length) out.chain_hex = chains.at(-1);
      const ev = events.filter((e) => e.ev === 'ratchetKey');
      if (ev.length) out.event_chain_hex = ev.at(-1).chain_hex;
      const dk = events.filter((e) => e.ev === 'deriveKey' && e.key_hex);
      if (dk.length) out.aes_key_hex = dk.at(-1).key_hex;
      if (logs.length) out.logs = logs;
      return out;
    }
    case 'setSifTrailer': {
      peer.lkPost({
        kind: 'setSifTrailer',
        data: { trailer: new Uint8Array(Buffer.from(op.hex ?? '', 'hex')) },
      });
      const r = await peer.call({ t: 'barrier' });
      const { logs } = splitEvents(r.events);
      return logs.length ? { logs } : {};
    }
    case 'enable': {
      peer.enable(participant, op.enabled !== false);
      await peer.call({ t: 'barrier' });
      return {};
    }
    case 'encrypt':
    case 'decrypt': {
      const dir = op.op === 'encrypt' ? 'encode' : 'decode';
      const f = frameFields(op, dir);
      if (!peer.enabled.has(participant) && op.auto_enable !== false) peer.enable(participant);
      const r = await peer.call({ t: 'frame', ...f });
      const { logs, events } = splitEvents(r.events);
      const out = {};
      if (r.dead) {
        out.error = r.dead;
      } else if (r.outputs.length === 0) {
        out.dropped = true;
      } else if (r.outputs.length === 1) {
        out.data_hex = r.outputs[0].data_hex;
      } else {
        out.error = `transform emitted ${r.outputs.length} frames`;
      }
      const aes = events.filter((e) => e.ev === 'encrypt' || e.ev === 'decrypt');
      if (dir === 'encode') {
        const enc = aes.filter((e) => e.ev === 'encrypt');
        if (enc.length) {
          const e = enc.at(-1);
          out.iv_hex = e.iv_hex;
          out.aad_hex = e.aad_hex;
          const w3 = Buffer.from(e.iv_hex, 'hex').readUInt32BE(8);
          out.send_count = (f.frame.timestamp - w3) >>> 0;
        }
        if (out.data_hex) out.key_index = Buffer.from(out.data_hex, 'hex').at(-1);
      } else {
        out.attempts = aes.map((e) => ({ iv_hex: e.iv_hex, aad_hex: e.aad_hex, ok: e.ok }));
        out.chains = events.filter((e) => e.ev === 'deriveBits').map((e) => e.out_hex);
      }
      if (logs.length) out.logs = logs;
      return out;
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(op.op)}`);
  }
}

harness.run(runOp, () => {
  const peerInfo = {};
  for (const [name, p] of harness.peers) {
    peerInfo[name] = { keyProviderOptions: p.provider.getOptions(), seed: p.seed };
  }
  return {
    worker_sha256: workerSha256,
    worker_path: workerPath,
    livekit_client_version: livekitClientVersion,
    sif_allowlist: sifAllowlist,
    peers: peerInfo,
  };
});
