// The example page: load the model folder once per backend, classify a chosen or dropped image.
import { loadClassifier } from '/splitfit/splitfit.js';

const $ = (id) => document.getElementById(id);
let classifier;

async function load(backend) {
  $('status').textContent = `loading the model on ${backend}…`;
  classifier?.dispose();
  classifier = await loadClassifier('/model/model.json', { backend });
  $('status').textContent = `ready: ${classifier.labels.length} classes, ${backend} backend`;
}

async function show(file) {
  const img = $('preview');
  img.src = URL.createObjectURL(file);
  img.hidden = false;
  await img.decode();
  const started = performance.now();
  const result = await classifier.classify(img);
  const ms = performance.now() - started;
  $('label').textContent = `${result.label} (${(result.probability * 100).toFixed(1)} %)`;
  $('status').textContent = `classified in ${ms.toFixed(0)} ms`;
  const rows = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]);
  $('probabilities').replaceChildren(
    ...rows.map(([label, p]) => {
      const tr = document.createElement('tr');
      tr.innerHTML = `<td></td><td>${p.toFixed(4)}</td><td class="bar"><div style="width:${(p * 100).toFixed(1)}%"></div></td>`;
      tr.firstChild.textContent = label;
      return tr;
    }),
  );
}

function fail(err) {
  $('status').textContent = String(err?.message ?? err);
  $('status').className = 'error';
}

$('file').addEventListener('change', (e) => e.target.files[0] && show(e.target.files[0]).catch(fail));
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const file = e.dataTransfer.files[0];
  if (file) show(file).catch(fail);
});
$('backend').addEventListener('change', (e) => load(e.target.value).catch(fail));
load('wasm').catch(fail);
