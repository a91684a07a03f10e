#!/usr/bin/env node
// framecrypt interop oracle for E2EE DATA PACKETS and the LKTS PACKET TRAILER: runs the
// UNMODIFIED published livekit-client 2.23.0 bundles under Node.js.
//
// Usage:  node data_oracle.mjs < job.json > result.json   (one JSON job in, one result out)
//
// What of livekit-client it drives (see data_host.mjs for the per-peer thread):
//   * DataCryptor, inside dist/livekit-client.e2ee.worker.mjs, through the messages
//     E2eeManager posts: `encryptDataRequest` (E2eeManager.encryptData) and
//     `decryptDataRequest` (E2eeManager.handleEncryptedData), keys set exactly as
//     oracle.mjs does (createKeyMaterialFromString / createKeyMaterialFromBuffer,
//     BaseKeyProvider / ExternalE2EEKeyProvider, `setKey`, `ratchetRequest`);
//   * the containers RTCEngine puts around it: the EncryptedPacketPayload built by the
//     library's exported `asEncryptablePacket` (its bundled protobuf class, also used to
//     parse), and `livekit.EncryptedPacket {iv, keyIndex, encryptedValue}` from
//     @livekit/protocol 1.52.1 — the exact version livekit-client 2.23.0 pins and bundles
//     (the package does not export its bundled EncryptedPacket; the result carries both
//     field lists so a mismatch is visible);
//   * the LKTS packet trailer, in the e2ee worker (encode `packetTrailer` appends it after
//     encryption, decode `hasPacketTrailer` strips it and posts `packetTrailerMetadata`) and
//     in the packet-trailer worker dist/livekit-client.fm.worker.mjs (unencrypted tracks,
//     posts `metadata`).
// The plumbing it shares with oracle.mjs (job in / result out, peer threads, round trips,
// bundle sha256, the host side) is in harness_common.mjs.
//
// Job schema
// ----------
// {
//   "options": { "shared_key": false, "ratchet_window_size": 8, "failure_tolerance": 10,
//                "keyring_size": 16, "ratchet_salt": "...", "key_size": 128,
//                "loglevel": "warn", "record_keys": true, "timeout_ms": 20000,
//                "peers": { "name": { ...per-peer override, "bundle": "e2ee" | "fm" } } },
//   "ops": [ ... ]                            // run in order; "peer" defaults to "a"
// }
// Ops → result entry (one per op, in order; each also carries "op" and maybe "logs"):
//   {"op":"setKey","peer","participant","key":{"passphrase":s}|{"raw_hex":h},"index":0}
//        → {"aes_key_hex"?}
//   {"op":"ratchet","peer","participant","index"?}  → {"chain_hex"?}
//   {"op":"encryptData","peer","participant","data_hex" | "data_from": i,"perf_now"?}
//        data_from takes the "hex" of an earlier buildPayload op
//        perf_now pins performance.now() (the IV time field) for this request
//        → {"payload_hex","iv_hex","key_index","packet_hex","aad_hex"} | {"error"}
//          packet_hex = EncryptedPacket{iv, keyIndex, encryptedValue}.toBinary()
//          aad_hex = the additionalData livekit-client passed to AES-GCM (null: none)
//   {"op":"decryptData","peer","participant",
//        one of: "payload_hex"+"iv_hex"+"key_index" | "packet_hex" | "packet_from": i,
//        "tamper"?: {"payload_flip": i, "iv_flip": i, "key_index": n}  (i < 0: from end)}
//        packet_hex / packet_from are parsed with EncryptedPacket.fromBinary, as RTCEngine does
//        → {"data_hex"} | {"error"}, plus "attempts":[{iv_hex,aad_hex,ok}], "chains":[hex]
//   {"op":"buildPayload","case":"user","payload_hex","topic"?}
//   {"op":"buildPayload","case":"chatMessage","id","timestamp","message"}
//        → {"hex"}  (asEncryptablePacket({value:{case,value}}).toBinary())
//   {"op":"parsePayload","hex"} → {"case","payload_hex"?,"topic"?,"id"?,"timestamp"?,"message"?}
//   {"op":"encodeFrame"|"decodeFrame","peer","participant","track","codec","keyframe",
//    "ssrc","timestamp","data_hex" | "data_from": i, "date_now"?,
//    "packet_trailer"?: {"timestamp":bool,"frameId":bool}   (encode; per track, first frame)
//    "has_packet_trailer"?: bool                            (decode; per track, first frame)
//    "tamper"?: {"flip": i}                                 (decode; i < 0: from end)}
//        date_now pins Date.now() (the LKTS user timestamp is Date.now() * 1000 µs)
//        → {"data_hex"} | {"dropped":true} | {"error"}, plus "trailers":[{user_timestamp_us
//          (decimal string), frame_id, user_data_hex?, rtp_timestamp, ssrc, track_id, kind}]
//   encodeFrame/decodeFrame on an e2ee peer first `enable` the participant.
// Result: {"results", "bundles":{e2ee:{path,sha256}, fm:{path,sha256}},
//          "livekit_client_version", "protocol_version",
//          "encrypted_packet_fields", "payload_fields":{bundled, protocol}, "elapsed_ms"}
// Exit status: 0 ok; 2 bad job / harness failure (stderr); 3 global timeout.

