// What the two livekit-client interop oracles share: the frame oracle (oracle.mjs, whose
// peers run host.mjs) and the data-packet / LKTS oracle (data_oracle.mjs, peers in
// data_host.mjs). Each piece exists once, here; what differs stays in those four files.
//
//   * bytes: hex / fromHex;
//   * bundles: the path, bytes and sha256 of a published worker bundle (tests/lk_oracle.py
//     pins the sha256 the results report) and the livekit-client version beside it;
//   * main thread: `Harness` (job in on stdin, ops in order, global timeout, exit codes,
//     result out on stdout, worker threads terminated) and `HarnessPeer` (one peer's worker
//     thread, its request / reply round trips, and the key provider wired the way
//     E2eeManager wires it);
//   * worker thread: `startHost` (event log, crypto.subtle pass-through spies, the browser
//     worker globals, the bundle's postMessage, the bundle imported as published, the
//     barrier, the main-thread protocol) and `FramePipes` (encoded-frame streams).
//
// Importing this module has no side effects: the worker-thread pieces act only when called.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parentPort, Worker } from 'node:worker_threads';
import {
  installWorkerGlobals,
  RTCEncodedAudioFrame,
  RTCEncodedVideoFrame,
} from '../../bench/node/worker_globals.mjs';

// ---- bytes -----------------------------------------------------------------------------
export const toU8 = (v) =>
  v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
export const hex = (v) => Buffer.from(toU8(v)).toString('hex');
export const fromHex = (h) => new Uint8Array(Buffer.from(h ?? '', 'hex'));

// ---- published bundles -----------------------------------------------------------------
// A bundle as the results report it: its path and the sha256 of its bytes, which
// tests/lk_oracle.py compares with the pinned sha256 of livekit-client 2.23.0 as published.
export function readBundle(url) {
  const path = fileURLToPath(url);
  const bytes = readFileSync(path);
  return { path, bytes, sha256: createHash('sha256').update(bytes).digest('hex') };
}

// The version in the package.json of the livekit-client the bundle (in its dist/) belongs to.
export function packageVersionOf(bundleUrl) {
  return JSON.parse(readFileSync(new URL('../package.json', bundleUrl), 'utf8')).version;
}

// ============================ main thread (the oracles) ==================================

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

// One job of one oracle process. `label` prefixes its stderr messages.
// Exit status: 0 ok; 2 bad job / harness failure (message on stderr); 3 global timeout.
export class Harness {
  constructor(label) {
    this.t0 = Date.now();
    this.label = label;
    this.peers = new Map();
    this.exiting = false;
    this.fail = this.fail.bind(this);
  }

  fail(code, message) {
    if (this.exiting) return;
    this.exiting = true;
    process.stderr.write(`${this.label}: ${message}\n`);
    this.terminateAll().finally(() => process.exit(code));
  }

  terminateAll() {
    return Promise.allSettled([...this.peers.values()].map((p) => p.worker.terminate()));
  }

  // The peer `name`, made on first use by `create(opts)` from the job's options (the
  // defaults, overridden by options.peers[name]) and initialised.
  async getPeer(name, job, create) {
    let p = this.peers.get(name);
    if (!p) {
      const base = { ...(job.options ?? {}) };
      delete base.peers;
      p = create({ ...base, ...((job.options ?? {}).peers?.[name] ?? {}) });
      this.peers.set(name, p);
      await p.init();
    }
    return p;
  }

  // Reads the job from stdin, runs `runOp(op, job, results)` for each op in order and writes
  // {results, ...summary(), elapsed_ms} to stdout.
  run(runOp, summary) {
    this.main(runOp, summary).catch((e) => this.fail(2, String((e && e.stack) || e)));
  }

