// The layer check npm test runs: it passes on the tree as it is, and it catches each kind of break.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkLayers, readGraph } from '../scripts/check-layers.js';

const srcDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src');

test('every import in src/ points down the layers or within its folder, with no cycle', () => {
  const graph = readGraph(srcDir);
  assert.ok(graph.size > 40, `read ${graph.size} modules`);
  assert.ok(graph.get('main.ts')?.includes('app.ts'), 'imports are resolved to files');
  assert.deepEqual(checkLayers(graph), []);
});

test('an upward import, an import across a layer, an unknown folder and a cycle are each reported', () => {
  const graph = new Map<string, string[]>([
    ['core/target.ts', ['core/ip.ts']],
    ['core/ip.ts', []],
    ['protocol/socks5.ts', ['core/target.ts', 'tunnel/pipeline.ts']],
    ['tunnel/pipeline.ts', ['bindings/service.ts', 'tunnel/relay.ts']],
    ['tunnel/relay.ts', ['tunnel/pipeline.ts']],
    ['bindings/service.ts', []],
    ['routing/old.ts', []],
  ]);
  const found = checkLayers(graph).map((v) => `${v.from} -> ${v.to}: ${v.why.split(':')[0]}`);
  assert.deepEqual(found.sort(), [
    'protocol/socks5.ts -> tunnel/pipeline.ts: protocol (layer 2) imports upwards into tunnel (layer 4)',
    'routing/old.ts -> routing/old.ts: routing is in no layer (add it to LAYERS in scripts/check-layers.ts)',
    'tunnel/pipeline.ts -> bindings/service.ts: tunnel and bindings are side by side in layer 4; pass what is needed in instead',
    'tunnel/relay.ts -> tunnel/pipeline.ts: import cycle',
  ]);
});
