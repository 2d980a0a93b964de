// How numbers, sizes and times read on the page.

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];

/** Bytes in decimal units, three significant digits: 1.23 MB. */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < UNITS.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toPrecision(3)} ${UNITS[i]}`;
}

export function rate(n) {
  return `${bytes(n)}/s`;
}

export function count(n) {
  return n === null || n === undefined ? '—' : n.toLocaleString('en');
}

/** "3 min ago", "2 h ago", or the date for older times; "—" for none. */
export function ago(iso) {
  if (!iso) return '—';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (s < 0) return `in ${duration(-s)}`;
  if (s < 5) return 'just now';
  if (s < 7 * 86400) return `${duration(s)} ago`;
  return when(iso);
}

function duration(s) {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** A time as UTC, the zone usage buckets use: 2026-05-01 14:03 UTC. */
export function when(iso) {
  if (!iso) return '—';
  return `${new Date(iso).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** `{country: 'de'}` → `country=de` */
export function labelText(labels) {
  return Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`);
}

/** One `key=value` a line (or separated by commas) → a label map; throws naming the bad line. */
export function parseLabels(text) {
  /** @type {Record<string, string>} */
  const out = {};
  for (const raw of text.split(/[\n,]/)) {
    const line = raw.trim();
    if (line === '') continue;
    const at = line.indexOf('=');
    if (at <= 0 || at === line.length - 1) throw new Error(`labels: "${line}" is not key=value`);
    out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

/** Midnight UTC today, as usage's day boundaries are. */
export function startOfTodayUtc() {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())).toISOString();
}

const SIZE_UNITS = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4 };

/** "10 GB", "512MiB", "1234" → bytes; throws naming the field. */
export function parseSize(text, field) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = SIZE_UNITS[(m?.[2] || 'b').toLowerCase()];
  if (!m || unit === undefined) throw new Error(`${field}: "${text}" is not a size (e.g. 10 GB, 512 MiB, 1000000)`);
  return Math.round(Number(m[1]) * unit);
}
