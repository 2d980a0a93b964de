// tailgate devices: the egress devices as GET /devices shows them, and changes through PATCH and DELETE /devices/:id.
import { Option, type Command } from 'commander';
import { clientFor } from './api-client.js';
import { addListAndShow, addRemove, itemPath, type Resource } from './resource.js';
import { emit, fields, formatLabels, withJson, type Column } from './table.js';
import { collect, formatTime, labelPair, wholeNumber } from './units.js';

export interface DeviceView {
  id: number;
  name: string | null;
  ip: string;
  ipv6: string | null;
  port: number;
  protocol: string;
  labels: Record<string, string>;
  headscaleNodeId: number | null;
  enabled: boolean;
  online: boolean | null;
  health: { state: string; reason: string | null; since: string | null };
  openTunnels: number;
  lastHandshake: string | null;
  relayed: boolean | null;
  createdAt: string;
  updatedAt: string;
}

const yesNo = (v: boolean | null) => (v === null ? '-' : v ? 'yes' : 'no');
const health = (d: DeviceView) => `${d.health.state}${d.health.reason === null ? '' : ` (${d.health.reason})`}`;
const address = (d: DeviceView) => `${d.ip.includes(':') ? `[${d.ip}]` : d.ip}:${d.port}`;

export const DEVICE_COLUMNS: Column<DeviceView>[] = [
  { header: 'ID', value: (d) => String(d.id), right: true },
  { header: 'NAME', value: (d) => d.name ?? '-' },
  { header: 'ADDRESS', value: address },
  { header: 'PROTO', value: (d) => d.protocol },
  { header: 'ONLINE', value: (d) => yesNo(d.online) },
  { header: 'HEALTH', value: health },
  { header: 'RELAYED', value: (d) => yesNo(d.relayed) },
  { header: 'TUNNELS', value: (d) => String(d.openTunnels), right: true },
  { header: 'LABELS', value: (d) => formatLabels(d.labels) },
];

export function renderDevice(d: DeviceView): string {
  return fields([
    ['id', String(d.id)],
    ['name', d.name ?? '-'],
    ['address', `${address(d)} (${d.protocol})`],
    ['ipv6', d.ipv6 ?? '-'],
    ['enabled', yesNo(d.enabled)],
    ['online', yesNo(d.online)],
    ['health', `${health(d)}${d.health.since === null ? '' : ` since ${formatTime(d.health.since)}`}`],
    ['relayed', yesNo(d.relayed)],
    ['last handshake', formatTime(d.lastHandshake)],
    ['open tunnels', String(d.openTunnels)],
    ['labels', formatLabels(d.labels)],
    ['headscale node', d.headscaleNodeId === null ? '-' : String(d.headscaleNodeId)],
    ['created', formatTime(d.createdAt)],
    ['updated', formatTime(d.updatedAt)],
  ]);
}

const DEVICES: Resource<DeviceView, DeviceView> = { noun: 'device', path: '/devices', columns: DEVICE_COLUMNS, render: renderDevice };

interface EditOptions {
  name?: string;
  label?: [string, string][];
  unlabel?: string[];
  enable?: boolean;
  disable?: boolean;
  port?: number;
  protocol?: string;
}

export function addDevicesCommand(program: Command): void {
  const devices = program
    .command('devices')
    .description('list, show, change and delete egress devices (ls when no subcommand is given)');

  addListAndShow(devices, DEVICES, { ls: 'every device: address, online, health, relayed, open tunnels, labels', show: 'one device with every field' });

  withJson(
    devices
      .command('edit')
      .description("change a device's name, labels, proxy port or protocol, or switch it off and on")
      .argument('<id>', 'device id')
      .option('--name <name>', 'a new name')
      .option('--label <name=value>', 'set a label (repeatable)', (text: string, previous: [string, string][] = []) => [...previous, labelPair(text)])
      .option('--unlabel <name>', 'remove a label (repeatable)', collect)
      .addOption(new Option('--enable', 'let it carry traffic again').conflicts('disable'))
      .addOption(new Option('--disable', "stop routing through it; cuts the open tunnels of keys that target it directly"))
      .option('--port <port>', "the device proxy's port", wholeNumber(1, 65535))
      .addOption(new Option('--protocol <protocol>', "the device proxy's protocol").choices(['http', 'socks5'])),
  ).action(async (id: string, options: EditOptions, command: Command) => {
    const api = clientFor(command);
    const patch: Record<string, unknown> = {};
    if (options.name !== undefined) patch.name = options.name;
    if (options.port !== undefined) patch.port = options.port;
    if (options.protocol !== undefined) patch.protocol = options.protocol;
    if (options.enable || options.disable) patch.enabled = options.enable === true;
    if (options.label !== undefined || options.unlabel !== undefined) {
      // The API replaces the label map whole; start from the stored one so other labels stay.
      const labels = { ...(await api.get<DeviceView>(itemPath(DEVICES, id))).labels };
      for (const name of options.unlabel ?? []) delete labels[name];
      for (const [name, value] of options.label ?? []) labels[name] = value;
      patch.labels = labels;
    }
    if (Object.keys(patch).length === 0) command.error('error: nothing to change: give --name, --label, --unlabel, --enable, --disable, --port or --protocol');
    emit(command, await api.call<DeviceView>('PATCH', itemPath(DEVICES, id), patch), renderDevice);
  });

  addRemove(devices, DEVICES, 'delete a device and the keys that target it directly, cutting their tunnels', (options) => (options.purge ? '?purge=true' : '')).option(
    '--purge',
    'also delete the node in Headscale (first; a Headscale failure changes nothing)',
  );
}
