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

const NAME = { type: 'string', minLength: 1, maxLength: 128, pattern: '^[^\\x00-\\x1f\\x7f]+$' } as const;

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
    name: NAME,
  },
} as const;
export type RegisterBody = FromSchema<typeof REGISTER_BODY>;

export const KEY_PARAMS = { type: 'object', required: ['key'], properties: { key: KEY } } as const;
export type KeyParams = FromSchema<typeof KEY_PARAMS>;

/** The `:id` of a route on `what` (node, device, pool, key). */
function idParams(what: string) {
  return {
    type: 'object',
    required: ['id'],
    properties: { id: { type: 'string', pattern: '^[1-9][0-9]{0,9}$', description: `The ${what} id, as GET /${what}s lists it.` } },
  } as const;
}
export const ID_PARAMS = idParams('node');
export const DEVICE_ID_PARAMS = idParams('device');
export const POOL_ID_PARAMS = idParams('pool');
export const KEY_ID_PARAMS = idParams('key');
export type IdParams = FromSchema<typeof ID_PARAMS>;

export const DELETE_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { purge: { type: 'string', enum: ['true', 'false', '1', '0'], description: 'Also delete the node (the device) in Headscale.' } },
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

/** The answer to a change that went through: the original system's success and message, and what it is about. */
function doneAnswer<const P extends Record<string, unknown>>($id: string, properties: P) {
  return {
    $id,
    type: 'object',
    additionalProperties: false,
    required: ['success', 'message', ...Object.keys(properties)],
    properties: { success: { type: 'boolean', const: true }, message: { type: 'string' }, ...properties },
  } as const;
}

const TUNNELS_CLOSED = { type: 'integer', description: "The key's tunnels that were open and are now closed." } as const;

const PORT = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const PROTOCOL = { type: 'string', enum: ['http', 'socks5'] } as const;
const TIMESTAMP = { type: 'string', format: 'date-time' } as const;
const ROW_ID = { type: 'integer', minimum: 1, maximum: 2_147_483_647 } as const;

/** Device labels and pool selectors: a flat map of short strings (`{"country": "de"}`). */
const LABELS = {
  type: 'object',
  maxProperties: 32,
  propertyNames: { minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:/-]+$' },
  additionalProperties: { type: 'string', minLength: 1, maxLength: 128 },
} as const;

/** A node is a key and its device: the device's fields are the node's, less the key's prefix. */
const { keyPrefix: _keyPrefix, ...DEVICE_FIELDS_OF_NODE } = NODE.properties;

export const DEVICE = {
  $id: 'Device',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'ip', 'ipv6', 'port', 'protocol', 'labels', 'headscaleNodeId', 'enabled', 'createdAt', 'updatedAt', 'online', 'health', 'openTunnels', 'lastHandshake', 'relayed'],
  properties: {
    ...DEVICE_FIELDS_OF_NODE,
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    enabled: { type: 'boolean' },
    health: {
      type: 'object',
      additionalProperties: false,
      required: ['state', 'reason', 'since'],
      properties: {
        state: { type: 'string', enum: ['up', 'down', 'unknown'] },
        reason: {
          type: ['string', 'null'],
          description:
            'down: "disabled", "offline" (the tailnet says so), "dial-failures" (3 device-level failures opened its breaker for 10 s); ' +
            'unknown: "half-open" (the next connection decides), "no-status" (neither the tailnet nor a connection has said anything); ' +
            'up: "online" (the tailnet says so), "connected" (the last connection through it worked).',
        },
        since: { type: ['string', 'null'], format: 'date-time', description: 'When it entered this state on this gateway; null when unknown.' },
      },
    },
    openTunnels: { type: 'integer', description: 'Tunnels (and forwarded requests in progress) open through the device on this gateway, from every key.' },
    lastHandshake: { type: ['string', 'null'], format: 'date-time', description: "The last WireGuard handshake tailscaled made with it; null when unknown or none." },
    relayed: { type: ['boolean', 'null'], description: 'True when traffic to it goes through DERP, false when direct; null when unknown.' },
  },
} as const;

