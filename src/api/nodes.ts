// The bindings as operators see them: the list, one node, and revocation.
import type { FastifyPluginAsync } from 'fastify';
import type { BindingService } from '../bindings/service.js';
import { keyTag } from '../core/key.js';
import type { NodeStore } from '../store/types.js';
import type { TailnetView } from '../tailnet/types.js';
import { nodeView } from './node-view.js';
import { found, parseId, wantsPurge } from './params.js';
import { AUTH_ERRORS, BODY_ERRORS, DELETE_QUERY, ID_PARAMS, errorResponses, type DeleteQuery, type IdParams } from './schemas.js';

export interface NodesOptions {
  store: Pick<NodeStore, 'list' | 'get'>;
  bindings: Pick<BindingService, 'revoke' | 'purge'>;
  tailnet?: TailnetView | undefined;
}

export const nodes: FastifyPluginAsync<NodesOptions> = async (app, { store, bindings, tailnet }) => {
  app.get(
    '/nodes',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Every binding',
        response: { 200: { description: 'The bindings', type: 'array', items: { $ref: 'Node#' } }, ...errorResponses(...AUTH_ERRORS, 503) },
      },
    },
    async () => (await store.list()).map((node) => nodeView(node, tailnet)),
  );

  app.get<{ Params: IdParams }>(
    '/nodes/:id',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'One binding',
        params: ID_PARAMS,
        response: { 200: { description: 'The binding', $ref: 'Node#' }, ...errorResponses(400, ...AUTH_ERRORS, 404, 503) },
      },
    },
    async (request) => {
      const id = parseId(request.params.id);
      return nodeView(found(await store.get(id), 'node', id), tailnet);
    },
  );

  app.delete<{ Params: IdParams; Querystring: DeleteQuery }>(
    '/nodes/:id',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Revoke a binding: the key is refused at once and its open tunnels are closed',
        params: ID_PARAMS,
        querystring: DELETE_QUERY,
        // 413 and 415: a body is not needed, but one that is sent is still read.
        response: { 200: { description: 'Revoked', $ref: 'Revoked#' }, ...errorResponses(...BODY_ERRORS, ...AUTH_ERRORS, 404, 502, 503) },
      },
    },
    async (request) => {
      const id = parseId(request.params.id);
      const purge = wantsPurge(request.query);
      const { node, tunnelsClosed, headscaleDeleted } = purge ? await bindings.purge(id) : await bindings.revoke(id);
      return {
        success: true,
        message: `revoked: key ${keyTag(node.keyHash)}, ${tunnelsClosed} open tunnel(s) closed${headscaleDeleted ? ', node deleted in Headscale' : ''}`,
        node: nodeView(node, tailnet),
        tunnelsClosed,
        headscaleDeleted,
      };
    },
  );
};
