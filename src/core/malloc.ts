// glibc's malloc gives the free top of its heap back to the kernel once more than its trim threshold (128 KiB by
// default) is free there. A relay allocates a 64 KiB buffer for every read and frees them in batches when V8 collects
// them, so with the default the heap shrinks after each batch and the next reads fault fresh zeroed pages in again:
// that kernel time doubled the CPU a GiB costs (bench/README.md, "The malloc trim threshold"). A threshold above
// what one batch frees keeps those pages in the process.

/** The trim threshold tailgate runs with, in bytes; 16 MiB still showed the faults, 32 MiB did not. */
export const MALLOC_TRIM_THRESHOLD = 64 << 20;

const TUNABLE = 'glibc.malloc.trim_threshold';

/** GLIBC_TUNABLES with tailgate's trim threshold added, unless `current` sets one of its own (the operator's wins). */
export function glibcTunables(current: string | undefined): string {
  if (current === undefined || current === '') return `${TUNABLE}=${MALLOC_TRIM_THRESHOLD}`;
  if (setsTrimThreshold(current)) return current;
  return `${current}:${TUNABLE}=${MALLOC_TRIM_THRESHOLD}`;
}

/** Whether `tunables` (GLIBC_TUNABLES) sets a trim threshold. */
export function setsTrimThreshold(tunables: string | undefined): boolean {
  return tunables !== undefined && tunables.split(':').some((t) => t.startsWith(`${TUNABLE}=`));
}

let glibc: boolean | undefined;

/** Whether this process runs on glibc (the tunable means nothing to musl, as on Alpine). */
export function onGlibc(): boolean {
  if (glibc === undefined) {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    glibc = header?.glibcVersionRuntime !== undefined;
  }
  return glibc;
}