export const DEVICE_PATCH = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: { name: { ...NAME, type: ['string', 'null'] }, labels: LABELS, port: PORT, protocol: PROTOCOL, enabled: { type: 'boolean' } },
} as const;

const POOL_PROPERTIES = {
  id: { type: 'integer' },
  name: { type: 'string' },
  devices: { type: 'array', items: { type: 'integer' }, description: 'The devices listed explicitly; empty for a selector pool.' },
  selector: { type: ['object', 'null'], additionalProperties: { type: 'string' }, description: 'The labels members match; null for an explicit pool.' },
  createdAt: TIMESTAMP,
  updatedAt: TIMESTAMP,
} as const;
const POOL_REQUIRED = ['id', 'name', 'devices', 'selector', 'createdAt', 'updatedAt'] as const;

export const POOL = { $id: 'Pool', type: 'object', additionalProperties: false, required: POOL_REQUIRED, properties: POOL_PROPERTIES } as const;

export const POOL_WITH_MEMBERS = {
  $id: 'PoolWithMembers',
  type: 'object',
  additionalProperties: false,
  required: [...POOL_REQUIRED, 'members'],
  properties: {
    ...POOL_PROPERTIES,
    members: { type: 'array', items: { $ref: 'Device#' }, description: 'The devices in the pool now (listed, or matching the selector), enabled or not.' },
  },
} as const;

const POOL_DEVICES = { type: 'array', maxItems: 10_000, uniqueItems: true, items: ROW_ID, description: 'Device ids; or give selector.' } as const;
const POOL_SELECTOR = { ...LABELS, minProperties: 1, description: 'Labels a device must all have to be a member; or give devices.' } as const;

export const POOL_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: { name: NAME, devices: POOL_DEVICES, selector: POOL_SELECTOR },
} as const;
export type PoolBody = FromSchema<typeof POOL_BODY> & { devices?: number[]; selector?: Record<string, string> };

export const POOL_PATCH = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: POOL_BODY.properties,
} as const;
export type PoolPatchBody = Partial<PoolBody>;

const LIMIT_COUNT = { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000 } as const;
const LIMIT_RATE = { type: ['integer', 'null'], minimum: 1024, maximum: 1_000_000_000_000 } as const;
const QUOTA_PERIODS = ['day', 'month', 'total'] as const;

/** Every limit optional; in a change, an absent one stays as it is and null removes it. */
const LIMITS_PROPERTIES = {
  maxTunnels: { ...LIMIT_COUNT, description: 'Open tunnels and in-flight forwarded requests at once, on each gateway.' },
  tunnelsPerSecond: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1_000_000, description: 'New tunnels and forwarded requests per second (a token bucket).' },
  tunnelBurst: { ...LIMIT_COUNT, description: 'How many may start at once after a quiet spell (the bucket size); default tunnelsPerSecond rounded up. Needs tunnelsPerSecond.' },
  bytesPerSecondDown: { ...LIMIT_RATE, description: "Device to client, over all of the key's tunnels together (at least 1024)." },
  bytesPerSecondUp: { ...LIMIT_RATE, description: "Client to device, over all of the key's tunnels together (at least 1024)." },
  quota: {
    type: ['object', 'null'],
    additionalProperties: false,
    required: ['bytes', 'period'],
    properties: {
      bytes: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Bytes up and down together per period.' },
      period: { type: 'string', enum: QUOTA_PERIODS, description: 'Calendar day or month in UTC, or total (never resets).' },
    },
  },
} as const;

const LIMITS_BODY = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: LIMITS_PROPERTIES,
  description: 'Per-key limits (see the README, "Limits and quotas"); null removes them all.',
} as const;

/** A key's limits as a request gives them: a field null removes that limit. */
export interface LimitsRequest {
  maxTunnels?: number | null;
  tunnelsPerSecond?: number | null;
  tunnelBurst?: number | null;
  bytesPerSecondDown?: number | null;
  bytesPerSecondUp?: number | null;
  quota?: { bytes: number; period: (typeof QUOTA_PERIODS)[number] } | null;
}