  async main(runOp, summary) {
    let job;
    try {
      job = JSON.parse(await readStdin());
    } catch (e) {
      return this.fail(2, `cannot parse job JSON: ${e}`);
    }
    if (!job || !Array.isArray(job.ops)) return this.fail(2, 'job must be an object with an "ops" list');
    const timeoutMs = job.options?.timeout_ms ?? 20000;
    setTimeout(() => this.fail(3, `global timeout after ${timeoutMs} ms`), timeoutMs).unref();

    const results = [];
    for (const [i, op] of job.ops.entries()) {
      try {
        results.push({ op: op.op, ...(await runOp(op, job, results)) });
      } catch (e) {
        return this.fail(2, `op ${i} (${op.op}) failed: ${(e && e.stack) || e}`);
      }
    }
    const out = { results, ...summary(), elapsed_ms: Date.now() - this.t0 };
    await this.terminateAll();
    process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
  }
}

// job option → livekit-client KeyProviderOptions field
const OPTION_NAMES = {
  ratchet_window_size: 'ratchetWindowSize',
  failure_tolerance: 'failureTolerance',
  keyring_size: 'keyringSize',
  ratchet_salt: 'ratchetSalt',
  key_size: 'keySize',
};

// The worker's warnings, errors and error events, as result "logs".
export const logsOf = (events) =>
  events
    .filter((e) => e.ev === 'log' || e.ev === 'error')
    .map((e) => `${e.ev === 'error' ? 'error-event' : e.level}: ${e.msg}`);

// One simulated peer: the key provider the library would use (BaseKeyProvider, or
// ExternalE2EEKeyProvider with shared_key) and a worker thread running `hostUrl`.
// `lk` is the imported livekit-client; `fail` the harness's.
export class HarnessPeer {
  constructor({ lk, fail, name, opts, hostUrl, workerData }) {
    this.name = name;
    this.opts = opts;
    this.fail = fail;
    this.enabled = new Set();
    this.seq = 0;
    this.pending = new Map();
    const providerOpts = {};
    for (const [k, v] of Object.entries(OPTION_NAMES)) {
      if (opts[k] !== undefined) providerOpts[v] = opts[k];
    }
    this.shared = !!opts.shared_key;
    this.provider = this.shared
      ? new lk.ExternalE2EEKeyProvider(providerOpts)
      : new lk.BaseKeyProvider(providerOpts);
    this.lk = lk;
    this.worker = new Worker(hostUrl, { workerData });
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (m) => {
        if (m.ready) return resolve();
        const w = this.pending.get(m.id);
        if (!w) return;
        this.pending.delete(m.id);
        if (m.ok) w.resolve(m);
        else w.reject(new Error(`peer ${name}: ${m.error}`));
      });
      this.worker.on('error', (e) => {
        reject(e);
        fail(2, `peer ${name} worker crashed: ${(e && e.stack) || e}`);
      });
    });
    // What E2eeManager does with the key provider's events:
    this.provider.on(lk.KeyProviderEvent.SetKey, (keyInfo, updateCurrentKeyIndex) =>
      this.lkPost({
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
    this.provider.on(lk.KeyProviderEvent.RatchetRequest, (participantIdentity, keyIndex) =>
      this.lkPost({ kind: 'ratchetRequest', data: { participantIdentity, keyIndex } }),
    );
  }

  // one round trip to the host: resolves with its reply, rejects with its error
  call(m) {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...m, id });
    });
  }

  // a message for the bundle's onmessage, as E2eeManager posts it
  lkPost(msg) {
    this.call({ t: 'lk', msg }).catch((e) => this.fail(2, String(e)));
  }

  async init() {
    await this.ready;
    this.lkPost({
      kind: 'init',
      data: {
        keyProviderOptions: this.provider.getOptions(),
        loglevel: this.opts.loglevel ?? 'warn',
      },
    });
  }

  enable(participant, enabled = true) {
    if (enabled) this.enabled.add(participant);
    else this.enabled.delete(participant);
    this.lkPost({ kind: 'enable', data: { participantIdentity: participant, enabled } });
  }

  // A job's key {"passphrase"} | {"raw_hex"} made into key material by the library and set
  // through BaseKeyProvider.onSetEncryptionKey (what every provider calls; it emits SetKey).
  // Resolves with the barrier's reply (its events) once the worker has taken it.
  async setKey(key, participant, index) {
    let material;
    if (key?.passphrase !== undefined) {
      material = await this.lk.createKeyMaterialFromString(key.passphrase);
    } else if (key?.raw_hex !== undefined) {
      material = await this.lk.createKeyMaterialFromBuffer(fromHex(key.raw_hex).buffer);
    } else {
      throw new Error('setKey needs key.passphrase or key.raw_hex');
    }
    this.provider.onSetEncryptionKey(material, this.shared ? undefined : participant, index ?? 0);
    return this.call({ t: 'barrier' });
  }

  // BaseKeyProvider.ratchetKey (→ ratchetRequest); resolves with the barrier's reply
  ratchet(participant, index) {
    this.provider.ratchetKey(this.shared ? undefined : participant, index);
    return this.call({ t: 'barrier' });
  }
}

