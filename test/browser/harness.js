// The browser side of test/browser-parity.test.ts: classify image URLs with the browser module as
// a user's page would (an <img>, decoded by the browser), and return what the test compares.
import { loadClassifier } from '/splitfit/splitfit.js';

function base64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

window.classifyAll = async (modelUrl, backend, urls) => {
  const classifier = await loadClassifier(modelUrl, { backend });
  const out = [];
  for (const url of urls) {
    const img = new Image();
    img.src = url;
    await img.decode();
    const started = performance.now();
    const result = await classifier.classify(img);
    const ms = performance.now() - started;
    out.push({ url, ...result, pixels: base64(classifier.inputPixels(img)), ms });
  }
  classifier.dispose();
  return out;
};
window.harnessReady = true;