const KEY_PROPERTIES = {
  id: { type: 'integer' },
  name: { type: ['string', 'null'] },
  keyPrefix: NODE.properties.keyPrefix,
  target: {
    oneOf: [
      { type: 'object', additionalProperties: false, required: ['device'], properties: { device: { type: 'integer' } } },
      { type: 'object', additionalProperties: false, required: ['pool'], properties: { pool: { type: 'integer' } } },
    ],
  },
  expiresAt: { type: ['string', 'null'], format: 'date-time' },
  disabled: { type: 'boolean' },
  limits: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxTunnels: { type: 'integer' },
      tunnelsPerSecond: { type: 'number' },
      tunnelBurst: { type: 'integer' },
      bytesPerSecondDown: { type: 'integer' },
      bytesPerSecondUp: { type: 'integer' },
      quota: { type: 'object', additionalProperties: false, required: ['bytes', 'period'], properties: { bytes: { type: 'integer' }, period: { type: 'string', enum: QUOTA_PERIODS } } },
    },
    description: 'The limits set; {} for none.',
  },
  quota: {
    type: 'object',
    additionalProperties: false,
    required: ['used', 'limit', 'periodStart', 'resetsAt', 'exhausted'],
    description: "Only with a quota: the current period's use as this gateway knows it.",
    properties: {
      used: { type: 'integer', description: 'Bytes up and down since periodStart.' },
      limit: { type: 'integer' },
      periodStart: TIMESTAMP,
      resetsAt: { type: ['string', 'null'], format: 'date-time', description: 'null for a total quota.' },
      exhausted: { type: 'boolean', description: 'New tunnels are refused (429 quota_exceeded) and open ones closed.' },
    },
  },
  createdAt: TIMESTAMP,
} as const;
const KEY_REQUIRED = ['id', 'name', 'keyPrefix', 'target', 'expiresAt', 'disabled', 'limits', 'createdAt'] as const;

/** What operators see of a key: never the secret. */
export const KEY_VIEW = { $id: 'Key', type: 'object', additionalProperties: false, required: KEY_REQUIRED, properties: KEY_PROPERTIES } as const;

/** The answer to creating or rotating a key, the only ones that carry its secret. */
export const KEY_WITH_SECRET = {
  $id: 'KeyWithSecret',
  type: 'object',
  additionalProperties: false,
  required: [...KEY_REQUIRED, 'key'],
  properties: { ...KEY_PROPERTIES, key: { type: 'string', description: 'The secret: shown this once, stored only as its SHA-256.' } },
} as const;

const KEY_TARGET_FIELDS = {
  device: { ...ROW_ID, description: 'The device the key egresses through; or give pool.' },
  pool: { ...ROW_ID, description: 'The pool the key egresses through; or give device.' },
} as const;
const EXPIRES_AT = { type: ['string', 'null'], format: 'date-time', description: 'When the key stops working; null: never.' } as const;

export const KEY_BODY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { ...NAME, type: ['string', 'null'] },
    ...KEY_TARGET_FIELDS,
    key: { ...KEY, description: 'The secret to use; leave out to have one generated (32 base62 characters).' },
    expiresAt: EXPIRES_AT,
    limits: LIMITS_BODY,
  },
} as const;
export type KeyBody = Omit<FromSchema<typeof KEY_BODY>, 'limits'> & { limits?: LimitsRequest | null };

export const KEY_PATCH = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: { name: KEY_BODY.properties.name, ...KEY_TARGET_FIELDS, expiresAt: EXPIRES_AT, disabled: { type: 'boolean' }, limits: LIMITS_BODY },
} as const;
export type KeyPatchBody = Omit<FromSchema<typeof KEY_PATCH>, 'limits'> & { limits?: LimitsRequest | null };

/** The answers to the deletes: the thing as it was and what went with it. */
export const DEVICE_DELETED = doneAnswer('DeviceDeleted', {
  device: { $ref: 'Device#' },
  tunnelsClosed: { ...TUNNELS_CLOSED, description: 'Open tunnels of the keys that targeted it directly (deleted with it), now closed.' },
  headscaleDeleted: { type: 'boolean' },
});

export const POOL_DELETED = doneAnswer('PoolDeleted', { pool: { $ref: 'Pool#' } });

