// Copies microphone samples off the audio thread in ~40 ms batches (the main thread encodes and sends them).
const BATCH = 1024;

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buffer = new Float32Array(BATCH);
    this.filled = 0;
  }

  process(inputs) {
    const samples = inputs[0][0];  // first input, first channel (the mic is mono or its left channel)
    if (samples) {
      for (let i = 0; i < samples.length; i++) {
        this.buffer[this.filled++] = samples[i];
        if (this.filled === BATCH) {
          this.port.postMessage(this.buffer);
          this.buffer = new Float32Array(BATCH);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("capture", Capture);
