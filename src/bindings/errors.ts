// Why a binding could not be changed, in the binding service's terms. Only the API turns these into HTTP
// statuses; the messages already name the input at fault ("ip: ...", "id: ...") because they reach operators as is.
import type { RegistrarFailure } from '../headscale/types.js';

export type BindingFailure =
  /** No binding has that id. */
  | 'not-found'
  /** The address given is not an IP address. */
  | 'invalid-address'
  /** The address is outside the ranges devices may be registered in. */
  | 'address-not-allowed'
  /** No address was given and there is no Headscale to approve the device through. */
  | 'address-required'
  /** A purge was asked for, but there is no Headscale to delete the node in. */
  | 'purge-unavailable'
  /** A field is malformed or fields contradict each other (a pool with both devices and a selector). */
  | 'invalid'
  /** A field names a device or pool that does not exist. */
  | 'unknown-reference'
  /** The change clashes with what exists: a name or key in use, a pool that keys still target. */
  | 'conflict'
  /** Headscale refused or failed; `registrarFailure` says how. */
  | 'registrar';

export class BindingError extends Error {
  readonly registrarFailure: RegistrarFailure | undefined;

  constructor(
    readonly kind: BindingFailure,
    message: string,
    opts: { registrarFailure?: RegistrarFailure; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'BindingError';
    this.registrarFailure = opts.registrarFailure;
  }
}