import {
  fromHex,
  Harness,
  HarnessPeer,
  hex,
  logsOf,
  packageVersionOf,
  readBundle,
} from './harness_common.mjs';

const harness = new Harness('data_oracle');
const BUNDLES = {
  e2ee: import.meta.resolve('livekit-client/e2ee-worker'),
  fm: import.meta.resolve('livekit-client/packet-trailer-worker'),
};
const bundleInfo = {};
for (const [name, url] of Object.entries(BUNDLES)) {
  const { path, sha256 } = readBundle(url);
  bundleInfo[name] = { path, sha256 };
}
const livekitClientVersion = packageVersionOf(BUNDLES.e2ee);

const lk = await import('livekit-client');
const proto = await import('@livekit/protocol');
// the library's bundled EncryptedPacketPayload class (the one RTCEngine uses)
const Payload = lk.asEncryptablePacket({ value: { case: 'user', value: {} } }).constructor;
const { EncryptedPacket } = proto;
const fieldList = (T) => T.fields.list().map((f) => `${f.no}:${f.name}`);

const flipAt = (u8, i) => {
  const out = new Uint8Array(u8);
  const at = i < 0 ? out.length + i : i;
  if (at < 0 || at >= out.length) throw new Error(`flip index ${i} outside ${out.length} bytes`);
  out[at] ^= 0x01;
  return out;
};

const MIME = { vp8: 'video/VP8', vp9: 'video/VP9', h264: 'video/H264', h265: 'video/H265', opus: 'audio/opus' };

class Peer extends HarnessPeer {
  constructor(name, opts) {
    const bundle = opts.bundle ?? 'e2ee';
    if (!(bundle in BUNDLES)) throw new Error(`unknown bundle ${bundle}`);
    super({
      lk,
      fail: harness.fail,
      name,
      opts,
      hostUrl: new URL('./data_host.mjs', import.meta.url),
      workerData: {
        peer: name,
        bundle,
        bundleUrl: BUNDLES[bundle],
        recordKeys: opts.record_keys !== false,
      },
    });
    this.bundle = bundle;
  }

  async init() {
    if (this.bundle === 'e2ee') return super.init();
    await this.ready;
    this.lkPost({ kind: 'init', data: {} });
  }
}

function getPeer(name, job) {
  return harness.getPeer(name, job, (opts) => new Peer(name, opts));
}

function needE2ee(peer, op) {
  if (peer.bundle !== 'e2ee') throw new Error(`${op} needs an e2ee peer, ${peer.name} is ${peer.bundle}`);
}