export const KEY_DELETED = doneAnswer('KeyDeleted', { key: { $ref: 'Key#' }, tunnelsClosed: TUNNELS_CLOSED });

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

export const REGISTERED = doneAnswer('Registered', { ip: { type: 'string' }, node: { $ref: 'Node#' } });

export const REVOKED = doneAnswer('Revoked', { node: { $ref: 'Node#' }, tunnelsClosed: TUNNELS_CLOSED, headscaleDeleted: { type: 'boolean' } });

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

const COUNT = { type: 'integer', minimum: 0 } as const;
const USAGE_COUNT_PROPERTIES = {
  bytesUp: { ...COUNT, description: 'Bytes from the client (for CONNECT and SOCKS5 the tunnel payload; for forwarded requests the whole request).' },
  bytesDown: { ...COUNT, description: 'Bytes to the client (the tunnel payload; for forwarded requests the whole response).' },
  tunnels: { ...COUNT, description: 'Tunnels opened and requests forwarded.' },
  refused: { ...COUNT, description: 'Tunnels and requests refused by a limit (admission).' },
  failures: { ...COUNT, description: 'Connections through a device that could not be made (and connections no device was eligible for).' },
} as const;
const USAGE_COUNT_REQUIRED = ['bytesUp', 'bytesDown', 'tunnels', 'refused', 'failures'] as const;
const USAGE_COUNTS = { type: 'object', additionalProperties: false, required: USAGE_COUNT_REQUIRED, properties: USAGE_COUNT_PROPERTIES } as const;

const USAGE_FROM = { type: 'string', format: 'date-time', description: 'Start (RFC 3339), rounded down to the step.' } as const;
const USAGE_TO = { type: 'string', format: 'date-time', description: 'End (RFC 3339), exclusive; default now.' } as const;

export const USAGE_SERIES_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    from: { ...USAGE_FROM, description: `${USAGE_FROM.description} Default: 24 hours before \`to\` (step hour), 30 days before it (step day).` },
    to: USAGE_TO,
    step: { type: 'string', enum: ['hour', 'day'], description: 'Bucket size: an hour, or a UTC day. Default hour.' },
  },
} as const;
export type UsageSeriesQuery = FromSchema<typeof USAGE_SERIES_QUERY>;

export const USAGE_TOTALS_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    from: { ...USAGE_FROM, description: 'Start (RFC 3339), rounded down to the hour. Default: the start of the current UTC month.' },
    to: USAGE_TO,
    by: { type: 'string', enum: ['key', 'device'], description: 'Totals per key or per device. Default key.' },
  },
} as const;
export type UsageTotalsQuery = FromSchema<typeof USAGE_TOTALS_QUERY>;

export const USAGE_BYTES_SERIES_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...USAGE_SERIES_QUERY.properties,
    by: { type: 'string', enum: ['key', 'device'], description: 'One series per key or per device. Default device.' },
  },
} as const;
export type UsageBytesSeriesQuery = FromSchema<typeof USAGE_BYTES_SERIES_QUERY>;

export const USAGE_BYTES_SERIES = {
  $id: 'UsageBytesSeries',
  type: 'object',
  additionalProperties: false,
  required: ['from', 'to', 'step', 'by', 'series'],
  properties: {
    from: TIMESTAMP,
    to: TIMESTAMP,
    step: { type: 'string', enum: ['hour', 'day'] },
    by: { type: 'string', enum: ['key', 'device'] },
    series: {
      type: 'array',
      description: 'Every key (or device) that exists, and deleted ones with usage in the range, by id.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'name', 'bytes'],
        properties: {
          id: { type: 'integer' },
          name: { type: ['string', 'null'], description: 'Its name now; null without one, or once deleted.' },
          bytes: { type: 'array', items: COUNT, description: 'Bytes up + down of every step from `from`, one number per step, empty steps as 0.' },
        },
      },
    },
  },
} as const;

