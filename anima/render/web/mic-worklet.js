// Microphone capture: posts each 128-sample block (at the AudioContext's 24 kHz) with its capture time.
class MicCapture extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input[0] && input[0].length) {
      this.port.postMessage({ samples: input[0].slice(0), time: currentTime });
    }
    return true;
  }
}
registerProcessor("mic-capture", MicCapture);
