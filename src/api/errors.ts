// Every API error has the original system's shape plus a short machine-readable code, and its message
// names the field at fault.
import type { FastifySchemaValidationError } from 'fastify/types/schema.js';
import type { BindingError, BindingFailure } from '../bindings/errors.js';
import type { RegistrarFailure } from '../headscale/types.js';

export interface ErrorBody {
  success: false;
  message: string;
  error: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): ErrorBody {
    return { success: false, message: this.message, error: this.code };
  }
}

const BINDING_STATUS: Record<Exclude<BindingFailure, 'registrar'>, { status: number; code: string }> = {
  'not-found': { status: 404, code: 'not_found' },
  'invalid-address': { status: 400, code: 'invalid_ip' },
  'address-not-allowed': { status: 400, code: 'ip_not_allowed' },
  'address-required': { status: 400, code: 'ip_required' },
  'purge-unavailable': { status: 400, code: 'purge_unavailable' },
  invalid: { status: 400, code: 'invalid_request' },
  'unknown-reference': { status: 400, code: 'unknown_reference' },
  conflict: { status: 409, code: 'conflict' },
};

const REGISTRAR_STATUS: Record<RegistrarFailure, { status: number; code: string }> = {
  'bad-key': { status: 400, code: 'bad_registration_key' },
  'not-found': { status: 404, code: 'headscale_not_found' },
  unreachable: { status: 502, code: 'headscale_unreachable' },
  upstream: { status: 502, code: 'headscale_error' },
};

/** The binding service's refusal as the API answers it; the service's message already names the field. */
export function bindingApiError(err: BindingError): ApiError {
  const { status, code } = err.kind === 'registrar' ? REGISTRAR_STATUS[err.registrarFailure ?? 'upstream'] : BINDING_STATUS[err.kind];
  return new ApiError(status, code, err.message);
}

const TYPE_WORDS: Record<string, string> = {
  integer: 'an integer',
  number: 'a number',
  string: 'a string',
  object: 'a JSON object',
  boolean: 'true or false',
  array: 'an array',
};

/** What a pattern means, by field, since "must match pattern ^[!-9;-~]+$" helps nobody. */
const PATTERN_HINTS: Record<string, string> = {
  'body.key': "must be printable ASCII without spaces or ':' (it is the proxy username)",
  'params.key': "must be printable ASCII without spaces or ':' (it is the proxy username)",
  'body.name': 'must not contain control characters',
  'params.id': 'must be a positive integer',
};

/** Turns an Ajv error from Fastify's schema validation into "body.port must be <= 65535". */
export function describeValidationError(context: string, v: FastifySchemaValidationError): string {
  const at = context + v.instancePath.replace(/\//g, '.');
  const p = v.params as Record<string, unknown>;
  switch (v.keyword) {
    case 'required':
      return `${at}.${String(p.missingProperty)} is required`;
    case 'additionalProperties':
      return `${at}.${String(p.additionalProperty)} is not a known field`;
    case 'type':
      return `${at} must be ${String(p.type).split(',').map((t) => TYPE_WORDS[t] ?? t).join(' or ')}`;
    case 'enum':
      return `${at} must be one of: ${(p.allowedValues as unknown[]).map(String).join(', ')}`;
    case 'minLength':
      return `${at} must be at least ${String(p.limit)} characters`;
    case 'maxLength':
      return `${at} must be at most ${String(p.limit)} characters`;
    case 'minProperties':
      return `${at} must name at least ${String(p.limit)} field(s)`;
    case 'pattern':
      return `${at} ${PATTERN_HINTS[at] ?? 'has an invalid format'}`;
    default:
      return `${at} ${v.message ?? 'is invalid'}`;
  }
}

/** Fastify's own client errors (body parsing and the like), reworded where its text is vague. */
export function describeFastifyClientError(code: string | undefined, message: string): string {
  switch (code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'body: send JSON with content-type: application/json';
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'body: empty, expected a JSON object';
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return 'body: not valid JSON';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'body: too large';
    default:
      return message;
  }
}
