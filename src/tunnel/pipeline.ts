// The one pipeline every tunnel passes, whatever front end decoded it:
//   authenticate → register (so a revocation finds it) → admit → connect the device → relay → account → unregister
// Front ends (proxy/) only decode and encode their protocol and call these stages: none of them dials, counts, logs a
// failure or registers a tunnel itself. The plain-HTTP forwarder, whose requests ride an HTTP client instead of the
// relay, uses the same stages one by one.
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { asDialError, DialError } from '../core/failure.js';
import type { DeviceRoute } from '../core/route.js';
import { NO_PARAMS, type ProxyUserParams } from '../protocol/proxy-user.js';
import { isPoolRoute, type KeyRoute, type RoutedDevice, type PoolRoute, type RouteResolver } from './routes.js';
import { failureScope, type DeviceState, type FailureScope } from './device-health.js';
import { fitsFilters, MAX_FAILOVERS, type DeviceSelector, type Selection } from './select.js';
import type { Target } from '../core/target.js';
import { StoreUnavailableError } from '../store/breaker.js';
import { authenticate, type AuthOutcome } from './auth.js';
import { throttleUnit, type AuthThrottle } from './auth-throttle.js';
import type { DeviceConnector } from './connector.js';
import { ListenerContext, type ListenerParts } from './listener.js';
import type { ListenerName } from './metrics.js';
import type { Refusal } from './refusal.js';
import { startRelay } from './relay.js';

export type { Refusal };

/**
 * Decides whether a tunnel may start, after its key is known and before any device is dialled (limits and quotas
 * plug in here). Synchronous on purpose: it runs for every tunnel and must answer from memory.
 */
export interface AdmissionPolicy {
  /** null to admit. */
  admit(route: KeyRoute, listener: ListenerName): Refusal | null;
}

export interface PipelineDeps extends ListenerParts {
  resolver: RouteResolver;
  connector: DeviceConnector;
  /** Checked in order; the first refusal wins. None: every authenticated tunnel is admitted. */
  admission?: readonly AdmissionPolicy[];
  /** Chooses a pool key's device per connection (with `board`); absent: pool keys are not routed. */
  selector?: DeviceSelector | undefined;
  /** Limits credential failures per client address; absent: not limited (TAILGATE_AUTH_FAILURES_PER_MINUTE=0). */
  authThrottle?: AuthThrottle | undefined;
}

/** A connection's key, and what its user name asked for beyond the key. */
export interface Authenticated {
  ok: true;
  route: KeyRoute;
  params: ProxyUserParams;
}

export type Authentication =
  | Authenticated
  /**
   * `storeDown`: the key could not be looked up (not the client's fault); otherwise the credentials are wrong, and
   * `parameter` (a fixed text naming the parameter) says when it was the user name's parameters that were.
   * `throttled`: the client's address failed too often and is cooling down; nothing was checked or looked up.
   */
  | { ok: false; storeDown: boolean; parameter: string | undefined; throttled?: Refusal };

const WRONG_CREDENTIALS: Authentication = Object.freeze({ ok: false, storeDown: false, parameter: undefined });
const STORE_DOWN: Authentication = Object.freeze({ ok: false, storeDown: true, parameter: undefined });

/**
 * How a front end answers the outcome of connect(). One object per listener; `session` is the front end's own state
 * for the connection (the socket itself, or its protocol session), so no closure is made per tunnel.
 */
export interface TunnelAnswers<S> {
  /** The device accepted the onward connection: send the success reply (the client is still there). */
  established(session: S): void;
  /** An admission policy refused the tunnel. */
  refused(session: S, refusal: Refusal): void;
  /** The onward connection could not be made (already counted and logged). */
  failed(session: S, err: DialError): void;
}

export class TunnelPipeline {
  private readonly admission: readonly AdmissionPolicy[];

  constructor(private readonly deps: PipelineDeps) {
    this.admission = deps.admission ?? [];
  }

  get connector(): DeviceConnector {
    return this.deps.connector;
  }

  /** The context a front end keeps for its listener. */
  listener(name: ListenerName): ListenerContext {
    return new ListenerContext(this.deps, name);
  }

  /**
   * Stage 1. Wrong credentials are counted; a key store failure is logged. `address`: the client's, for the
   * brute-force throttle, which refuses an address cooling down before anything else happens.
   */
  authenticate(ctx: ListenerContext, username: Buffer, password: Buffer, address: string | undefined): Authentication | Promise<Authentication> {
    const throttle = this.deps.authThrottle;
    const unit = throttle === undefined || address === undefined ? undefined : throttleUnit(address);
    if (unit !== undefined) {
      const throttled = throttle!.refusal(unit);
      if (throttled !== null) {
        ctx.authThrottled.inc();
        return { ok: false, storeDown: false, parameter: undefined, throttled };
      }
    }
    const outcome = authenticate(this.deps.resolver, username, password);
    const given = username.length > 0 || password.length > 0;
    // A key not in the resolver's cache waits for the store; a cached one is judged now, with no promise.
    return outcome instanceof Promise ? outcome.then((o) => this.judged(ctx, o, unit, given)) : this.judged(ctx, outcome, unit, given);
  }

