// Keeps the layers one-way: every import in src/ must point to the same folder or to a lower layer, and no two
// files may import each other round in a cycle. Run by `npm test` (npm run check:layers); exits 1 with one line per
// offending import. The layer table is the architecture (ARCHITECTURE.md); change both together.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Layers from the bottom up: a module may import its own folder and anything in a lower layer, nothing else. */
export const LAYERS: readonly (readonly string[])[] = [
  ['core'],
  ['log.ts'],
  ['protocol'],
  ['tailnet', 'store', 'headscale', 'tls'],
  ['tunnel', 'bindings'],
  ['proxy', 'api'],
  ['config.ts'],
  ['app.ts'],
  ['workers'],
  ['main.ts'],
  ['cli'],
];

export interface Violation {
  from: string;
  to: string;
  why: string;
}

/** The unit a file belongs to: its top-level folder under src/, or the file itself at the top. */
export function unitOf(file: string): string {
  const first = file.split('/')[0]!;
  return first;
}

function rankOf(unit: string): number {
  return LAYERS.findIndex((layer) => layer.includes(unit));
}

/** `graph`: each file (relative to src/, with .ts) mapped to the files it imports (same form). */
export function checkLayers(graph: ReadonlyMap<string, readonly string[]>): Violation[] {
  const violations: Violation[] = [];
  for (const [from, imports] of graph) {
    const fromUnit = unitOf(from);
    const fromRank = rankOf(fromUnit);
    if (fromRank < 0) {
      violations.push({ from, to: from, why: `${fromUnit} is in no layer (add it to LAYERS in scripts/check-layers.ts)` });
      continue;
    }
    for (const to of imports) {
      const toUnit = unitOf(to);
      if (toUnit === fromUnit) continue;
      const toRank = rankOf(toUnit);
      if (toRank < 0) violations.push({ from, to, why: `${toUnit} is in no layer` });
      else if (toRank > fromRank) violations.push({ from, to, why: `${fromUnit} (layer ${fromRank}) imports upwards into ${toUnit} (layer ${toRank})` });
      else if (toRank === fromRank) violations.push({ from, to, why: `${fromUnit} and ${toUnit} are side by side in layer ${fromRank}; pass what is needed in instead` });
    }
  }
  violations.push(...findCycles(graph));
  return violations;
}

/** Every import that closes a cycle among files (depth-first search, reported once per back edge). */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): Violation[] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found: Violation[] = [];
  const visit = (file: string): void => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      const s = state.get(next);
      if (s === 'open') {
        const cycle = [...stack.slice(stack.indexOf(next)), next];
        found.push({ from: file, to: next, why: `import cycle: ${cycle.join(' -> ')}` });
      } else if (s === undefined && graph.has(next)) {
        visit(next);
      }
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file);
  return found;
}

const IMPORT = /^\s*(?:import|export)\s+(?:type\s+)?(?:[^'"]*?\s+from\s+)?['"](\.{1,2}\/[^'"]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** The relative imports of every .ts file under `srcDir`, resolved to paths relative to it. */
export function readGraph(srcDir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) {
        const text = readFileSync(full, 'utf8');
        const rel = path.relative(srcDir, full).split(path.sep).join('/');
        const imports: string[] = [];
        for (const re of [IMPORT, DYNAMIC]) {
          for (const m of text.matchAll(re)) {
            const target = path.relative(srcDir, path.resolve(path.dirname(full), m[1]!.replace(/\.js$/, '.ts')));
            imports.push(target.split(path.sep).join('/'));
          }
        }
        graph.set(rel, imports);
      }
    }
  };
  walk(srcDir);
  return graph;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const srcDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src');
  const graph = readGraph(srcDir);
  const violations = checkLayers(graph);
  for (const v of violations) process.stderr.write(`check-layers: src/${v.from} -> src/${v.to}: ${v.why}\n`);
  if (violations.length > 0) {
    process.stderr.write(`check-layers: ${violations.length} import(s) break the layers (see ARCHITECTURE.md)\n`);
    process.exit(1);
  }
  process.stdout.write(`check-layers: ${graph.size} modules, every import points down or sideways within its folder, no cycles\n`);
}
