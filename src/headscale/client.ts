// Approves devices waiting in Headscale through its REST API (grpc-gateway, Bearer API key).
//
// What the API does, read from headscale v0.29.3's source (hscontrol/grpcv1.go) and checked against the binary:
// - 0.29+: POST /api/v1/auth/register {"user": NAME, "authId": "hskey-authreq-…"} -> {"node": {…}}.
//   `user` is the user NAME (GetUserByName), not its id. /api/v1/node/register?user=&key= still exists and
//   takes the same auth id.
// - 0.25–0.28: only POST /api/v1/node/register?user=NAME&key=<24-char id>.
// - Errors other than auth come back as HTTP 500 {"code": 2, "message": …}: "node not found in registration cache"
//   (unknown, expired or already used), "looking up user: user not found", "auth ID has invalid prefix…".
//   An unknown route is 404 {"code": 5, "message": "Not Found"}; a bad API key is 401 text/plain.
// - Once a registration is approved Headscale forgets the auth id, so "already approved" cannot be asked of
//   Headscale; approvals are remembered here, and the API consults its own store before calling approve().
import { request } from 'undici';
import type { HeadscaleConfig } from './types.js';
import { secretTag, type Logger } from '../log.js';
import { RegistrarError, type ApprovedDevice, type DeviceRegistrar } from './types.js';

/** 0.29+: fixed prefix + 24 URL-safe characters. */
const AUTH_ID = /^hskey-authreq-[A-Za-z0-9_-]{24}$/;
/** 0.25–0.28: 24 URL-safe characters. */
const LEGACY_ID = /^[A-Za-z0-9_-]{24}$/;

export function registrationKeyFormat(key: string): 'auth-id' | 'legacy' | null {
  if (AUTH_ID.test(key)) return 'auth-id';
  if (LEGACY_ID.test(key)) return 'legacy';
  return null;
}

/** The Node message as grpc-gateway renders it (camelCase, uint64 as string). */
interface HeadscaleNode {
  id?: string | number;
  name?: string;
  givenName?: string;
  ipAddresses?: string[];
}

interface ApiAnswer {
  status: number;
  json: { code?: number; message?: string; node?: HeadscaleNode } | undefined;
  text: string;
}

const REMEMBERED_APPROVALS = 10_000;

export class HeadscaleRegistrar implements DeviceRegistrar {
  private readonly log: Logger;
  private readonly authHeader: string;
  /** Registration key -> approved device: Headscale drops the key once it is used, so a retry is answered from here. */
  private readonly approved = new Map<string, ApprovedDevice>();
  private readonly inFlight = new Map<string, Promise<ApprovedDevice>>();
  /** Learned on the first 404 from /auth/register: this Headscale predates 0.29. */
  private authRegisterMissing = false;

  constructor(
    private readonly cfg: HeadscaleConfig,
    log: Logger,
    /** Runs after a new approval, before approve() resolves (main.ts: warm up the tailnet path to the device). */
    private readonly onApproved?: (device: ApprovedDevice) => Promise<unknown>,
  ) {
    this.log = log.child({ component: 'headscale' });
    this.authHeader = `Bearer ${cfg.apiKey}`;
    this.log.info({ url: cfg.url, user: cfg.user, apiKey: secretTag(cfg.apiKey) }, 'Headscale approvals enabled');
  }

  approve(registrationKey: string): Promise<ApprovedDevice> {
    const format = registrationKeyFormat(registrationKey);
    if (format === null) {
      return Promise.reject(
        new RegistrarError('bad-key', 'key: not a Headscale registration key (expected hskey-authreq- followed by 24 characters, or a 24-character id)'),
      );
    }
    const known = this.approved.get(registrationKey);
    if (known !== undefined) return Promise.resolve(known);
    let pending = this.inFlight.get(registrationKey);
    if (pending === undefined) {
      pending = this.register(registrationKey, format).finally(() => this.inFlight.delete(registrationKey));
      this.inFlight.set(registrationKey, pending);
    }
    return pending;
  }

