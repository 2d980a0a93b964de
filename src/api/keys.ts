// Customer keys: the secret is in the answers to creation and rotation only, never again.
import type { FastifyPluginAsync } from 'fastify';
import type { RegistryService } from '../bindings/registry.js';
import { keyTag } from '../core/key.js';
import type { KeyRecord, RegistryStore } from '../store/types.js';
import type { QuotaLedger } from '../tunnel/quota.js';
import { found, parseId } from './params.js';
import { keyView } from './registry-view.js';
import { AUTH_ERRORS, BODY_ERRORS, KEY_BODY, KEY_ID_PARAMS, KEY_PATCH, errorResponses, type IdParams, type KeyBody, type KeyPatchBody } from './schemas.js';

export interface KeysOptions {
  store: Pick<RegistryStore, 'listKeys' | 'getKey'>;
  registry: Pick<RegistryService, 'createKey' | 'updateKey' | 'rotateKey' | 'removeKey'>;
  quotaLedger?: QuotaLedger | undefined;
}

/** The schema checked the format; undefined stays "not given", null "never". */
function expiry(value: string | null | undefined): Date | null | undefined {
  return value === undefined || value === null ? value : new Date(value);
}

export const keys: FastifyPluginAsync<KeysOptions> = async (app, { store, registry, quotaLedger }) => {
  const view = (key: KeyRecord) => keyView(key, quotaLedger);
  app.post<{ Body: KeyBody }>(
    '/keys',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Create a key for a device or a pool; the answer carries the secret, once',
        body: KEY_BODY,
        response: { 201: { description: 'Created: the key and its secret', $ref: 'KeyWithSecret#' }, ...errorResponses(...BODY_ERRORS, ...AUTH_ERRORS, 409, 503) },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const { key, secret } = await registry.createKey({ ...body, expiresAt: expiry(body.expiresAt) });
      return reply.code(201).send({ ...view(key), key: secret });
    },
  );

  app.get(
    '/keys',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Every key (never a secret)',
        response: { 200: { description: 'The keys', type: 'array', items: { $ref: 'Key#' } }, ...errorResponses(...AUTH_ERRORS, 503) },
      },
    },
    async () => (await store.listKeys()).map(view),
  );

  app.get<{ Params: IdParams }>(
    '/keys/:id',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'One key (never its secret)',
        params: KEY_ID_PARAMS,
        response: { 200: { description: 'The key', $ref: 'Key#' }, ...errorResponses(400, ...AUTH_ERRORS, 404, 503) },
      },
    },
    async (request) => {
      const id = parseId(request.params.id);
      return view(found(await store.getKey(id), 'key', id));
    },
  );

  app.patch<{ Params: IdParams; Body: KeyPatchBody }>(
    '/keys/:id',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Change a key; disabling it (or an expiry in the past) also cuts its open tunnels',
        params: KEY_ID_PARAMS,
        body: KEY_PATCH,
        response: { 200: { description: 'The key as changed', $ref: 'Key#' }, ...errorResponses(...BODY_ERRORS, ...AUTH_ERRORS, 404, 503) },
      },
    },
    async (request) => {
      const body = request.body;
      return view(await registry.updateKey(parseId(request.params.id), { ...body, expiresAt: expiry(body.expiresAt) }));
    },
  );

  app.post<{ Params: IdParams }>(
    '/keys/:id/rotate',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'A new secret for the key: the old one is refused at once, tunnels it opened stay open',
        params: KEY_ID_PARAMS,
        response: { 200: { description: 'The key and its new secret', $ref: 'KeyWithSecret#' }, ...errorResponses(...BODY_ERRORS, ...AUTH_ERRORS, 404, 503) },
      },
    },
    async (request) => {
      const { key, secret } = await registry.rotateKey(parseId(request.params.id));
      return { ...view(key), key: secret };
    },
  );

  app.delete<{ Params: IdParams }>(
    '/keys/:id',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Delete a key: refused from the next connection on, its open tunnels cut',
        params: KEY_ID_PARAMS,
        response: { 200: { description: 'Deleted', $ref: 'KeyDeleted#' }, ...errorResponses(...BODY_ERRORS, ...AUTH_ERRORS, 404, 503) },
      },
    },
    async (request) => {
      const { key, tunnelsClosed } = await registry.removeKey(parseId(request.params.id));
      return { success: true, message: `deleted: key ${keyTag(key.keyHash)}, ${tunnelsClosed} open tunnel(s) closed`, key: view(key), tunnelsClosed };
    },
  );
};
