/**
 * Serves the browser example on 127.0.0.1: the page, splitfit's browser module (dist/browser, built
 * by `npm run build`) and one model folder.
 *
 *   npm run example:browser [-- --model <model folder>] [--port 8080]
 *
 * Without --model it serves the model `npm run example:emoji` trains (examples/emoji-categories/work/model).
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { serveStatic } from './server.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(import.meta.dirname, '..', 'emoji-categories', 'work', 'model') },
    port: { type: 'string', default: '8080' },
  },
});
const model = resolve(values.model);
const browserModule = join(import.meta.dirname, '..', '..', 'dist', 'browser', 'splitfit.js');
if (!existsSync(join(model, 'model.json'))) {
  console.error(`no model.json in ${model}: run \`npm run example:emoji\` first, or pass --model <folder written by train-head or export>`);
  process.exit(2);
}
if (!existsSync(browserModule)) {
  console.error(`${browserModule} is missing: run \`npm run build\` first`);
  process.exit(2);
}
const server = await serveStatic({ '/': join(import.meta.dirname, 'page'), '/splitfit/': join(import.meta.dirname, '..', '..', 'dist', 'browser'), '/model/': model }, Number(values.port));
console.log(`splitfit browser example: ${server.url}/  (model: ${model}; Ctrl-C stops)`);
process.on('SIGINT', () => void server.close().then(() => process.exit(0)));
