// What the devices, keys and pools groups share: `ls` (the group's default), `show <id>` and `rm <id>`, each one
// API call whose answer is printed as a table, a record or the API's message (or as JSON).
import type { Command } from 'commander';
import { clientFor } from './api-client.js';
import { emit, table, withJson, type Column } from './table.js';

export interface Resource<Item, Shown> {
  /** The word for one ("device"), as the id arguments name it. */
  noun: string;
  /** The collection's route ("/devices"). */
  path: string;
  columns: Column<Item>[];
  render(item: Shown): string;
}

export const itemPath = (resource: { path: string }, id: string) => `${resource.path}/${encodeURIComponent(id)}`;

export function addListAndShow<Item, Shown>(group: Command, resource: Resource<Item, Shown>, descriptions: { ls: string; show: string }): void {
  withJson(group.command('ls', { isDefault: true }).description(descriptions.ls)).action(async (_options, command: Command) => {
    emit(command, await clientFor(command).get<Item[]>(resource.path), (list) => table(list, resource.columns));
  });
  withJson(group.command('show').description(descriptions.show).argument('<id>', `${resource.noun} id (${group.name()} ls)`)).action(
    async (id: string, _options, command: Command) => {
      emit(command, await clientFor(command).get<Shown>(itemPath(resource, id)), resource.render);
    },
  );
}

/** `rm <id>`: DELETE, then the API's message. `query` adds to the route what the command's options ask for. */
export function addRemove(
  group: Command,
  resource: { noun: string; path: string },
  description: string,
  query: (options: Record<string, unknown>) => string = () => '',
): Command {
  const rm = withJson(group.command('rm').description(description).argument('<id>', `${resource.noun} id`));
  rm.action(async (id: string, options: Record<string, unknown>, command: Command) => {
    const answer = await clientFor(command).call<{ message: string }>('DELETE', `${itemPath(resource, id)}${query(options)}`);
    emit(command, answer, (a) => `${a.message}\n`);
  });
  return rm;
}
