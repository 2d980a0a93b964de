// Every JSON schema of the management API, each written once. They validate requests, serialize answers (Fastify
// compiles response schemas into serializers that write only the properties a schema names) and are the OpenAPI
// document's content. Schemas with an $id are registered on the server and referenced as { $ref: '<id>#' };
// the document lists them under components.schemas.

/** The TypeScript type of a request object schema, so a route's body, params or query is not described twice. */
export type FromSchema<S extends ObjectSchema> = { [K in RequiredKeys<S>]: JsonValue<S['properties'][K]> } & {
  [K in Exclude<keyof S['properties'], RequiredKeys<S>>]?: JsonValue<S['properties'][K]>;
};

interface ObjectSchema {
  type: 'object';
  properties: Record<string, unknown>;
  required?: readonly string[];
}
type RequiredKeys<S extends ObjectSchema> = S['required'] extends readonly (infer K)[] ? K & keyof S['properties'] : never;
type JsonValue<S> = S extends { enum: readonly (infer E)[] }
  ? E
  : S extends { type: readonly (infer T)[] }
    ? JsonType<T>
    : S extends { type: infer T }
      ? JsonType<T>
      : unknown;
type JsonType<T> = T extends 'string' ? string : T extends 'integer' | 'number' ? number : T extends 'boolean' ? boolean : T extends 'null' ? null : unknown;

// Printable ASCII except ':' (the key is the Basic-auth username, and ':' ends a username).
const KEY = {
  type: 'string',
  minLength: 8,
  maxLength: 256,
  pattern: '^[!-9;-~]+$',
  description: 'The proxy key (user name and password on the proxies); a Headscale registration key for approval.',
} as const;

export const REGISTER_BODY = {
  $id: 'RegisterRequest',
  type: 'object',
  required: ['key'],
  additionalProperties: false,
  properties: {
    key: KEY,
    ip: { type: 'string', minLength: 1, maxLength: 64, description: "The device's tailnet address; leave out to approve the device in Headscale." },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: "The device proxy's port (default TAILGATE_DEVICE_PORT, or the stored one)." },
    protocol: { type: 'string', enum: ['http', 'socks5'], description: "The device proxy's protocol (default TAILGATE_DEVICE_PROTOCOL, or the stored one)." },
    name: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[^\\x00-\\x1f\\x7f]+$' },
  },
} as const;
export type RegisterBody = FromSchema<typeof REGISTER_BODY>;

export const KEY_PARAMS = { type: 'object', required: ['key'], properties: { key: KEY } } as const;
export type KeyParams = FromSchema<typeof KEY_PARAMS>;

export const ID_PARAMS = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[1-9][0-9]{0,9}$', description: 'The node id, as GET /nodes lists it.' } },
} as const;
export type IdParams = FromSchema<typeof ID_PARAMS>;

export const DELETE_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { purge: { type: 'string', enum: ['true', 'false', '1', '0'], description: 'Also delete the node in Headscale.' } },
} as const;
export type DeleteQuery = FromSchema<typeof DELETE_QUERY>;

/** What operators see of a binding: never the key, only the prefix of its hash that logs also show. */
export const NODE = {
  $id: 'Node',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'ip', 'ipv6', 'port', 'protocol', 'keyPrefix', 'headscaleNodeId', 'online', 'createdAt', 'updatedAt'],
  properties: {
    id: { type: 'integer' },
    name: { type: ['string', 'null'] },
    ip: { type: 'string' },
    ipv6: { type: ['string', 'null'] },
    port: { type: 'integer' },
    protocol: { type: 'string', enum: ['http', 'socks5'] },
    keyPrefix: { type: 'string', description: 'The first 10 hex digits of the SHA-256 of the key, as logs show it.' },
    headscaleNodeId: { type: ['string', 'null'] },
    online: { type: ['boolean', 'null'], description: "From the tailnet status; null when unknown (no supervised tailscaled, or the peer is not in its netmap)." },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
  },
} as const;
export type NodeView = FromSchema<typeof NODE>;

/** Every error answer: the original system's shape plus a short machine-readable code. */
export const ERROR_BODY = {
  $id: 'Error',
  type: 'object',
  additionalProperties: false,
  required: ['success', 'message', 'error'],
  properties: {
    success: { type: 'boolean', const: false },
    message: { type: 'string', description: '"<field>: <reason>"' },
    error: { type: 'string', description: 'invalid_request, invalid_ip, ip_not_allowed, not_found, headscale_unreachable, ...' },
  },
} as const;

export const REGISTERED = {
  $id: 'Registered',
  type: 'object',
  additionalProperties: false,
  required: ['success', 'message', 'ip', 'node'],
  properties: {
    success: { type: 'boolean', const: true },
    message: { type: 'string' },
    ip: { type: 'string' },
    node: { $ref: 'Node#' },
  },
} as const;

export const REVOKED = {
  $id: 'Revoked',
  type: 'object',
  additionalProperties: false,
  required: ['success', 'message', 'node', 'tunnelsClosed', 'headscaleDeleted'],
  properties: {
    success: { type: 'boolean', const: true },
    message: { type: 'string' },
    node: { $ref: 'Node#' },
    tunnelsClosed: { type: 'integer', description: "The key's tunnels that were open and are now closed." },
    headscaleDeleted: { type: 'boolean' },
  },
} as const;

export const READINESS = {
  $id: 'Readiness',
  type: 'object',
  additionalProperties: false,
  required: ['ready', 'database', 'listeners', 'tailnet'],
  properties: {
    ready: { type: 'boolean' },
    database: { type: 'string', description: '"ok", else why not (the detail only for admin callers)' },
    listeners: { type: 'string' },
    tailnet: { type: 'string' },
  },
} as const;

export const HEALTH = {
  type: 'object',
  additionalProperties: false,
  required: ['status'],
  properties: { status: { type: 'string', const: 'ok' } },
} as const;

/** Registered on the server before any route, so routes can reference them. */
export const SHARED_SCHEMAS = [NODE, ERROR_BODY, REGISTER_BODY, REGISTERED, REVOKED, READINESS];

export type ErrorStatus = 400 | 401 | 403 | 404 | 413 | 415 | 500 | 502 | 503;

const ERROR_DESCRIPTIONS: Record<ErrorStatus, string> = {
  400: 'Invalid request: a malformed field, address or key',
  401: 'Missing or invalid token',
  403: 'The token may not do this',
  404: 'Not found',
  413: 'Body too large',
  415: 'Body is not JSON',
  500: 'Internal error (see the gateway log)',
  502: 'Headscale unreachable or failing',
  503: 'Database unavailable',
};

/** The error answers a route can send; every route can fail with 500. */
export function errorResponses(...statuses: ErrorStatus[]): Record<number, { description: string; $ref: string }> {
  const out: Record<number, { description: string; $ref: string }> = {};
  for (const status of [...statuses, 500 as const]) out[status] = { description: ERROR_DESCRIPTIONS[status], $ref: 'Error#' };
  return out;
}

/** Routes that need a token: 401 without one, 403 for a token that may not call them. */
export const AUTH_ERRORS: ErrorStatus[] = [401, 403];
/** Routes that read a request body can also be refused for the body itself. */
export const BODY_ERRORS: ErrorStatus[] = [400, 413, 415];
