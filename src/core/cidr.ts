import { BlockList, isIP } from 'node:net';

export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

export function parseCidr(text: string): Cidr {
  const [address, prefixText, extra] = text.trim().split('/');
  const version = isIP(address ?? '');
  if (!address || version === 0 || extra !== undefined) throw new Error(`${JSON.stringify(text)} is not a CIDR (want address/prefix)`);
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (prefixText !== undefined && !/^\d+$/.test(prefixText))) {
    throw new Error(`${JSON.stringify(text)} has a bad prefix length (0..${max})`);
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

export function parseCidrList(text: string): Cidr[] {
  const parts = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new Error('empty list');
  return parts.map(parseCidr);
}

/** Answers whether a device address may be routed to; built once, asked on every registration. */
export class AddressAllowList {
  private readonly list = new BlockList();
  constructor(readonly cidrs: readonly Cidr[]) {
    for (const c of cidrs) this.list.addSubnet(c.address, c.prefix, c.family);
  }

  allows(ip: string): boolean {
    const version = isIP(ip);
    if (version === 0) return false;
    return this.list.check(ip, version === 4 ? 'ipv4' : 'ipv6');
  }

  toString(): string {
    return this.cidrs.map((c) => `${c.address}/${c.prefix}`).join(',');
  }
}
