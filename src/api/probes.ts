// What orchestrators and Prometheus poll: liveness, readiness and metrics.
import type { FastifyPluginAsync } from 'fastify';
import type { Metrics } from '../tunnel/metrics.js';
import type { NodeStore } from '../store/types.js';
import type { TailnetView } from '../tailnet/types.js';
import type { TokenGate } from './auth.js';
import { AUTH_ERRORS, HEALTH, errorResponses, type FromSchema, type READINESS } from './schemas.js';

export type ReadinessView = FromSchema<typeof READINESS>;

export interface ReadinessDeps {
  store: Pick<NodeStore, 'ping'>;
  /** True while both proxy listeners accept connections. */
  listening: () => boolean;
  tailnet?: TailnetView | undefined;
}

const READY_DB_TIMEOUT_MS = 2_000;

/** One part of readiness: whether it holds, and what /readyz says about it. */
interface Condition {
  ready: boolean;
  text: string;
}

/** Every condition of readiness, in one place: the database answers, both listeners accept, the tailnet is ready. */
export class Readiness {
  // One database probe at a time, however long it hangs: an orchestrator polling a stuck database must not
  // pile queries up behind it.
  private probe: Promise<string | null> | undefined;

  constructor(private readonly deps: ReadinessDeps) {}

  /** `detailed`: the caller may see why the database is down (addresses, errors). */
  async check(detailed: boolean): Promise<ReadinessView> {
    const database = await this.database(detailed);
    const listeners = this.listeners();
    const tailnet = this.tailnet();
    return {
      ready: database.ready && listeners.ready && tailnet.ready,
      database: database.text,
      listeners: listeners.text,
      tailnet: tailnet.text,
    };
  }

  private async database(detailed: boolean): Promise<Condition> {
    const problem = await this.databaseProblem();
    if (problem === null) return { ready: true, text: 'ok' };
    return { ready: false, text: detailed ? problem : problem.slice(0, problem.indexOf(':')) };
  }

  private listeners(): Condition {
    return this.deps.listening() ? { ready: true, text: 'ok' } : { ready: false, text: 'not listening' };
  }

  /** Without a supervised tailscaled (the host is on the tailnet itself) there is nothing to wait for. */
  private tailnet(): Condition {
    if (this.deps.tailnet === undefined) return { ready: true, text: 'not supervised' };
    const state = this.deps.tailnet.state();
    if (state.ready) return { ready: true, text: 'ok' };
    return { ready: false, text: state.running ? `starting (waiting for ${state.waitingFor ?? 'readiness'})` : `not running (${state.backendState})` };
  }

  /** null when the database answered, else "<word>: <why>". */
  private async databaseProblem(): Promise<string | null> {
    this.probe ??= this.deps.store
      .ping()
      .then(
        () => null,
        (err: Error) => `unreachable: ${err.message}`,
      )
      .finally(() => (this.probe = undefined));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`timeout: no answer within ${READY_DB_TIMEOUT_MS} ms`), READY_DB_TIMEOUT_MS);
    });
    try {
      return await Promise.race([this.probe, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface ProbeOptions {
  readiness: Readiness;
  metrics: Metrics;
  /** What /metrics answers, when it is more than this process's registry (the sum over worker processes). */
  exposition?: (() => Promise<string>) | undefined;
  gate: TokenGate;
}

export const probes: FastifyPluginAsync<ProbeOptions> = async (app, { readiness, metrics, exposition, gate }) => {
  app.get(
    '/healthz',
    {
      config: { access: 'open' },
      schema: { summary: 'Liveness: the process answers', response: { 200: { description: 'Alive', ...HEALTH }, ...errorResponses() } },
    },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      config: { access: 'open' },
      schema: {
        summary: 'Readiness: database, proxy listeners and tailnet',
        response: {
          200: { description: 'Ready', $ref: 'Readiness#' },
          503: { description: 'Not ready; the fields say what is not', $ref: 'Readiness#' },
          ...errorResponses(),
        },
      },
    },
    async (request, reply) => {
      // Open for orchestrators, but only an operator sees why the database is down (addresses, errors).
      const caller = gate.identify(request.headers.authorization);
      const answer = await readiness.check(caller === 'admin' || caller === 'local');
      return reply.code(answer.ready ? 200 : 503).send(answer);
    },
  );

  app.get(
    '/metrics',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Prometheus metrics',
        response: {
          200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } },
          ...errorResponses(...AUTH_ERRORS),
        },
      },
    },
    async (_request, reply) => {
      const text = await (exposition ?? (() => metrics.registry.metrics()))();
      return reply.type(metrics.registry.contentType).send(text);
    },
  );
};