  /** authenticate()'s verdict on an outcome; `given`: whether the client sent any credentials. */
  private judged(ctx: ListenerContext, outcome: AuthOutcome, unit: string | undefined, given: boolean): Authentication {
    const throttle = this.deps.authThrottle;
    if (outcome.ok) return outcome;
    if (outcome.error) {
      // While the database is known to be down the breaker has said so once; a line per refused client would let
      // anyone flood the log with made-up keys.
      if (outcome.cause instanceof StoreUnavailableError) this.deps.log.debug({ err: outcome.cause.message, listener: ctx.listener }, 'key lookup refused: database unavailable');
      else this.deps.log.error({ err: outcome.cause, listener: ctx.listener }, 'key lookup failed');
      return STORE_DOWN;
    }
    ctx.authFailures.inc();
    // A request without credentials is not a guess (browsers send one before answering the 407 challenge), and
    // refused parameters are judged without a lookup and tell nothing about the key: neither counts towards the limit.
    if (unit !== undefined && outcome.parameter === undefined && given) throttle!.failed(unit);
    if (outcome.parameter === undefined) return WRONG_CREDENTIALS;
    this.deps.log.info({ listener: ctx.listener, reason: 'user-parameter', detail: outcome.parameter }, 'user name parameters refused');
    return { ok: false, storeDown: false, parameter: outcome.parameter };
  }

  /**
   * Stage 3, alone (the forwarder admits each request). null: admitted, and an admitted tunnel or request of a key with
   * limits holds a place in them until release() (the relay releases the tunnels it carries).
   */
  admit(ctx: ListenerContext, route: KeyRoute): Refusal | null | Promise<Refusal | null> {
    const gate = route.gate;
    if (gate !== null) {
      const refusal = gate.admit();
      // Only a key with maxTunnels or tunnelsPerSecond in a gateway with worker processes waits here (the count is
      // kept by the primary).
      if (refusal instanceof Promise) return refusal.then((r) => this.admitted(ctx, route, r));
      if (refusal !== null) {
        this.deps.usage?.refused(route.keyId);
        return refusal;
      }
    }
    return this.policies(ctx, route);
  }

  private admitted(ctx: ListenerContext, route: KeyRoute, refusal: Refusal | null): Refusal | null {
    if (refusal === null) return this.policies(ctx, route);
    this.deps.usage?.refused(route.keyId);
    return refusal;
  }

  private policies(ctx: ListenerContext, route: KeyRoute): Refusal | null {
    const gate = route.gate;
    if (this.admission.length === 0) return null;
    for (const policy of this.admission) {
      const refusal = policy.admit(route, ctx.listener);
      if (refusal !== null) {
        gate?.release();
        this.deps.usage?.refused(route.keyId);
        return refusal;
      }
    }
    return null;
  }

  /** The end of what admit() let in, when no relay carried it (a failed dial, a forwarded request). */
  release(route: KeyRoute): void {
    route.gate?.release();
  }

  /**
   * Stages 2 to 7 for a tunnel: registers the client under its key before the dial (so revoking the key meanwhile
   * cuts it and the tunnel never starts), admits it, connects the device, lets the front end answer, and relays until
   * both sides are closed, counting bytes and unregistering at the end. `pending`: bytes the client sent after its
   * request, for the device first. Never rejects.
   */
  async connect<S>(ctx: ListenerContext, answers: TunnelAnswers<S>, session: S, client: Socket, auth: Authenticated, target: Target, pending: Buffer | null): Promise<void> {
    const setupStartedAt = performance.now();
    const key = auth.route;
    const { tunnels } = this.deps;
    tunnels.add(key.keyHash, client);
    let refusal = key.gate === null && this.admission.length === 0 ? null : this.admit(ctx, key);
    if (refusal instanceof Promise) refusal = await refusal;
    if (refusal !== null) {
      tunnels.remove(key.keyHash, client);
      answers.refused(session, refusal);
      return;
    }
    const opened = await this.open(ctx, key, auth.params, target);
    if (opened instanceof DialError) {
      tunnels.remove(key.keyHash, client);
      key.gate?.release();
      answers.failed(session, opened);
      return;
    }
    const { route, device, upstream } = opened;
    if (client.destroyed) {
      tunnels.remove(key.keyHash, client);
      key.gate?.release();
      upstream.destroy();
      return;
    }
    answers.established(session);
    // From here the relay releases the key's gate, exactly once, when the tunnel ends (or at once if it cannot start).
    startRelay(ctx, route, client, upstream, pending, setupStartedAt, device, key.gate);
  }

