// Binding a proxy key to a device: POST /register, and GET /registerV2/:key for devices built against the
// original system.
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { BindingService, RegisterRequest } from '../bindings/service.js';
import { keyTag } from '../core/key.js';
import type { TailnetView } from '../tailnet/types.js';
import type { Caller } from './auth.js';
import { ApiError } from './errors.js';
import { nodeView } from './node-view.js';
import { AUTH_ERRORS, BODY_ERRORS, KEY_PARAMS, errorResponses, type KeyParams, type RegisterBody } from './schemas.js';

export interface RegistrationOptions {
  bindings: Pick<BindingService, 'register'>;
  tailnet?: TailnetView | undefined;
}

const ANSWERS = {
  200: { description: 'The key was bound already; its binding is updated', $ref: 'Registered#' },
  201: { description: 'The key is bound', $ref: 'Registered#' },
} as const;

export const registration: FastifyPluginAsync<RegistrationOptions> = async (app, { bindings, tailnet }) => {
  const register = async (req: RegisterRequest, caller: Caller, reply: FastifyReply) => {
    if (req.ip !== undefined && caller === 'enroll') {
      // An explicit address would let the holder of the enrollment token route a key through any device in the
      // allowed ranges; the Headscale flow only binds a device that holds the key itself.
      throw new ApiError(403, 'forbidden', 'ip: the enrollment token registers through Headscale approval only; binding an explicit address needs the admin token');
    }
    const { node, created, via } = await bindings.register(req);
    const target = `${node.ip.includes(':') ? `[${node.ip}]` : node.ip}:${node.port} (${node.protocol})`;
    const message = `${created ? 'registered' : 'updated'}: key ${keyTag(node.keyHash)} -> ${target} via ${via}`;
    return reply.code(created ? 201 : 200).send({ success: true, message, ip: node.ip, node: nodeView(node, tailnet) });
  };

  app.post<{ Body: RegisterBody }>(
    '/register',
    {
      config: { access: 'enroll' },
      schema: {
        summary: 'Bind a key to a device by its address, or approve the device holding the key in Headscale',
        body: { $ref: 'RegisterRequest#' },
        response: { ...ANSWERS, ...errorResponses(...BODY_ERRORS, ...AUTH_ERRORS, 404, 502, 503) },
      },
    },
    (request, reply) => register(request.body, request.caller, reply),
  );

  app.get<{ Params: KeyParams }>(
    '/registerV2/:key',
    {
      config: { access: 'enroll' },
      // A HEAD would run the registration too.
      exposeHeadRoute: false,
      schema: {
        summary: 'POST /register {"key"} for devices built against the original system',
        params: KEY_PARAMS,
        response: { ...ANSWERS, ...errorResponses(400, ...AUTH_ERRORS, 404, 502, 503) },
      },
    },
    (request, reply) => register({ key: request.params.key }, request.caller, reply),
  );
};
