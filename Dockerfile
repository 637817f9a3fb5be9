# syntax=docker/dockerfile:1
# One image for both roles; the command chooses the role (docs/design.md §7):
#   docker build -t promotions .
#   docker run -e LEADER_TOKEN=... -e REPLICA_TOKEN=... -p 8080:8080 promotions leader
#   docker run -e REPLICA_TOKEN=... -e LEADER_URL=http://leader:8080 -p 8081:8081 promotions replica
ARG NODE_IMAGE=node:20-bookworm-slim

# Build: all dependencies, then TypeScript to dist/ (tsconfig.build.json leaves test/ out).
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY common ./common
COPY leader ./leader
COPY replica ./replica
COPY scripts ./scripts
RUN npx tsc -p tsconfig.build.json

# Production dependencies only, in their own stage so that the runtime image gets no build cache or dev tools.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
# HOST 0.0.0.0: the default 127.0.0.1 is unreachable from outside the container.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    DATA_DIR=/data
WORKDIR /app
# package.json carries "type": "module", which makes node load dist/**/*.js as ES modules.
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY scripts/docker-entrypoint.sh ./scripts/docker-entrypoint.sh
# A numeric user (the image's `node` user), so that Kubernetes' runAsNonRoot can verify it without a name lookup.
RUN mkdir -p /data && chown 1000:1000 /data
USER 1000:1000
EXPOSE 8080 8081
# No init process: the entry script execs node, which runs as PID 1 and handles SIGTERM and SIGINT itself
# (graceful shutdown in leader/main.ts and replica/main.ts); it starts no child processes to reap.
# No CMD: `docker run IMAGE` without a role prints the usage and exits 2.
ENTRYPOINT ["/bin/sh", "/app/scripts/docker-entrypoint.sh"]
