/** What a device's own proxy speaks. */
export type DeviceProtocol = 'http' | 'socks5';

/** Where a key's traffic goes: the device's own proxy on its tailnet address. */
export interface DeviceRoute {
  nodeId: number;
  /** SHA-256 of the key, hex (hashKey); ties open tunnels to the key so revocation can close them. */
  keyHash: string;
  ip: string;
  port: number;
  protocol: DeviceProtocol;
}
