// What the commands print: aligned tables and "field: value" blocks for people, the API's JSON as it came for
// scripts (--json).
import type { Command } from 'commander';

export interface Column<T> {
  header: string;
  value(row: T): string;
  /** Numbers read best right-aligned. */
  right?: boolean;
}

const width = (text: string) => [...text].length;

/** Columns two spaces apart, each as wide as its widest cell; no trailing blanks. */
export function table<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = [columns.map((c) => c.header), ...rows.map((row) => columns.map((c) => c.value(row).replace(/\s+/g, ' ')))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => width(line[i]!))));
  const lines = cells.map((line) =>
    line
      .map((cell, i) => {
        const pad = ' '.repeat(widths[i]! - width(cell));
        return columns[i]!.right ? pad + cell : cell + pad;
      })
      .join('  ')
      .trimEnd(),
  );
  return `${lines.join('\n')}\n`;
}

/** One record as "name: value" lines, the names padded to one width. */
export function fields(pairs: readonly (readonly [string, string])[]): string {
  const w = Math.max(...pairs.map(([name]) => width(name)));
  return pairs.map(([name, value]) => `${`${name}:`.padEnd(w + 1)} ${value}`).join('\n') + '\n';
}

/** "k=v,k2=v2", or a dash for none. */
export function formatLabels(labels: Record<string, string> | null | undefined): string {
  const pairs = Object.entries(labels ?? {});
  return pairs.length === 0 ? '-' : pairs.map(([k, v]) => `${k}=${v}`).join(',');
}

/** Adds --json to a command that prints an API answer. */
export function withJson(command: Command): Command {
  return command.option('--json', "print the API's JSON answer instead of a table");
}

/** The API's answer as JSON under --json, else what `render` makes of it. */
export function emit<T>(command: Command, answer: T, render: (answer: T) => string): void {
  process.stdout.write(command.opts<{ json?: boolean }>().json ? `${JSON.stringify(answer, null, 2)}\n` : render(answer));
}
