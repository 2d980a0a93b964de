// Pools of devices a key can egress through: listed explicitly, or by a label selector.
import type { FastifyPluginAsync } from 'fastify';
import type { RegistryService } from '../bindings/registry.js';
import type { RegistryStore } from '../store/types.js';
import type { TailnetView } from '../tailnet/types.js';
import type { DeviceStatusFeed } from '../tunnel/device-status.js';
import { found, parseId } from './params.js';
import { poolView, poolWithMembersView } from './registry-view.js';
import { AUTH_ERRORS, BODY_ERRORS, POOL_BODY, POOL_ID_PARAMS, POOL_PATCH, errorResponses, type IdParams, type PoolBody, type PoolPatchBody } from './schemas.js';

export interface PoolsOptions {
  store: Pick<RegistryStore, 'listPools' | 'getPool'>;
  registry: Pick<RegistryService, 'createPool' | 'updatePool' | 'removePool'>;
  tailnet?: TailnetView | undefined;
  /** Live health and open tunnels per device; without it, health is what the tailnet says now. */
  deviceStatus?: DeviceStatusFeed | undefined;
}

export const pools: FastifyPluginAsync<PoolsOptions> = async (app, { store, registry, tailnet, deviceStatus }) => {
  app.post<{ Body: PoolBody }>(
    '/pools',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Create a pool: devices (ids) or selector (labels every member has), not both',
        body: POOL_BODY,
        response: { 201: { description: 'Created', $ref: 'Pool#' }, ...errorResponses(...BODY_ERRORS, ...AUTH_ERRORS, 409, 503) },
      },
    },
    async (request, reply) => reply.code(201).send(poolView(await registry.createPool(request.body))),
  );

  app.get(
    '/pools',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Every pool',
        response: { 200: { description: 'The pools', type: 'array', items: { $ref: 'Pool#' } }, ...errorResponses(...AUTH_ERRORS, 503) },
      },
    },
    async () => (await store.listPools()).map(poolView),
  );

  app.get<{ Params: IdParams }>(
    '/pools/:id',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'One pool, with the devices in it now',
        params: POOL_ID_PARAMS,
        response: { 200: { description: 'The pool and its members', $ref: 'PoolWithMembers#' }, ...errorResponses(400, ...AUTH_ERRORS, 404, 503) },
      },
    },
    async (request) => {
      const id = parseId(request.params.id);
      return poolWithMembersView(found(await store.getPool(id), 'pool', id), tailnet, deviceStatus);
    },
  );

  app.patch<{ Params: IdParams; Body: PoolPatchBody }>(
    '/pools/:id',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Change a pool: giving devices makes it explicit, giving selector makes it a selector pool',
        params: POOL_ID_PARAMS,
        body: POOL_PATCH,
        response: { 200: { description: 'The pool as changed', $ref: 'Pool#' }, ...errorResponses(...BODY_ERRORS, ...AUTH_ERRORS, 404, 409, 503) },
      },
    },
    async (request) => poolView(await registry.updatePool(parseId(request.params.id), request.body)),
  );

  app.delete<{ Params: IdParams }>(
    '/pools/:id',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Delete a pool; refused with 409 while keys target it',
        params: POOL_ID_PARAMS,
        response: { 200: { description: 'Deleted', $ref: 'PoolDeleted#' }, ...errorResponses(...BODY_ERRORS, ...AUTH_ERRORS, 404, 409, 503) },
      },
    },
    async (request) => {
      const pool = await registry.removePool(parseId(request.params.id));
      return { success: true, message: `deleted: pool ${pool.id}`, pool: poolView(pool) };
    },
  );
};
