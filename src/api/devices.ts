// The egress devices: list, one, change, delete.
import type { FastifyPluginAsync } from 'fastify';
import type { RegistryService } from '../bindings/registry.js';
import type { RegistryStore } from '../store/types.js';
import type { TailnetView } from '../tailnet/types.js';
import type { DeviceStatusFeed } from '../tunnel/device-status.js';
import { found, parseId, wantsPurge } from './params.js';
import { deviceView } from './registry-view.js';
import { AUTH_ERRORS, BODY_ERRORS, DELETE_QUERY, DEVICE_ID_PARAMS, DEVICE_PATCH, errorResponses, type DeleteQuery, type FromSchema, type IdParams } from './schemas.js';

export interface DevicesOptions {
  store: Pick<RegistryStore, 'listDevices' | 'getDevice'>;
  registry: Pick<RegistryService, 'updateDevice' | 'removeDevice'>;
  tailnet?: TailnetView | undefined;
  /** Live health and open tunnels per device; without it, health is what the tailnet says now. */
  deviceStatus?: DeviceStatusFeed | undefined;
}

type DevicePatchBody = FromSchema<typeof DEVICE_PATCH> & { labels?: Record<string, string> };

export const devices: FastifyPluginAsync<DevicesOptions> = async (app, { store, registry, tailnet, deviceStatus }) => {
  app.get(
    '/devices',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Every device',
        response: { 200: { description: 'The devices', type: 'array', items: { $ref: 'Device#' } }, ...errorResponses(...AUTH_ERRORS, 503) },
      },
    },
    async () => (await store.listDevices()).map((d) => deviceView(d, tailnet, deviceStatus)),
  );

  app.get<{ Params: IdParams }>(
    '/devices/:id',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'One device, with its live state',
        params: DEVICE_ID_PARAMS,
        response: { 200: { description: 'The device', $ref: 'Device#' }, ...errorResponses(400, ...AUTH_ERRORS, 404, 503) },
      },
    },
    async (request) => {
      const id = parseId(request.params.id);
      return deviceView(found(await store.getDevice(id), 'device', id), tailnet, deviceStatus);
    },
  );

  app.patch<{ Params: IdParams; Body: DevicePatchBody }>(
    '/devices/:id',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Change a device; disabling it cuts the open tunnels of the keys that target it directly',
        params: DEVICE_ID_PARAMS,
        body: DEVICE_PATCH,
        response: { 200: { description: 'The device as changed', $ref: 'Device#' }, ...errorResponses(...BODY_ERRORS, ...AUTH_ERRORS, 404, 503) },
      },
    },
    async (request) => deviceView(await registry.updateDevice(parseId(request.params.id), request.body), tailnet, deviceStatus),
  );

  app.delete<{ Params: IdParams; Querystring: DeleteQuery }>(
    '/devices/:id',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Delete a device and the keys that target it directly (their open tunnels are cut); ?purge=true also deletes it in Headscale',
        params: DEVICE_ID_PARAMS,
        querystring: DELETE_QUERY,
        response: {
          200: { description: 'Deleted', $ref: 'DeviceDeleted#' },
          ...errorResponses(...BODY_ERRORS, ...AUTH_ERRORS, 404, 502, 503),
        },
      },
    },
    async (request) => {
      const { device, tunnelsClosed, headscaleDeleted } = await registry.removeDevice(parseId(request.params.id), wantsPurge(request.query));
      deviceStatus?.forget(device.id);
      return {
        success: true,
        message: `deleted: device ${device.id}, ${tunnelsClosed} open tunnel(s) closed${headscaleDeleted ? ', node deleted in Headscale' : ''}`,
        device: deviceView(device, tailnet),
        tunnelsClosed,
        headscaleDeleted,
      };
    },
  );
};
