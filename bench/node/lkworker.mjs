// Worker-thread side of lkbench.mjs: the browser's dedicated E2EE worker.
//
// Shims the globals the published bundle touches (self, onmessage, postMessage,
// RTCEncodedVideoFrame / RTCEncodedAudioFrame: worker_globals.mjs, shared with tests/interop/harness_common.mjs),
// minus its crypto.subtle spies (nothing is recorded: this is a timing run). Then, per
// timed run, it builds one ReadableStream / WritableStream pair per track (pipe), posts
// `encode` / `decode` to the bundle's own onmessage as E2eeManager would, enqueues every
// frame of the pipe and closes it; the run ends when every pipe's writable has closed.
// wall = performance.now(), cpu = process.cpuUsage() (the whole Node process).

import { readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import {
  installWorkerGlobals,
  RTCEncodedAudioFrame,
  RTCEncodedVideoFrame,
} from './worker_globals.mjs';

const { bundleUrl, blob: blobPath, keyProviderOptions } = workerData;
const blob = readFileSync(blobPath);

installWorkerGlobals();

const enableWaiters = new Map();
let errors = 0;
globalThis.postMessage = (msg) => {
  const kind = msg && msg.kind;
  if (kind === 'enable') {
    const w = enableWaiters.get(msg.data.participantIdentity);
    if (w) {
      enableWaiters.delete(msg.data.participantIdentity);
      w();
    }
  } else if (kind === 'error') {
    errors += 1;
  } else if (kind === 'log' && msg.data.level === 'error') {
    errors += 1;
  }
};

await import(bundleUrl);
if (typeof globalThis.onmessage !== 'function') {
  throw new Error('the e2ee worker bundle did not install onmessage');
}
const deliver = (msg) => globalThis.onmessage({ data: msg });
deliver({ kind: 'init', data: { keyProviderOptions, loglevel: 'warn' } });

const MIME = {
  vp8: 'video/VP8',
  vp9: 'video/VP9',
  h264: 'video/H264',
  h265: 'video/H265',
  av1: 'video/AV1',
  opus: 'audio/opus',
};

async function setKey(participant, key) {
  deliver({
    kind: 'setKey',
    data: { participantIdentity: participant, isPublisher: false, key, keyIndex: 0,
            updateCurrentKeyIndex: true },
  });
  const acked = new Promise((r) => enableWaiters.set(participant, r));
  // `enable` is acknowledged once the worker's message queue reaches it (after setKey)
  deliver({ kind: 'enable', data: { participantIdentity: participant, enabled: true } });
  await acked;
}

function makeFrames(pipe) {
  const audio = pipe.codec === 'opus';
  return pipe.frames.map(([off, len, kf, ts, ssrc]) => {
    const data = new ArrayBuffer(len);
    new Uint8Array(data).set(blob.subarray(off, off + len));
    const metadata = {
      synchronizationSource: ssrc,
      rtpTimestamp: ts,
      payloadType: audio ? 111 : 96,
      contributingSources: [],
      mimeType: MIME[pipe.codec],
    };
    if (audio) return new RTCEncodedAudioFrame({ data, timestamp: ts, metadata });
    return new RTCEncodedVideoFrame({ data, type: kf ? 'key' : 'delta', timestamp: ts, metadata });
  });
}

let runSeq = 0;
async function runOnce(pipes) {
  const prepared = pipes.map((p) => ({ p, frames: makeFrames(p) }));
  const bytesIn = prepared.reduce((a, { frames }) => a + frames.reduce((b, f) => b + f.data.byteLength, 0), 0);
  runSeq += 1;
  const errors0 = errors;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const done = prepared.map(
    ({ p, frames }) =>
      new Promise((resolve) => {
        let out = 0;
        const readable = new ReadableStream({
          start(c) {
            for (const f of frames) c.enqueue(f);
            c.close();
          },
        });
        const writable = new WritableStream({
          write() {
            out += 1;
          },
          close() {
            resolve({ out });
          },
          abort(reason) {
            resolve({ out, error: String(reason) });
          },
        });
        deliver({
          kind: p.dir,
          data: {
            participantIdentity: p.participant,
            readableStream: readable,
            writableStream: writable,
            trackId: `${p.dir}-${p.participant}-${p.track}-${runSeq}`,
            codec: p.codec,
            hasPacketTrailer: false,
          },
        });
      }),
  );
  const res = await Promise.all(done);
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    wall_s: wall,
    cpu_s: (cpu.user + cpu.system) / 1e6,
    frames_in: prepared.reduce((a, { frames }) => a + frames.length, 0),
    frames_out: res.reduce((a, r) => a + r.out, 0),
    bytes_in: bytesIn,
    pipe_errors: res.filter((r) => r.error).length,
    errors: errors - errors0,
  };
}

parentPort.on('message', async (m) => {
  try {
    if (m.t === 'setKey') {
      await setKey(m.participant, m.key);
      parentPort.postMessage({ id: m.id, ok: true });
    } else if (m.t === 'run') {
      const runs = [];
      for (let i = 0; i < m.warmup + m.runs; i++) {
        const r = await runOnce(m.pipes);
        r.warm = i < m.warmup;
        runs.push(r);
      }
      parentPort.postMessage({ id: m.id, ok: true, runs });
    } else {
      throw new Error(`unknown command ${m.t}`);
    }
  } catch (e) {
    parentPort.postMessage({ id: m.id, ok: false, error: String((e && e.stack) || e) });
  }
});
parentPort.postMessage({ ready: true });