  /**
   * Stage 4: the device for this connection, or why there is none (already counted and logged): a device key's own
   * device when it passes the user name's filters, a pool key's choice. The plain-HTTP forwarder calls it per request.
   */
  choose(ctx: ListenerContext, key: KeyRoute, params: ProxyUserParams): RoutedDevice | DialError {
    if (!isPoolRoute(key)) {
      if (params === NO_PARAMS || fitsFilters(key, params.country, params.device)) return key;
      return this.noDevice(ctx, 'no_device', key.keyId, 1);
    }
    const { selector } = this.deps;
    const choice = selector === undefined ? 'no_device' : selector.choose(key.set, selectionOf(key, params));
    if (typeof choice !== 'string') return choice;
    return this.noDevice(ctx, choice, key.keyId, key.set.devices.length);
  }

  private noDevice(ctx: ListenerContext, reason: 'no_device' | 'session_device_down', keyId: number, devices: number): DialError {
    const err = new DialError(reason, reason === 'no_device' ? `key ${keyId}: none of its ${devices} device(s) is eligible` : `key ${keyId}: the session's device is down`);
    this.deps.log.info({ listener: ctx.listener, keyId, reason }, 'no device for the connection');
    this.deps.metrics.dialError(reason);
    this.deps.usage?.failed(keyId, 0);
    return err;
  }

  /** A connection through a device worked: its breaker closes and its failures are forgotten. */
  succeeded(device: RoutedDevice): DeviceState | undefined {
    const board = this.deps.board;
    if (board === undefined) return undefined;
    const state = board.state(device.id);
    board.succeeded(state);
    return state;
  }

  /** A connection through a device failed: counted against it when the failure is the device's own. */
  failed(device: RoutedDevice, err: DialError): FailureScope {
    const board = this.deps.board;
    return board === undefined ? failureScope(err.reason, err.dialed) : board.failed(board.state(device.id), err.reason, err.dialed);
  }

  /**
   * Stages 4 and 5: the device key's one device, or for a pool key a chosen one; connected, and for a pool key after a
   * device-level failure (the device offline, unreachable, refusing or silent before we reached it) the next one, at
   * most MAX_FAILOVERS more, all within the one connect timeout. A failure the device reports about the destination is
   * answered as it is, never retried. Every failure is counted and logged here, and every outcome reaches the device's
   * health, whichever kind of key it came through.
   */
  private async open(ctx: ListenerContext, key: KeyRoute, params: ProxyUserParams, target: Target): Promise<{ route: RoutedDevice; device: DeviceState | undefined; upstream: Socket } | DialError> {
    const chosen = this.choose(ctx, key, params);
    if (chosen instanceof DialError) return chosen;
    if (!isPoolRoute(key)) {
      try {
        const upstream = await this.deps.connector.open(chosen, target);
        return { route: chosen, device: this.succeeded(chosen), upstream };
      } catch (err) {
        const e = asDialError(err);
        ctx.dialFailed(chosen, e);
        this.failed(chosen, e);
        return e;
      }
    }
    const deadline = performance.now() + this.deps.connector.connectTimeoutMs;
    // How many devices this connection may be tried on (a strict session: its own only).
    const movable = params.strict ? 1 : key.set.narrow(params.country, params.device).size;
    const tried: RoutedDevice[] = [];
    let member = chosen;
    for (;;) {
      tried.push(member);
      // While another device may follow, the dial gets half of what is left: a device that died silently (the tailnet
      // still calling it online) would otherwise use up the connect timeout and leave the next device none.
      const budget = tried.length <= MAX_FAILOVERS && tried.length < movable ? Math.ceil((deadline - performance.now()) / 2) : undefined;
      try {
        const upstream = await this.deps.connector.open(member, target, deadline, budget);
        return { route: member, device: this.succeeded(member), upstream };
      } catch (err) {
        const e = asDialError(err);
        ctx.dialFailed(member, e);
        const next = this.retry(key, params, tried, e, deadline);
        if (next instanceof DialError) return next;
        member = next;
      }
    }
  }

  /**
   * After `err` on a connection through the last device in `tried`, before anything reached the client: records the
   * failure against that device and says what to do next, the device to try instead or the error to answer with. Only
   * a pool key's device-level failures fail over, at most MAX_FAILOVERS times and only before `deadline`; a strict
   * session's device failing is the session's answer, whatever the cause. Used by open() and by the forwarder.
   */
  retry(key: KeyRoute, params: ProxyUserParams, tried: readonly RoutedDevice[], err: DialError, deadline: number): RoutedDevice | DialError {
    if (this.failed(tried[tried.length - 1]!, err) !== 'device' || !isPoolRoute(key)) return err;
    if (params.strict) return new DialError('session_device_down', `key ${key.keyId}: the session's device failed (${err.reason})`);
    if (performance.now() >= deadline) return err;
    const next = this.deps.selector?.failover(key.set, selectionOf(key, params), tried);
    if (next === undefined || next === null) return err;
    this.deps.metrics.failovers.inc();
    return next;
  }
}

/** What the chooser is asked for one connection of a pool key; the key's shared one when the user name has no parameters. */
function selectionOf(key: PoolRoute, params: ProxyUserParams): Selection {
  if (params === NO_PARAMS) return key.plain;
  return { keyId: key.keyId, session: params.session, sessTimeMin: params.sessionIdleMinutes, strict: params.strict, country: params.country, device: params.device };
}
