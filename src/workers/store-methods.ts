// The store calls a worker makes (through the primary): what its key resolver, usage recorder and device tracking use.
// The primary answers these and nothing else, so a worker can neither write keys nor read what the API alone may.
export const WORKER_STORE_METHODS = ['resolveKey', 'listDevices', 'findByKeyHash', 'addUsage', 'keyBytesSince', 'keyNames', 'ping'] as const;

export type WorkerStoreMethod = (typeof WORKER_STORE_METHODS)[number];

export function isWorkerStoreMethod(m: string): m is WorkerStoreMethod {
  return (WORKER_STORE_METHODS as readonly string[]).includes(m);
}
