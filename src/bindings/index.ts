// The two binding services over one store, as the gateway (and the API tests) assemble them.
import type { NodeStore, RegistryStore } from '../store/types.js';
import { RegistryService } from './registry.js';
import { BindingService, type BindingDeps } from './service.js';

export interface BindingServices {
  /** Keys bound to one device each: /register and /nodes. */
  bindings: BindingService;
  /** Keys, devices and pools apart: /keys, /devices, /pools. */
  registry: RegistryService;
}

export function createBindingServices(deps: BindingDeps & { store: NodeStore & RegistryStore }): BindingServices {
  return { bindings: new BindingService(deps), registry: new RegistryService(deps) };
}