// ========================= worker thread (the peers' hosts) ==============================

// Plays the browser's role around one published, unmodified livekit-client worker bundle,
// then imports it:
//   * an event log, drained by the main thread after every command;
//   * crypto.subtle pass-through spies recording the IV / AAD of every AES-GCM call and the
//     output of every deriveBits call (ratchet chain keys); with `recordKeys` each deriveKey
//     is repeated as deriveBits with the same parameters, to report the AES key;
//   * the dedicated-worker globals (worker_globals.mjs) and the bundle's `postMessage`;
//     `onMessage(kind, data, record)`, when given, sees each message first and returns true
//     when it took it.
// `bundle` names it ("e2ee": the e2ee worker, whose queue the barrier waits on);
// `barrierTag` prefixes the barrier's never-used participant identities.
// Resolves with {drain, deliver, barrier, serve}.
export async function startHost({ peer, bundle, bundleUrl, recordKeys, barrierTag, onMessage }) {
  // ---- event log -----------------------------------------------------------------------
  let events = [];
  const record = (e) => events.push(e);
  const drain = () => {
    const out = events;
    events = [];
    return out;
  };

  // ---- crypto.subtle pass-through spies ------------------------------------------------
  const subtle = globalThis.crypto.subtle;
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
  const algoInfo = (params) => {
    const info = { name: params.name };
    if (params.salt) info.salt_hex = hex(params.salt);
    if (params.info) info.info_hex = hex(params.info);
    if (params.iterations) info.iterations = params.iterations;
    if (params.hash) info.hash = typeof params.hash === 'string' ? params.hash : params.hash.name;
    return info;
  };
  for (const op of ['encrypt', 'decrypt']) {
    subtle[op] = (params, key, data) =>
      track(async () => {
        const rec = {
          ev: op,
          iv_hex: hex(params.iv),
          aad_hex: params.additionalData == null ? null : hex(params.additionalData),
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

  // ---- browser worker globals ----------------------------------------------------------
  installWorkerGlobals();

  const ackWaiters = new Map(); // barrier identity -> resolve of its `enable` ack
  globalThis.postMessage = (msg) => {
    const kind = msg && msg.kind;
    const data = msg && msg.data;
    if (onMessage && onMessage(kind, data, record)) return;
    if (kind === 'log') {
      if (data.level === 'warn' || data.level === 'error') {
        record({ ev: 'log', level: data.level, msg: String(data.msg) });
      }
    } else if (kind === 'error') {
      record({ ev: 'error', msg: String(data?.error && data.error.message) });
    } else if (kind === 'ratchetKey') {
      record({
        ev: 'ratchetKey',
        participant: data.participantIdentity,
        key_index: data.keyIndex,
        chain_hex: hex(data.ratchetResult.chainKey),
      });
    } else if (kind === 'enable' && ackWaiters.has(data.participantIdentity)) {
      const w = ackWaiters.get(data.participantIdentity);
      ackWaiters.delete(data.participantIdentity);
      w();
    } else {
      record({ ev: 'message', kind });
    }
  };

  await import(bundleUrl);
  if (typeof globalThis.onmessage !== 'function') {
    throw new Error(`the ${bundle} worker bundle did not install onmessage`);
  }
  const deliver = (msg) => globalThis.onmessage({ data: msg });

  // ---- barrier: the e2ee bundle's message queue has drained, no subtle call in flight ---
  let barrierSeq = 0;
  async function barrier() {
    if (bundle === 'e2ee') {
      // `enable` is acknowledged by the worker once its queue reaches it; a never-used identity
      const id = `${barrierTag}_${peer}_${++barrierSeq}`;
      const acked = new Promise((resolve) => ackWaiters.set(id, resolve));
      deliver({ kind: 'enable', data: { participantIdentity: id, enabled: false } });
      await acked;
    }
    // ratchetRequest runs outside the queue: wait until subtle has been idle for a few turns
    let idle = 0;
    while (idle < 3) {
      await new Promise((r) => setImmediate(r));
      idle = inflight === 0 ? idle + 1 : 0;
    }
  }

  // ---- main-thread protocol ------------------------------------------------------------
  // Answers HarnessPeer.call: `lk` (deliver a message to the bundle), `barrier` (reply with
  // the events), and `commands` (t → async (m) => reply fields). `before(m)` runs first.
  function serve(commands, before) {
    const all = {
      lk: async (m) => {
        deliver(m.msg);
      },
      barrier: async () => {
        await barrier();
        return { events: drain() };
      },
      ...commands,
    };
    parentPort.on('message', async (m) => {
      try {
        if (before) before(m);
        if (!Object.hasOwn(all, m.t)) throw new Error(`unknown host command ${m.t}`);
        const r = await all[m.t](m);
        parentPort.postMessage({ id: m.id, ok: true, ...r });
      } catch (e) {
        parentPort.postMessage({ id: m.id, ok: false, error: String((e && e.stack) || e) });
      }
    });
    parentPort.postMessage({ ready: true });
  }

  return { drain, deliver, barrier, serve };
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

// The encoded-frame streams the browser would transfer with `encode` / `decode`: one pipe
// per direction / participant / track, opened on first use by delivering
// {kind: dir, data: {readableStream, writableStream, trackId, ...describe(m)}}.
//   sentinel: after each real frame comes an empty sentinel frame (passed through untouched);
//             it arriving alone means the real frame was dropped;
//   signalOnOutput: any output frame ends the wait (for a worker that never drops one).
export class FramePipes {
  constructor(deliver, { describe, sentinel = true, signalOnOutput = false }) {
    this.deliver = deliver;
    this.describe = describe;
    this.sentinel = sentinel;
    this.signalOnOutput = signalOnOutput;
    this.pipes = new Map();
  }

  get(m) {
    const key = `${m.dir}|${m.participant}|${m.track}`;
    let p = this.pipes.get(key);
    if (p) return p;
    p = { outputs: [], waiter: null, dead: null };
    const signalOnOutput = this.signalOnOutput;
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
          if (signalOnOutput && p.waiter) p.waiter();
        }
      },
      abort(reason) {
        p.dead = `writable aborted: ${reason}`;
        if (p.waiter) p.waiter();
      },
    });
    const trackId = `${m.dir}-${m.participant}-${m.track}`;
    this.deliver({
      kind: m.dir,
      data: { readableStream: readable, writableStream: writable, trackId, ...this.describe(m) },
    });
    this.pipes.set(key, p);
    return p;
  }

  // Sends m.frame through its pipe; resolves with {frames (the output frames), dead}.
  async run(m) {
    const p = this.get(m);
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
      if (this.sentinel) p.controller.enqueue(sentinel);
      await done;
    }
    p.waiter = null;
    const frames = p.outputs;
    const dead = p.dead;
    if (dead) this.pipes.delete(`${m.dir}|${m.participant}|${m.track}`);
    return { frames, dead };
  }
}
