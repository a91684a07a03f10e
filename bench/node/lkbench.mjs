#!/usr/bin/env node
// framecrypt bench: the published livekit-client E2EE worker, unmodified, under Node.js,
// fed the same frames as every other contender.
//
// Usage: node lkbench.mjs job.json > result.json
//
// The main thread plays livekit-client's main thread (E2eeManager): it makes key material
// with the library's own createKeyMaterialFromBuffer, takes the key-provider options from
// BaseKeyProvider, and posts init / setKey / enable to a worker_threads Worker
// (lkworker.mjs). That worker shims the dedicated-worker globals exactly as
// tests/interop/harness_common.mjs does and imports the bundle as published; it then builds the
// encoded-frame streams the browser would have transferred with `encode` / `decode` and
// times them (see lkworker.mjs).
//
// Job: {"worker_bundle": path, "esm": path, "blob": path, "warmup": 1, "runs": 3,
//       "timeout_ms": 120000,
//       "workloads": [{"name", "participants": [{"name", "raw_hex"}],
//                      "pipes": [{"dir": "encode"|"decode", "participant", "track",
//                                 "codec", "frames": [[offset, length, keyframe, ts, ssrc]]}]}]}
// Result: {"node", "livekit_client_version", "worker_sha256", "results": {name: [run...]}}
//   run = {"wall_s", "cpu_s", "frames_in", "frames_out", "bytes_in", "pipe_errors",
//          "errors", "warm"}
// Exit status: 0 ok; 2 failure (message on stderr); 3 global timeout.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

let worker = null;
function fail(code, message) {
  process.stderr.write(`lkbench: ${message}\n`);
  const done = () => process.exit(code);
  if (worker) worker.terminate().finally(done);
  else done();
}

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
setTimeout(() => fail(3, `global timeout after ${job.timeout_ms} ms`), job.timeout_ms ?? 120000).unref();

const bundleSrc = readFileSync(job.worker_bundle);
const workerSha256 = createHash('sha256').update(bundleSrc).digest('hex');
let version = null;
try {
  version = JSON.parse(readFileSync(join(dirname(job.worker_bundle), '..', 'package.json'), 'utf8')).version;
} catch {
  version = null;
}

async function main() {
  const lk = await import(pathToFileURL(job.esm).href);
  const provider = new lk.BaseKeyProvider({}); // livekit-client's defaults
  worker = new Worker(new URL('./lkworker.mjs', import.meta.url), {
    workerData: {
      bundleUrl: pathToFileURL(job.worker_bundle).href,
      blob: job.blob,
      keyProviderOptions: provider.getOptions(),
    },
  });
  let seq = 0;
  const pending = new Map();
  let readyResolve;
  const ready = new Promise((r) => {
    readyResolve = r;
  });
  worker.on('message', (m) => {
    if (m.ready) return readyResolve();
    const w = pending.get(m.id);
    if (!w) return;
    pending.delete(m.id);
    if (m.ok) w.resolve(m);
    else w.reject(new Error(m.error));
  });
  worker.on('error', (e) => fail(2, `worker crashed: ${(e && e.stack) || e}`));
  const call = (m) =>
    new Promise((resolve, reject) => {
      const id = ++seq;
      pending.set(id, { resolve, reject });
      worker.postMessage({ ...m, id });
    });
  await ready;
  const results = {};
  for (const wl of job.workloads) {
    for (const p of wl.participants) {
      const raw = new Uint8Array(Buffer.from(p.raw_hex, 'hex'));
      const key = await lk.createKeyMaterialFromBuffer(raw.buffer);
      await call({ t: 'setKey', participant: p.name, key });
    }
    const r = await call({ t: 'run', pipes: wl.pipes, warmup: job.warmup ?? 1, runs: job.runs ?? 3 });
    results[wl.name] = r.runs;
    process.stderr.write(`  livekit-client worker: ${wl.name} done\n`);
  }
  const out = {
    node: process.version,
    livekit_client_version: version,
    worker_sha256: workerSha256,
    max_rss_mb: (process.resourceUsage().maxRSS * 1024) / 1e6,
    results,
  };
  await worker.terminate();
  process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
}

main().catch((e) => fail(2, String((e && e.stack) || e)));
