# tailgate: Node runtime + tailscale binaries, userspace networking by default (no NET_ADMIN, no /dev/net/tun).
# The tailscale binaries come from the official image at the same version the tests build from source.
ARG TAILSCALE_VERSION=v1.102.5
FROM tailscale/tailscale:${TAILSCALE_VERSION} AS tailscale

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
# npm ci's postinstall fixes the PostgreSQL client (README "The PostgreSQL client's fixes").
COPY scripts/patch-postgres.mjs ./scripts/
RUN npm ci
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
COPY --from=tailscale /usr/local/bin/tailscale /usr/local/bin/tailscaled /usr/local/bin/
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The web dashboard's files, served by the API at /ui/ as they are (no build step).
COPY ui ./ui
RUN mkdir -p /var/lib/tailgate && chown node:node /var/lib/tailgate
ENV NODE_ENV=production \
    TAILGATE_DATA_DIR=/var/lib/tailgate \
    TS_STATE_DIR=/var/lib/tailgate/tailscale \
    TS_USERSPACE=true \
    GLIBC_TUNABLES=glibc.malloc.trim_threshold=67108864
USER node
VOLUME ["/var/lib/tailgate"]
EXPOSE 8081 1080 9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9091/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The same command `npm start` runs after its build step (GLIBC_TUNABLES above as there: README "The malloc trim threshold").
CMD ["node", "--initial-old-space-size=64", "dist/cli/main.js", "serve"]
