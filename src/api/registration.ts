// Binding a proxy key to a device: with an explicit address, or by approving the device that holds the
// key as its Headscale registration key (the original system's contract: that key is also the proxy key).
import { isIP } from 'node:net';
import type { Config } from '../config.js';
import { hashKey, keyTag } from '../core/key.js';
import type { DeviceProtocol } from '../core/route.js';
import { RegistrarError, type DeviceRegistrar } from '../headscale/types.js';
import type { Logger } from '../log.js';
import type { AddressAllowList } from '../routing/cidr.js';
import type { KeyResolver } from '../routing/key-resolver.js';
import type { NodeBinding, NodeRecord, NodeStore } from '../store/types.js';
import type { Caller } from './auth.js';
import { ApiError } from './errors.js';

export interface RegisterRequest {
  key: string;
  ip?: string;
  port?: number;
  protocol?: DeviceProtocol;
  name?: string;
}

export interface RegisterOutcome {
  node: NodeRecord;
  created: boolean;
  message: string;
}

export interface RegistrationDeps {
  config: Config;
  store: NodeStore;
  resolver: KeyResolver;
  allowList: AddressAllowList;
  registrar?: DeviceRegistrar | undefined;
  log: Logger;
}

const REGISTRAR_STATUS: Record<RegistrarError['kind'], { status: number; code: string }> = {
  'bad-key': { status: 400, code: 'bad_registration_key' },
  'not-found': { status: 404, code: 'headscale_not_found' },
  unreachable: { status: 502, code: 'headscale_unreachable' },
  upstream: { status: 502, code: 'headscale_error' },
};

/** A Headscale failure as the API reports it, keeping Headscale's own reason and naming the field. */
export function registrarApiError(field: string, err: RegistrarError): ApiError {
  const { status, code } = REGISTRAR_STATUS[err.kind];
  return new ApiError(status, code, err.message.startsWith(`${field}:`) ? err.message : `${field}: ${err.message}`);
}

/** IPv6 in its canonical compressed lower-case form, so one device never appears under two spellings. */
function canonicalIp(ip: string): string | null {
  const version = isIP(ip);
  if (version === 4) return ip;
  if (version !== 6) return null;
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    // Zone ids (fe80::1%eth0) are valid for isIP but mean nothing on the tailnet.
    return null;
  }
}

export class Registration {
  constructor(private readonly deps: RegistrationDeps) {}

  private allowedAddress(field: string, raw: string, source?: string): string {
    const ip = canonicalIp(raw);
    if (ip === null) throw new ApiError(400, 'invalid_ip', `${field}: ${JSON.stringify(raw)} is not an IP address`);
    if (!this.deps.allowList.allows(ip)) {
      throw new ApiError(
        400,
        'ip_not_allowed',
        `${field}: ${ip}${source === undefined ? '' : ` (${source})`} is outside the allowed device ranges (${this.deps.allowList.toString()}, TAILGATE_ALLOW_CIDRS)`,
      );
    }
    return ip;
  }

  async register(req: RegisterRequest, caller: Caller): Promise<RegisterOutcome> {
    const keyHash = hashKey(req.key);
    const existing = await this.deps.store.findByKeyHash(keyHash);
    // A device re-registering on every boot must not reset what an operator set: unspecified fields keep
    // the stored value, and only a new binding takes the configured defaults.
    const port = req.port ?? existing?.port ?? this.deps.config.deviceDefaults.port;
    const protocol = req.protocol ?? existing?.protocol ?? this.deps.config.deviceDefaults.protocol;

    let binding: NodeBinding;
    let via: string;
    if (req.ip !== undefined) {
      if (caller === 'enroll') {
        // An explicit address would let the holder of the enrollment token route a key through any device in
        // the allowed ranges; the Headscale flow only binds a device that holds the key itself.
        throw new ApiError(403, 'forbidden', 'ip: the enrollment token registers through Headscale approval only; binding an explicit address needs the admin token');
      }
      const ip = this.allowedAddress('ip', req.ip);
      const sameDevice = existing !== null && existing.ip === ip;
      binding = {
        keyHash,
        ip,
        port,
        protocol,
        name: req.name,
        // What we know about the old device does not describe a new one.
        ipv6: sameDevice ? undefined : null,
        headscaleNodeId: sameDevice ? undefined : null,
      };
      via = 'address';
    } else if (existing !== null && existing.headscaleNodeId !== null) {
      // Already approved: Headscale has consumed the registration key, and a tailnet address is fixed for
      // the node's lifetime, so answer from the registry (idempotent, and independent of Headscale being up).
      binding = { keyHash, ip: existing.ip, port, protocol, name: req.name };
      via = 'existing Headscale approval';
    } else {
      const registrar = this.deps.registrar;
      if (registrar === undefined) throw new ApiError(400, 'ip_required', 'ip: required (Headscale approval is not configured)');
      let device;
      try {
        device = await registrar.approve(req.key);
      } catch (err) {
        throw err instanceof RegistrarError ? registrarApiError('key', err) : err;
      }
      const ip = this.allowedAddress('ip', device.ipv4, "the device's address in Headscale");
      binding = {
        keyHash,
        ip,
        ipv6: device.ipv6 === null ? null : (canonicalIp(device.ipv6) ?? null),
        port,
        protocol,
        name: req.name ?? device.name,
        headscaleNodeId: device.headscaleNodeId,
      };
      via = 'Headscale approval';
    }

    const { node, created } = await this.deps.store.upsert(binding);
    this.deps.resolver.invalidate(keyHash);
    this.deps.log.info(
      { keyPrefix: keyTag(keyHash), nodeId: node.id, ip: node.ip, port: node.port, protocol: node.protocol, created, via },
      created ? 'key registered' : 'key binding updated',
    );
    const target = `${node.ip.includes(':') ? `[${node.ip}]` : node.ip}:${node.port} (${node.protocol})`;
    const message = created ? `registered: key ${keyTag(keyHash)} -> ${target} via ${via}` : `updated: key ${keyTag(keyHash)} -> ${target} via ${via}`;
    return { node, created, message };
  }
}
