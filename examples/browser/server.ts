/**
 * A static file server on 127.0.0.1 for the browser example and the browser tests: URL prefixes
 * mapped to folders, nothing outside them served (no `..`, no symlinks out), GET and HEAD only.
 */
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.bin': 'application/octet-stream',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.txt': 'text/plain; charset=utf-8',
};

export interface StaticServer {
  url: string;
  close(): Promise<void>;
}

/** Serves `mounts` (URL prefix such as `/model/` → folder) on 127.0.0.1:`port` (0 = any free port). */
export async function serveStatic(mounts: Record<string, string>, port = 0): Promise<StaticServer> {
  const roots = await Promise.all(Object.entries(mounts).map(async ([prefix, dir]) => [prefix, await realpath(resolve(dir))] as const));
  // Longest prefix first, so `/model/` wins over `/`.
  roots.sort((a, b) => b[0].length - a[0].length);
  const server: Server = createServer((req, res) => {
    void (async () => {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed');
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
      const mount = roots.find(([prefix]) => path.startsWith(prefix));
      if (!mount) return send(res, 404, 'not found');
      const [prefix, root] = mount;
      let file = join(root, path.slice(prefix.length));
      if (path.endsWith('/')) file = join(file, 'index.html');
      const real = await realpath(file).catch(() => undefined);
      if (real === undefined || (real !== root && !real.startsWith(root + sep))) return send(res, 404, 'not found');
      const info = await stat(real);
      if (!info.isFile()) return send(res, 404, 'not found');
      res.writeHead(200, { 'content-type': TYPES[extname(real).toLowerCase()] ?? 'application/octet-stream', 'content-length': info.size, 'cache-control': 'no-store' });
      if (req.method === 'HEAD') return res.end();
      createReadStream(real).pipe(res);
    })().catch((err: unknown) => send(res, 500, String(err)));
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', ok);
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}`,
    // A browser keeps idle connections open; close() alone would wait for them to time out.
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  };
}

function send(res: import('node:http').ServerResponse, status: number, text: string): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(text);
}