async function runOp(op, job, results) {
  const peer = await getPeer(op.peer ?? 'a', job);
  const participant = op.participant ?? 'alice';
  switch (op.op) {
    case 'setKey': {
      needE2ee(peer, op.op);
      const r = await peer.setKey(op.key, participant, op.index);
      const keys = r.events.filter((e) => e.ev === 'deriveKey' && e.key_hex);
      return keys.length ? { aes_key_hex: keys.at(-1).key_hex } : {};
    }
    case 'ratchet': {
      needE2ee(peer, op.op);
      const r = await peer.ratchet(participant, op.index);
      const chains = r.events.filter((e) => e.ev === 'deriveBits').map((e) => e.out_hex);
      return chains.length ? { chain_hex: chains.at(-1) } : {};
    }
    case 'encryptData': {
      needE2ee(peer, op.op);
      let dataHex = op.data_hex ?? '';
      if (op.data_from !== undefined) {
        dataHex = results[op.data_from]?.hex;
        if (dataHex === undefined) throw new Error(`data_from ${op.data_from}: no hex`);
      }
      const r = await peer.call({
        t: 'data',
        kind: 'encryptDataRequest',
        participant, // E2eeManager passes the identity; the shared-key worker ignores it
        payload_hex: dataHex,
        clock: { perf_now: op.perf_now ?? null },
      });
      const out = {};
      if (r.error !== undefined) {
        out.error = r.error;
      } else {
        Object.assign(out, { payload_hex: r.payload_hex, iv_hex: r.iv_hex, key_index: r.key_index });
        // RTCEngine.sendDataPacket: new EncryptedPacket({encryptedValue, iv, keyIndex})
        out.packet_hex = hex(
          new EncryptedPacket({
            encryptedValue: fromHex(r.payload_hex),
            iv: fromHex(r.iv_hex),
            keyIndex: r.key_index,
          }).toBinary(),
        );
        const enc = r.events.filter((e) => e.ev === 'encrypt');
        if (enc.length !== 1) throw new Error(`expected one AES-GCM encrypt, saw ${enc.length}`);
        out.aad_hex = enc[0].aad_hex;
        out.gcm_iv_hex = enc[0].iv_hex;
      }
      const logs = logsOf(r.events);
      if (logs.length) out.logs = logs;
      return out;
    }
    case 'decryptData': {
      needE2ee(peer, op.op);
      let payload;
      let iv;
      let keyIndex;
      let packetHex = op.packet_hex;
      if (op.packet_from !== undefined) {
        packetHex = results[op.packet_from]?.packet_hex;
        if (packetHex === undefined) throw new Error(`packet_from ${op.packet_from}: no packet_hex`);
      }
      if (packetHex !== undefined) {
        // RTCEngine.handleDataMessage: dp.value.value.{encryptedValue, iv, keyIndex}
        const pkt = EncryptedPacket.fromBinary(fromHex(packetHex));
        payload = pkt.encryptedValue;
        iv = pkt.iv;
        keyIndex = pkt.keyIndex;
      } else {
        payload = fromHex(op.payload_hex);
        iv = fromHex(op.iv_hex);
        keyIndex = op.key_index ?? 0;
      }
      const t = op.tamper ?? {};
      if (t.payload_flip !== undefined) payload = flipAt(payload, t.payload_flip);
      if (t.iv_flip !== undefined) iv = flipAt(iv, t.iv_flip);
      if (t.key_index !== undefined) keyIndex = t.key_index;
      const r = await peer.call({
        t: 'data',
        kind: 'decryptDataRequest',
        participant, // E2eeManager passes the identity; the shared-key worker ignores it
        payload_hex: hex(payload),
        iv_hex: hex(iv),
        key_index: keyIndex,
      });
      const out = r.error !== undefined ? { error: r.error } : { data_hex: r.payload_hex };
      out.attempts = r.events
        .filter((e) => e.ev === 'decrypt')
        .map((e) => ({ iv_hex: e.iv_hex, aad_hex: e.aad_hex, ok: e.ok }));
      out.chains = r.events.filter((e) => e.ev === 'deriveBits').map((e) => e.out_hex);
      const logs = logsOf(r.events);
      if (logs.length) out.logs = logs;
      return out;
    }
    case 'buildPayload': {
      let value;
      if (op.case === 'user') {
        value = { payload: fromHex(op.payload_hex) };
        if (op.topic !== undefined) value.topic = op.topic;
      } else if (op.case === 'chatMessage') {
        value = { id: op.id ?? '', timestamp: BigInt(op.timestamp ?? 0), message: op.message ?? '' };
      } else {
        throw new Error(`buildPayload: unknown case ${op.case}`);
      }
      const p = lk.asEncryptablePacket({ value: { case: op.case, value } });
      return { hex: hex(p.toBinary()) };
    }
    case 'parsePayload': {
      const p = Payload.fromBinary(fromHex(op.hex));
      const out = { case: p.value.case ?? null };
      const v = p.value.value;
      if (p.value.case === 'user') {
        out.payload_hex = hex(v.payload);
        if (v.topic !== undefined) out.topic = v.topic;
      } else if (p.value.case === 'chatMessage') {
        Object.assign(out, { id: v.id, timestamp: String(v.timestamp), message: v.message });
      }
      return out;
    }
    case 'encodeFrame':
    case 'decodeFrame': {
      const dir = op.op === 'encodeFrame' ? 'encode' : 'decode';
      let dataHex = op.data_hex ?? '';
      if (op.data_from !== undefined) {
        dataHex = results[op.data_from]?.data_hex;
        if (dataHex === undefined) throw new Error(`data_from ${op.data_from}: no data_hex`);
      }
      if (op.tamper?.flip !== undefined) dataHex = hex(flipAt(fromHex(dataHex), op.tamper.flip));
      const codec = op.codec ?? 'vp8';
      if (!(codec in MIME)) throw new Error(`unknown codec ${codec}`);
      const audio = codec === 'opus';
      if (peer.bundle === 'e2ee' && !peer.enabled.has(participant)) peer.enable(participant);
      const r = await peer.call({
        t: 'frame',
        clock: { date_now: op.date_now ?? null },
        dir,
        participant,
        track: op.track ?? codec,
        codec,
        packet_trailer: op.packet_trailer,
        has_packet_trailer: op.has_packet_trailer,
        frame: {
          audio,
          type: audio ? undefined : op.keyframe === false ? 'delta' : 'key',
          data_hex: dataHex,
          ssrc: op.ssrc ?? 1234,
          timestamp: (op.timestamp ?? 9000) >>> 0,
          payloadType: audio ? 111 : 96,
          mimeType: MIME[codec],
        },
      });
      const out = {};
      if (r.dead) out.error = r.dead;
      else if (r.outputs.length === 0) out.dropped = true;
      else if (r.outputs.length === 1) out.data_hex = r.outputs[0];
      else out.error = `transform emitted ${r.outputs.length} frames`;
      out.trailers = r.events
        .filter((e) => e.ev === 'trailer')
        .map(({ ev, ...rest }) => rest);
      const logs = logsOf(r.events);
      if (logs.length) out.logs = logs;
      return out;
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(op.op)}`);
  }
}

harness.run(runOp, () => ({
  bundles: bundleInfo,
  livekit_client_version: livekitClientVersion,
  protocol_version: proto.version ?? null,
  encrypted_packet_fields: fieldList(EncryptedPacket),
  payload_fields: { bundled: fieldList(Payload), protocol: fieldList(proto.EncryptedPacketPayload) },
}));
