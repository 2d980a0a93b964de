// Loaded into every test file's process by `npm test` (--import): once the file's tests and hooks are done, something
// still holding the process open (a client reconnecting for ever, a server never closed) fails the file with the
// list of what is open, instead of holding the whole run until CI's time runs out.
import { after } from 'node:test';

/** Long enough for any file's own closing hooks (they are bounded themselves). */
const GRACE_MS = Number(process.env.TAILGATE_TEST_EXIT_GRACE_MS ?? 120_000);

// Only in a file's process: the runner's own process has no tests of its own.
if (process.env.NODE_TEST_CONTEXT !== undefined) {
  after(() => {
    const timer = setTimeout(() => {
      process.stderr.write(
        `\nthis test file's process is still running ${GRACE_MS} ms after its tests ended; still open: ${process.getActiveResourcesInfo().join(', ')}\n`,
      );
      process.exit(1);
    }, GRACE_MS);
    timer.unref();
  });
}
