// What a browser Web Worker gives the livekit-client E2EE worker bundle and Node does not:
// the encoded-frame classes of Insertable Streams and the worker-scope globals. Shared by
// the benchmark (bench/node/lkworker.mjs) and the interop oracles (tests/interop/harness_common.mjs).

export class RTCEncodedVideoFrame {
  constructor({ data, type, timestamp, metadata }) {
    this.data = data;
    this.type = type;
    this.timestamp = timestamp;
    this._metadata = metadata;
  }
  getMetadata() {
    return { ...this._metadata };
  }
}

export class RTCEncodedAudioFrame {
  constructor({ data, timestamp, metadata }) {
    this.data = data;
    this.timestamp = timestamp;
    this._metadata = metadata;
  }
  getMetadata() {
    return { ...this._metadata };
  }
}

export function installWorkerGlobals() {
  globalThis.RTCEncodedVideoFrame = RTCEncodedVideoFrame;
  globalThis.RTCEncodedAudioFrame = RTCEncodedAudioFrame;
  globalThis.self = globalThis;
  globalThis.onmessage = null; // the bundle assigns `onmessage = ...` (strict mode needs it declared)
}
