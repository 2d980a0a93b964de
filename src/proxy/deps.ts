import type { Logger } from '../log.js';
import type { TailnetView } from '../tailnet/types.js';
import type { TunnelPipeline } from '../tunnel/pipeline.js';
import type { Timeouts } from '../tunnel/types.js';

/** What the front ends need; app.ts builds one and hands it to both listeners. */
export interface ProxyDeps {
  pipeline: TunnelPipeline;
  /** The supervised tailscaled's view, when there is one: the forwarder's pool drops devices it reports offline. */
  tailnet?: TailnetView | undefined;
  log: Logger;
  timeouts: Timeouts;
  /** Largest HTTP request head the HTTP proxy accepts; larger ones get 431. */
  maxHeaderBytes: number;
}
