// Bearer-token access to the management API.
import { createHash, timingSafeEqual } from 'node:crypto';
import { ApiError } from './errors.js';

/** Who a route is for. "open": anyone (health probes); "enroll": admin or enrollment token; "admin": admin token. */
export type Access = 'open' | 'enroll' | 'admin';

/** Who made the request: "local" means no admin token is configured (the API then listens on loopback only). */
export type Caller = 'admin' | 'enroll' | 'local' | 'anonymous';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route; admin when not set. */
    access?: Access;
  }
  interface FastifyRequest {
    caller: Caller;
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

export class TokenGate {
  private readonly admin: Buffer | undefined;
  private readonly enroll: Buffer | undefined;

  constructor(adminToken: string | undefined, enrollToken: string | undefined) {
    this.admin = adminToken === undefined ? undefined : digest(adminToken);
    this.enroll = enrollToken === undefined ? undefined : digest(enrollToken);
  }

  /** Tokens are compared as SHA-256 digests: equal lengths for timingSafeEqual, and no leak of the token's length. */
  identify(authorization: string | undefined): Caller {
    if (this.admin === undefined) return 'local';
    if (authorization === undefined) return 'anonymous';
    const m = BEARER.exec(authorization);
    if (m === null) return 'anonymous';
    const presented = digest(m[1]!);
    // Both comparisons always run, so the timing does not tell which token came close.
    const isAdmin = timingSafeEqual(presented, this.admin);
    const isEnroll = this.enroll !== undefined && timingSafeEqual(presented, this.enroll);
    if (isAdmin) return 'admin';
    if (isEnroll) return 'enroll';
    return 'anonymous';
  }

  /** Throws the 401/403 the caller gets for this route, or returns who they are. */
  authorize(authorization: string | undefined, access: Access): Caller {
    if (access === 'open') return this.admin === undefined ? 'local' : 'anonymous';
    const caller = this.identify(authorization);
    if (caller === 'local' || caller === 'admin') return caller;
    if (caller === 'enroll') {
      if (access === 'enroll') return caller;
      throw new ApiError(403, 'forbidden', 'Authorization: the enrollment token may only call POST /register and GET /registerV2/:key');
    }
    throw new ApiError(
      401,
      'unauthorized',
      authorization === undefined ? 'Authorization: missing; send Authorization: Bearer <token>' : 'Authorization: invalid token',
    );
  }
}
