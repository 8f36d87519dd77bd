# One image for every Zerve role: `docker run zerve broker ...`, `worker inference ...`,
# `worker training ...`, `worker jobs ...`, `web ...` (the arguments are `zerve`'s; see README "Deploy").
ARG NODE_IMAGE=node:20-bookworm-slim

# Build stage: compilers for native modules that fall back to building from source (better-sqlite3,
# zeromq); none of them reach the runtime image.
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ cmake ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund

# Runtime stage: Node, the production node_modules and the TypeScript sources (run by tsx, no build).
FROM ${NODE_IMAGE} AS runtime
# tini reaps the children `zerve up` supervises and forwards SIGTERM, which starts the graceful drain.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY shared ./shared
COPY broker ./broker
COPY workers ./workers
COPY webapp ./webapp
COPY scripts ./scripts
# The folders for models and data, owned by the unprivileged `node` user (uid 1000) of the base image:
# a volume mounted there empty starts with this ownership, so uid 1000 can write it. No VOLUME line:
# only the roles that keep files mount one (docker-compose.yml), the others would get unused volumes.
RUN mkdir -p /var/lib/zerve/models /var/lib/zerve/data \
 && chown -R node:node /var/lib/zerve \
 && chmod 755 /app/scripts/zerve.js \
 && ln -s /app/scripts/zerve.js /usr/local/bin/zerve
USER node
# 5555 clients, 5556 workers, 8080 web app, 9100 --metrics-port (broker and workers)
EXPOSE 5555 5556 8080 9100
ENTRYPOINT ["/usr/bin/tini", "--", "zerve"]
CMD ["--help"]
