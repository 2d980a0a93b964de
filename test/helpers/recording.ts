// The real store, key resolver and tunnel registry, each appending what it was asked to a shared list once it has
// done it, so binding tests see the order of the steps (store write, key-cache invalidation, tunnels).
import assert from 'node:assert/strict';
import { BindingError } from '../../src/bindings/errors.js';
import type { NodeStore, RegistryStore } from '../../src/store/types.js';
import { KeyResolver } from '../../src/tunnel/key-resolver.js';
import { TunnelRegistry } from '../../src/tunnel/registry.js';

/** The real store, appending "store.<method>" to steps when each call named in `recorded` has completed. */
export function recordingStore<S extends object>(store: S, steps: string[], recorded: ReadonlySet<string>): S {
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      if (!recorded.has(String(name))) return value.bind(target);
      return async (...args: unknown[]) => {
        const result = await value.apply(target, args);
        steps.push(`store.${String(name)}`);
        return result;
      };
    },
  });
}

export class RecordingResolver extends KeyResolver {
  /** The hashes invalidate() was called with, in order. */
  readonly invalidated: string[] = [];
  constructor(
    store: NodeStore & RegistryStore,
    private readonly steps: string[],
  ) {
    super(store, { max: 1000, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
  }
  override invalidate(keyHash: string): void {
    super.invalidate(keyHash);
    this.invalidated.push(keyHash);
    this.steps.push('cache.invalidate');
  }
  override invalidateAll(): void {
    super.invalidateAll();
    this.steps.push('cache.invalidateAll');
  }
}

export class RecordingTunnels extends TunnelRegistry {
  constructor(private readonly steps: string[]) {
    super();
  }
  override closeKey(keyHash: string): number {
    const n = super.closeKey(keyHash);
    this.steps.push('tunnels.closeKey');
    return n;
  }
  override closeKeyOnChange(keyHash: string): number {
    const n = super.closeKeyOnChange(keyHash);
    this.steps.push('tunnels.closeKeyOnChange');
    return n;
  }
}

/** Runs fn and returns the BindingError it rejects with. */
export async function refusal(fn: () => Promise<unknown>): Promise<BindingError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof BindingError, `expected a BindingError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a BindingError, but it succeeded');
}