export const USAGE_SERIES = {
  $id: 'UsageSeries',
  type: 'object',
  additionalProperties: false,
  required: ['from', 'to', 'step', 'series', 'total'],
  properties: {
    from: TIMESTAMP,
    to: TIMESTAMP,
    step: { type: 'string', enum: ['hour', 'day'] },
    series: {
      type: 'array',
      description: 'Every step from `from` up to `to`, empty ones as zeros; `t` is the start of the step.',
      items: { type: 'object', additionalProperties: false, required: ['t', ...USAGE_COUNT_REQUIRED], properties: { t: TIMESTAMP, ...USAGE_COUNT_PROPERTIES } },
    },
    total: USAGE_COUNTS,
  },
} as const;

export const USAGE_TOTALS = {
  $id: 'UsageTotals',
  type: 'object',
  additionalProperties: false,
  required: ['from', 'to', 'by', 'usage'],
  properties: {
    from: TIMESTAMP,
    to: TIMESTAMP,
    by: { type: 'string', enum: ['key', 'device'] },
    usage: {
      type: 'array',
      description: 'Every key (or device) with usage in the range, most bytes (up + down) first; deleted ones included.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'name', ...USAGE_COUNT_REQUIRED],
        properties: { id: { type: 'integer' }, name: { type: ['string', 'null'], description: 'Its name now; null without one, or once deleted.' }, ...USAGE_COUNT_PROPERTIES },
      },
    },
  },
} as const;

const RATE = { type: 'number', minimum: 0 } as const;

export const STATS = {
  $id: 'Stats',
  type: 'object',
  additionalProperties: false,
  required: ['at', 'intervalSeconds', 'listeners', 'devices', 'tunnelsOpen', 'series'],
  properties: {
    at: TIMESTAMP,
    listeners: {
      type: ['object', 'null'],
      additionalProperties: false,
      description: "The proxy listeners' ports on this gateway (for ready-made client commands); null before they listen. http and socks5: the plain listeners, absent when they are turned off; https and socks5Tls: the TLS listeners, when configured.",
      properties: { http: { type: 'integer' }, socks5: { type: 'integer' }, https: { type: 'integer' }, socks5Tls: { type: 'integer' } },
    },
    intervalSeconds: { type: 'number', description: 'How often the gateway samples (the spacing of `series`).' },
    devices: {
      type: 'object',
      additionalProperties: false,
      required: ['total', 'up', 'down', 'unknown', 'relayed'],
      description: 'Every registered device by health on this gateway (as GET /devices shows it); relayed: reached through DERP.',
      properties: { total: COUNT, up: COUNT, down: COUNT, unknown: COUNT, relayed: COUNT },
    },
    tunnelsOpen: { ...COUNT, description: 'Tunnels and forwarded requests open on this gateway now.' },
    series: {
      type: 'array',
      description: "This gateway's last minutes, oldest first: each point the rates over the interval that ended at `t`.",
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['t', 'tunnelsPerSecond', 'bytesUpPerSecond', 'bytesDownPerSecond'],
        properties: {
          t: TIMESTAMP,
          tunnelsPerSecond: { ...RATE, description: 'Tunnels opened and requests forwarded per second.' },
          bytesUpPerSecond: { ...RATE, description: 'Bytes from clients per second (open tunnels included as they run).' },
          bytesDownPerSecond: { ...RATE, description: 'Bytes to clients per second.' },
        },
      },
    },
  },
} as const;

/** Registered on the server before any route, so routes can reference them. */
export const SHARED_SCHEMAS = [
  NODE,
  ERROR_BODY,
  REGISTER_BODY,
  REGISTERED,
  REVOKED,
  READINESS,
  DEVICE,
  DEVICE_DELETED,
  POOL,
  POOL_WITH_MEMBERS,
  POOL_DELETED,
  KEY_VIEW,
  KEY_WITH_SECRET,
  KEY_DELETED,
  USAGE_SERIES,
  USAGE_BYTES_SERIES,
  USAGE_TOTALS,
  STATS,
];

export type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 500 | 502 | 503;

const ERROR_DESCRIPTIONS: Record<ErrorStatus, string> = {
  400: 'Invalid request: a malformed field, address or key',
  401: 'Missing or invalid token',
  403: 'The token may not do this',
  404: 'Not found',
  409: 'Conflicts with what exists (a name or key in use, a pool keys still target)',
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
