import type { DeviceProtocol } from '../core/route.js';

export interface NodeRecord {
  id: number;
  name: string | null;
  ip: string;
  ipv6: string | null;
  port: number;
  protocol: DeviceProtocol;
  /** SHA-256 of the proxy key, hex. The key itself is never stored. */
  keyHash: string;
  headscaleNodeId: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface NodeBinding {
  keyHash: string;
  ip: string;
  ipv6?: string | null;
  port: number;
  protocol: DeviceProtocol;
  name?: string | null;
  headscaleNodeId?: string | null;
}

/** A binding created, changed or removed; 'delete' means the key no longer routes anywhere. */
export interface NodeChange {
  op: 'insert' | 'update' | 'delete';
  keyHash: string;
}

/** The registry of key -> device bindings. One implementation (SQL via `postgres`) serves both a real server and the embedded one. */
export interface NodeStore {
  findByKeyHash(keyHash: string): Promise<NodeRecord | null>;
  /** Inserts or, for a key already bound, updates the binding. */
  upsert(binding: NodeBinding): Promise<{ node: NodeRecord; created: boolean }>;
  list(): Promise<NodeRecord[]>;
  get(id: number): Promise<NodeRecord | null>;
  /** Deletes and returns the removed record, or null if there was none. */
  remove(id: number): Promise<NodeRecord | null>;
  /** Throws when the database cannot answer. */
  ping(): Promise<void>;
  /**
   * Follows binding changes committed by anyone on this database (other gateways included): onChange for
   * each changed key, onResync whenever notifications may have been missed (at every (re)connection of the
   * listener) so the caller can drop everything it cached. Resolves to a function that stops watching.
   * Absent when the database cannot deliver notifications (the embedded one, which has a single writer).
   */
  watch?(onChange: (change: NodeChange) => void, onResync: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}
