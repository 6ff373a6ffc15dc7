// Microphone capture, WAV and PCM16 encoding, and gap-free playback of PCM chunks as they arrive.

export async function openMic(ctx, onSamples) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error("the microphone needs a secure page: open the playground over https or on localhost");
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
  const release = () => stream.getTracks().forEach((track) => track.stop());
  try {
    await ctx.audioWorklet.addModule("playground/capture-worklet.js");
    const source = ctx.createMediaStreamSource(stream);  // resampled to ctx.sampleRate by the browser
    const capture = new AudioWorkletNode(ctx, "capture", { numberOfOutputs: 0 });
    capture.port.onmessage = (event) => onSamples(event.data);
    source.connect(capture);
    return {
      stop() {
        source.disconnect();
        capture.port.onmessage = null;
        release();
      },
    };
  } catch (err) {  // e.g. the context was closed meanwhile: let the microphone go
    release();
    throw err;
  }
}

export function floatToPcm16(samples) {
  const pcm = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-1, Math.min(1, samples[i])) * 0x7fff;
  return new Uint8Array(pcm.buffer);
}

export function pcm16ToFloat(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const samples = new Float32Array(bytes.byteLength >> 1);
  for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(2 * i, true) / 0x8000;
  return samples;
}

export function concatBytes(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}

export function wavFromPcm16(pcm, rate) {
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => [...s].forEach((c, i) => header.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF"); header.setUint32(4, 36 + pcm.length, true); text(8, "WAVEfmt ");
  header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, rate, true); header.setUint32(28, rate * 2, true);
  header.setUint16(32, 2, true); header.setUint16(34, 16, true);
  text(36, "data"); header.setUint32(40, pcm.length, true);
  return new Blob([header, pcm], { type: "audio/wav" });
}

export function bytesToBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export function base64ToBytes(b64) {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

// Plays PCM16 LE mono chunks back to back on `ctx`, into `output` (ctx.destination or a stream node).
// Counts bytes received and seconds actually played; stop() drops whatever is still queued (barge-in).
export class PcmPlayer {
  constructor(ctx, output) {
    Object.assign(this, { ctx, output, bytes: 0, playedS: 0, next: 0, carry: null, onchange: null });
    this.queued = new Set();
  }

  push(chunk, rate) {
    this.bytes += chunk.length;
    if (this.carry) { chunk = concatBytes([this.carry, chunk]); this.carry = null; }
    if (chunk.length % 2) { this.carry = chunk.slice(-1); chunk = chunk.subarray(0, chunk.length - 1); }
    const samples = pcm16ToFloat(chunk);
    if (samples.length) this.schedule(samples, rate);
    this.onchange?.();
  }

  schedule(samples, rate) {
    const buffer = this.ctx.createBuffer(1, samples.length, rate);
    buffer.copyToChannel(samples, 0);
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output);
    const at = Math.max(this.next, this.ctx.currentTime + 0.05);
    source.start(at);
    this.next = at + buffer.duration;
    this.queued.add(source);
    source.onended = () => {
      if (this.queued.delete(source)) this.playedS += buffer.duration;  // not when stop() cut it
      this.onchange?.();
    };
  }

  stop() {
    const cut = [...this.queued];
    this.queued.clear();
    cut.forEach((source) => source.stop());
    this.next = 0;
    this.carry = null;
  }
}
