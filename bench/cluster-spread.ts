// How evenly node:cluster spreads connections over worker processes on this machine, by scheduling policy:
// SCHED_RR (the primary accepts and hands each connection to the next worker) or SCHED_NONE (every worker accepts
// on the shared socket; the kernel picks).
// Run: node --import tsx bench/cluster-spread.ts [workers] [connections] [clients at once, default 50]
// Prints one line per policy: the connections each worker took. Used for the choice in README "Worker processes".
import cluster from 'node:cluster';
import net from 'node:net';

const workers = Number(process.argv[2] ?? 2);
const connections = Number(process.argv[3] ?? 2000);
const lanes = Number(process.argv[4] ?? 50);

if (cluster.isWorker) {
  let n = 0;
  const server = net.createServer((s) => {
    n++;
    // A little work per connection, as a proxy handshake would do, so a worker is busy for a moment.
    s.end(`${cluster.worker!.id}\n`);
  });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as net.AddressInfo).port }));
  process.on('message', (m) => {
    if (m === 'count') process.send!({ count: n });
  });
} else {
  const policy = process.env.SPREAD_POLICY === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR;
  if (process.env.SPREAD_POLICY === undefined) {
    // Parent: run each policy in a child of its own (the policy is fixed once the first worker forks).
    const { execFileSync } = await import('node:child_process');
    for (const p of ['rr', 'none']) {
      const out = execFileSync(process.execPath, [...process.execArgv, process.argv[1]!, String(workers), String(connections), String(lanes)], { env: { ...process.env, SPREAD_POLICY: p } });
      process.stdout.write(out);
    }
  } else {
    cluster.schedulingPolicy = policy;
    const forks = Array.from({ length: workers }, () => cluster.fork());
    const ports = await Promise.all(forks.map((w) => new Promise<number>((r) => w.once('message', (m: { port: number }) => r(m.port)))));
    const port = ports[0]!;
    // `lanes` at a time, like clients arriving together (1: one after another).
    let next = 0;
    const one = () =>
      new Promise<void>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        s.on('data', () => {});
        s.on('end', () => resolve());
        s.on('error', reject);
      });
    const lane = async () => {
      while (next < connections) {
        next++;
        await one();
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: lanes }, lane));
    const ms = performance.now() - started;
    const counts = await Promise.all(
      forks.map((w) => new Promise<number>((r) => { w.once('message', (m: { count: number }) => r(m.count)); w.send('count'); })),
    );
    process.stdout.write(`${process.env.SPREAD_POLICY === 'rr' ? 'SCHED_RR  ' : 'SCHED_NONE'} workers=${workers} connections=${connections} at once=${lanes} per worker: ${counts.join(' / ')} (${ms.toFixed(0)} ms)\n`);
    for (const w of forks) w.kill();
  }
}