  async deleteNode(headscaleNodeId: string): Promise<void> {
    if (!/^\d+$/.test(headscaleNodeId)) throw new RegistrarError('bad-key', `not a Headscale node id: ${JSON.stringify(headscaleNodeId)}`);
    const answer = await this.call('DELETE', `/api/v1/node/${headscaleNodeId}`);
    if (answer.status === 200) {
      for (const [key, device] of this.approved) if (device.headscaleNodeId === headscaleNodeId) this.approved.delete(key);
      this.log.info({ node: headscaleNodeId }, 'deleted node in Headscale');
      return;
    }
    // Already gone is what the caller wanted.
    if (/not found/i.test(answer.json?.message ?? '')) return;
    throw this.upstreamError(answer, 'deleting the node');
  }

  private async register(key: string, format: 'auth-id' | 'legacy'): Promise<ApprovedDevice> {
    let answer: ApiAnswer;
    if (format === 'auth-id' && !this.authRegisterMissing) {
      answer = await this.call('POST', '/api/v1/auth/register', { user: this.cfg.user, authId: key });
      if (answer.status === 404 && answer.json?.code === 5 && answer.json.message === 'Not Found') {
        this.authRegisterMissing = true;
        answer = await this.legacyRegister(key);
      }
    } else {
      answer = await this.legacyRegister(key);
    }

    if (answer.status === 200 && answer.json?.node) {
      const device = toApproved(answer.json.node);
      if (this.approved.size >= REMEMBERED_APPROVALS) this.approved.delete(this.approved.keys().next().value as string);
      this.approved.set(key, device);
      this.log.info({ node: device.headscaleNodeId, name: device.name, ipv4: device.ipv4 }, 'approved device in Headscale');
      await this.onApproved?.(device).catch(() => undefined);
      return device;
    }

    const message = answer.json?.message ?? '';
    if (/registration cache/i.test(message)) {
      throw new RegistrarError('not-found', `Headscale has no pending registration for this key (${message}); the key is unknown, expired or already used`);
    }
    if (/auth id|invalid prefix|invalid length|registration id/i.test(message)) throw new RegistrarError('bad-key', `key: Headscale rejected it (${message})`);
    if (/user not found/i.test(message)) throw new RegistrarError('upstream', `Headscale has no user named ${JSON.stringify(this.cfg.user)} (HEADSCALE_USER)`);
    throw this.upstreamError(answer, 'approving the device');
  }

  private legacyRegister(key: string): Promise<ApiAnswer> {
    const query = new URLSearchParams({ user: this.cfg.user, key });
    return this.call('POST', `/api/v1/node/register?${query.toString()}`);
  }

  private upstreamError(answer: ApiAnswer, doing: string): RegistrarError {
    if (answer.status === 401 || answer.status === 403) {
      return new RegistrarError('upstream', `Headscale refused our API key while ${doing} (HTTP ${answer.status}); check HEADSCALE_API_KEY`);
    }
    const detail = answer.json?.message ?? answer.text.trim().slice(0, 200);
    return new RegistrarError('upstream', `Headscale answered HTTP ${answer.status} while ${doing}: ${detail || 'no detail'}`);
  }

  private async call(method: 'POST' | 'DELETE', path: string, body?: unknown): Promise<ApiAnswer> {
    const headers: Record<string, string> = { authorization: this.authHeader, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      const res = await request(`${this.cfg.url}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: this.cfg.timeoutMs,
        bodyTimeout: this.cfg.timeoutMs,
        signal: AbortSignal.timeout(this.cfg.timeoutMs),
      });
      const text = await res.body.text();
      let json: ApiAnswer['json'];
      try {
        json = text.startsWith('{') ? (JSON.parse(text) as ApiAnswer['json']) : undefined;
      } catch {
        json = undefined;
      }
      return { status: res.statusCode, json, text };
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.name === 'TimeoutError' || e.name === 'AbortError' ? `no answer within ${this.cfg.timeoutMs} ms` : (e.code ?? e.message);
      throw new RegistrarError('unreachable', `Headscale at ${this.cfg.url} is unreachable: ${why}`);
    }
  }
}

function toApproved(node: HeadscaleNode): ApprovedDevice {
  const ips = node.ipAddresses ?? [];
  const ipv4 = ips.find((ip) => ip.includes('.'));
  if (node.id === undefined || ipv4 === undefined) {
    throw new RegistrarError('upstream', 'Headscale approved the device but returned no node id or IPv4 address');
  }
  return {
    headscaleNodeId: String(node.id),
    name: node.givenName || node.name || `node-${node.id}`,
    ipv4,
    ipv6: ips.find((ip) => ip.includes(':')) ?? null,
  };
}
