/**
 * Worker thread of bench/extraction-overlap.ts: decodes one encoded image to the model's input
 * pixels (sharp, then the shared JS pixel pipeline) and sends them back (transferred, not copied).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { decodeImage } from '../src/data/decode.js';

const target = workerData as { height: number; width: number; channels: 1 | 3 };
const port = parentPort!;
port.on('message', (m: { id: number; bytes: Uint8Array }) => {
  void decodeImage(Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength), target, `image ${m.id}`).then((pixels) => {
    port.postMessage({ id: m.id, pixels }, [pixels.buffer as ArrayBuffer]);
  });
});
