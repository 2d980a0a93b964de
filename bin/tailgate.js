#!/usr/bin/env node
// The `tailgate` command. In a checkout (the TypeScript source and tsx, a dev dependency, both present) it runs the
// source as it is now, so `npx tailgate …` needs no build and never runs a dist/ left over from an older one. An
// installed package ships dist/ and no tsx, and runs the compiled code.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
const built = new URL('../dist/cli/main.js', import.meta.url);

async function tsxRegister() {
  try {
    return (await import('tsx/esm/api')).register;
  } catch {
    return undefined;
  }
}

const register = existsSync(source) ? await tsxRegister() : undefined;
if (register !== undefined) {
  register();
  await import(source.href);
} else if (existsSync(built)) {
  await import(built.href);
} else {
  process.stderr.write('tailgate: neither dist/cli/main.js nor the source with tsx is here; run `npm run build` (or `npm ci` in a checkout)\n');
  process.exitCode = 1;
}
