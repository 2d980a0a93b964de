// The web dashboard's files under /ui/: the app's own modules from the repository's ui/ folder and a fixed map of
// vendor modules from node_modules, all read once at start and served from memory (so no request can name a path on
// disk). They are public code holding no data: every call the app makes for data goes to the API routes, which need
// the admin token like any other caller. The page runs under a Content-Security-Policy that allows only this origin's
// scripts, plus the import map by its hash.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

export interface UiOptions {
  /** The app's folder; default the repository's ui/ (two levels above src/api/ and dist/api/ alike). */
  root?: string;
}

interface Asset {
  body: Buffer;
  /** Only when it is smaller than the body. */
  gzip: Buffer | undefined;
  type: string;
  etag: string;
  cache: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** Vendor modules by the specifier the app imports: the package, and the file next to its main entry point. */
const VENDOR: readonly { specifier: string; pkg: string; resolve: string; file: string; ext: string }[] = [
  { specifier: 'preact', pkg: 'preact', resolve: 'preact', file: 'preact.module.js', ext: '.js' },
  { specifier: 'preact/hooks', pkg: 'preact', resolve: 'preact/hooks', file: 'hooks.module.js', ext: '.js' },
  { specifier: 'htm', pkg: 'htm', resolve: 'htm', file: 'htm.module.js', ext: '.js' },
  { specifier: 'uplot', pkg: 'uplot', resolve: 'uplot', file: 'uPlot.esm.js', ext: '.js' },
  { specifier: 'uplot.css', pkg: 'uplot', resolve: 'uplot', file: 'uPlot.min.css', ext: '.css' },
];

// The app's modules and index.html change with the gateway's version: revalidated every load (ETag, 304). Vendor
// files carry their package version in their URL, so a browser may keep them.
const REVALIDATE = 'no-cache';
const IMMUTABLE = 'public, max-age=31536000, immutable';

function asset(body: Buffer, ext: string, cache: string): Asset {
  const gzip = gzipSync(body, { level: 9 });
  return {
    body,
    gzip: gzip.length < body.length ? gzip : undefined,
    type: TYPES[ext] ?? 'application/octet-stream',
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
    cache,
  };
}

function appFiles(root: string, dir = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = dir === '' ? entry.name : `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...appFiles(root, rel));
    else if (entry.isFile() && TYPES[path.extname(entry.name)] !== undefined) out.push(rel);
  }
  return out;
}

/** Every file the dashboard serves, by its path under /ui/, and the policy its page runs under. */
export function loadUi(root: string): { assets: Map<string, Asset>; csp: string } {
  const assets = new Map<string, Asset>();
  const require = createRequire(import.meta.url);
  const imports: Record<string, string> = {};
  const links: Record<string, string> = {};
  for (const v of VENDOR) {
    const entry = require.resolve(v.resolve);
    const marker = `${path.join('node_modules', v.pkg)}${path.sep}`;
    const pkgRoot = entry.slice(0, entry.lastIndexOf(marker) + marker.length);
    const version = (JSON.parse(readFileSync(path.join(pkgRoot, 'package.json'), 'utf8')) as { version: string }).version;
    const url = `vendor/${v.specifier.replace('/', '-')}-${version}${v.ext}`;
    assets.set(url, asset(readFileSync(path.join(path.dirname(entry), v.file)), v.ext, IMMUTABLE));
    if (v.ext === '.js') imports[v.specifier] = `./${url}`;
    else links[v.specifier] = `./${url}`;
  }
  for (const rel of appFiles(root)) {
    if (rel === 'index.html') continue;
    assets.set(rel, asset(readFileSync(path.join(root, rel)), path.extname(rel), REVALIDATE));
  }
  const importMap = JSON.stringify({ imports });
  const page = readFileSync(path.join(root, 'index.html'), 'utf8')
    .replace('<!--importmap-->', `<script type="importmap">${importMap}</script>`)
    .replace('<!--uplot.css-->', `<link rel="stylesheet" href="${links['uplot.css']}">`);
  const index = asset(Buffer.from(page), '.html', REVALIDATE);
  assets.set('', index);
  assets.set('index.html', index);
  const importMapHash = createHash('sha256').update(importMap).digest('base64');
  const csp = [
    "default-src 'none'",
    `script-src 'self' 'sha256-${importMapHash}'`,
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { assets, csp };
}

export const ui: FastifyPluginAsync<UiOptions> = async (app, opts) => {
  const root = opts.root ?? fileURLToPath(new URL('../../ui/', import.meta.url));
  const { assets, csp } = loadUi(root);
  // Not part of the API: left out of /openapi.json, and open (the files hold no data).
  const route = { config: { access: 'open' as const }, schema: { hide: true } };

  const send = (request: FastifyRequest, reply: FastifyReply, file: Asset) => {
    reply
      .header('content-security-policy', csp)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', file.cache)
      .header('etag', file.etag)
      .header('vary', 'accept-encoding')
      .type(file.type);
    if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
    if (file.gzip !== undefined && /\bgzip\b/.test(request.headers['accept-encoding'] ?? '')) {
      return reply.header('content-encoding', 'gzip').send(file.gzip);
    }
    return reply.send(file.body);
  };

  app.get('/', route, (_request, reply) => reply.redirect('/ui/'));
  app.get('/ui', route, (_request, reply) => reply.redirect('/ui/'));
  app.get<{ Params: { '*': string } }>('/ui/*', route, (request, reply) => {
    const file = assets.get(request.params['*']);
    if (file === undefined) throw new ApiError(404, 'not_found', `no such file: ${request.url.split('?')[0]}`);
    return send(request, reply, file);
  });
};
