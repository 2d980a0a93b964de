/** What approving a pending device in Headscale yields. */
export interface ApprovedDevice {
  headscaleNodeId: string;
  name: string;
  ipv4: string;
  ipv6: string | null;
}

export type RegistrarFailure = 'bad-key' | 'not-found' | 'unreachable' | 'upstream';

/** Maps to the API's status: bad-key 400, not-found 404, unreachable 502, upstream 502. */
export class RegistrarError extends Error {
  constructor(
    readonly kind: RegistrarFailure,
    message: string,
  ) {
    super(message);
    this.name = 'RegistrarError';
  }
}

/** Approves devices waiting in Headscale with their registration key and removes them again. */
export interface DeviceRegistrar {
  /** Approves (or, if already approved, looks up) the device holding this registration key. */
  approve(registrationKey: string): Promise<ApprovedDevice>;
  deleteNode(headscaleNodeId: string): Promise<void>;
}

/** Headscale's API, for approving devices (HEADSCALE_*), validated by config.ts. */
export interface HeadscaleConfig {
  url: string;
  apiKey: string;
  user: string;
  timeoutMs: number;
}
