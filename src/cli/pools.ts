// tailgate pools: sets of devices a key can egress through, listed explicitly or chosen by labels (/pools).
import { InvalidArgumentError, Option, type Command } from 'commander';
import { clientFor } from './api-client.js';
import { DEVICE_COLUMNS, type DeviceView } from './devices.js';
import { addListAndShow, addRemove, itemPath, type Resource } from './resource.js';
import { emit, fields, formatLabels, table, withJson, type Column } from './table.js';
import { formatTime, labelMap } from './units.js';

interface PoolView {
  id: number;
  name: string;
  devices: number[];
  selector: Record<string, string> | null;
  createdAt: string;
  updatedAt: string;
}

type PoolWithMembers = PoolView & { members: DeviceView[] };

const membership = (p: PoolView) => (p.selector === null ? `devices ${p.devices.join(',') || '-'}` : `labels ${formatLabels(p.selector)}`);

const POOL_COLUMNS: Column<PoolView>[] = [
  { header: 'ID', value: (p) => String(p.id), right: true },
  { header: 'NAME', value: (p) => p.name },
  { header: 'MEMBERS', value: membership },
  { header: 'CREATED', value: (p) => formatTime(p.createdAt) },
];

function renderPool(p: PoolView | PoolWithMembers): string {
  const head = fields([
    ['id', String(p.id)],
    ['name', p.name],
    ['members', membership(p)],
    ['created', formatTime(p.createdAt)],
    ['updated', formatTime(p.updatedAt)],
  ]);
  return 'members' in p ? `${head}\n${table(p.members, DEVICE_COLUMNS)}` : head;
}

/** "1,2,3" (or repeated) into device ids. */
function deviceIds(text: string, previous: number[] = []): number[] {
  const ids = text.split(',').filter((part) => part.trim() !== '').map(Number);
  if (ids.length === 0 || ids.some((id) => !Number.isSafeInteger(id) || id < 1)) throw new InvalidArgumentError('expected device ids such as 1,2,3');
  return [...previous, ...ids];
}

/** --devices and --selector, as the pool body's devices or selector. */
function addMemberOptions(command: Command): Command {
  return command
    .addOption(new Option('--devices <ids>', 'the devices, listed: 1,2,3 (repeatable)').argParser(deviceIds).conflicts('selector'))
    .option('--selector <name=value,...>', 'every device whose labels include all of these, now and later (repeatable)', (text: string, previous: Record<string, string> = {}) => ({
      ...previous,
      ...labelMap([text]),
    }));
}

function membersFrom(options: { devices?: number[]; selector?: Record<string, string> }): Record<string, unknown> {
  if (options.devices !== undefined) return { devices: options.devices };
  if (options.selector !== undefined) return { selector: options.selector };
  return {};
}

const POOLS: Resource<PoolView, PoolWithMembers> = { noun: 'pool', path: '/pools', columns: POOL_COLUMNS, render: renderPool };

export function addPoolsCommand(program: Command): void {
  const pools = program
    .command('pools')
    .description('list, show, create, change and delete device pools (ls when no subcommand is given)');

  addListAndShow(pools, POOLS, { ls: 'every pool and how its members are chosen', show: 'one pool with the devices in it now' });

  withJson(
    addMemberOptions(
      pools
        .command('create')
        .description('create a pool of listed devices (--devices) or of every device with some labels (--selector)')
        .argument('<name>', 'the pool name'),
    ),
  ).action(async (name: string, options: { devices?: number[]; selector?: Record<string, string> }, command: Command) => {
    const members = membersFrom(options);
    if (Object.keys(members).length === 0) command.error('error: give --devices <ids> or --selector <name=value,...>');
    emit(command, await clientFor(command).call<PoolView>('POST', '/pools', { name, ...members }), (p) => `created pool ${p.id}\n${renderPool(p)}`);
  });

  withJson(
    addMemberOptions(pools.command('edit').description("rename a pool or change its members (keys follow from the next connection on)").argument('<id>', 'pool id')).option(
      '--name <name>',
      'a new name',
    ),
  ).action(async (id: string, options: { devices?: number[]; selector?: Record<string, string>; name?: string }, command: Command) => {
    const patch = { ...(options.name === undefined ? {} : { name: options.name }), ...membersFrom(options) };
    if (Object.keys(patch).length === 0) command.error('error: nothing to change: give --name, --devices or --selector');
    emit(command, await clientFor(command).call<PoolView>('PATCH', itemPath(POOLS, id), patch), renderPool);
  });

  addRemove(pools, POOLS, 'delete a pool (refused while keys target it)');
}
