import { chartLibraries } from './assets.js';
import { CLIENT_SCRIPT } from './client.js';
import type { ReportData } from './data.js';

/**
 * Nothing may leave the page: no fetch, no image or font from elsewhere, no frames. The content
 * security policy makes that a property of the file, not a promise of its code.
 */
export const REPORT_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:";

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; color: #1b1b1b; margin: 0; background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 0; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; } h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #555; margin: 2px 0 8px; } .note { background: #fff6d6; border: 1px solid #eed98b; padding: 6px 10px; border-radius: 4px; }
.two { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px 32px; }
table { border-collapse: collapse; background: #fff; } th, td { border: 1px solid #e2e2e2; padding: 3px 10px; text-align: right; } th { background: #f1f3f5; }
table.kv th { text-align: left; font-weight: 600; } table.kv td { text-align: left; font-family: ui-monospace, monospace; word-break: break-all; }
table.per-class td:first-child { text-align: left; }
figure { margin: 0; } figure.chart { background: #fff; border: 1px solid #e2e2e2; border-radius: 4px; padding: 8px; } figcaption { font-weight: 600; margin-bottom: 4px; }
.canvas-box { position: relative; width: 100%; }
.worst { display: flex; flex-wrap: wrap; gap: 10px; } .sample { width: 180px; background: #fff; border: 1px solid #e2e2e2; border-radius: 4px; padding: 6px; }
.sample img { image-rendering: pixelated; display: block; margin-bottom: 4px; } .sample figcaption { font-weight: 400; font-size: 12px; word-break: break-all; }
.sample .file { font-family: ui-monospace, monospace; } .missing { width: 64px; height: 64px; background: #eee; font-size: 11px; display: flex; align-items: center; justify-content: center; }
.verdict { font-style: italic; }
`;

/** JSON inside a `<script>` element: `<` escaped, so no value can close the element or open a comment. */
export function embedJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

/** One self-contained HTML file: the data, Chart.js, and the script that draws the report from the data. */
export async function renderReport(data: ReportData): Promise<string> {
  const libraries = await chartLibraries();
  const title = data.title.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${REPORT_CSP}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${title}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    '<main id="report"></main>',
    `<script type="application/json" id="report-data">${embedJson(data)}</script>`,
    ...libraries.map((source) => `<script>${source}</script>`),
    `<script>${CLIENT_SCRIPT}</script>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}
