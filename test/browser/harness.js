// The browser side of test/browser-parity.test.ts: classify image URLs with the browser module as
// a user's page would (an <img>, decoded by the browser), and return what the test compares.
import { loadClassifier, tf } from '/splitfit/splitfit.js';

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
// What a user writes without splitfit's pipeline: fromPixels (alpha dropped), tf's bilinear resize.
window.classifyNaively = async (modelUrl, backend, urls) => {
  const classifier = await loadClassifier(modelUrl, { backend });
  const { height, width } = classifier.metadata.input;
  const out = [];
  for (const url of urls) {
    const img = new Image();
    img.src = url;
    await img.decode();
    const probs = tf.tidy(() => {
      const x = tf.image.resizeBilinear(tf.browser.fromPixels(img), [height, width]).div(255).expandDims(0);
      return classifier.model.predict(x);
    });
    const row = await probs.data();
    probs.dispose();
    out.push({ url, probabilities: Object.fromEntries(classifier.labels.map((l, j) => [l, row[j]])) });
  }
  classifier.dispose();
  return out;
};
window.harnessReady = true;
