# The hook server image. Build from the repository root:
#   buildah bud -f deploy/images/hook-server.Dockerfile -t sandbox-snapshot-controller:dev .
#   docker build -f deploy/images/hook-server.Dockerfile -t sandbox-snapshot-controller:dev .
# BASE_IMAGE is a public Node 20 image on glibc (the zstd binding is prebuilt for glibc); pin it by
# digest in your pipeline (node:20.19.5-bookworm-slim@sha256:...). The same image builds and runs:
# it needs node, npm and /bin/sh for the build stage, node for the runtime stage.
ARG BASE_IMAGE=docker.io/library/node:20.19.5-bookworm-slim

FROM ${BASE_IMAGE} AS build
# PREBUILT=true: the context already holds dist/ and production-only node_modules/ (made on the CI
# runner by `npm ci && npm run build && npm prune --omit=dev`), so nothing is downloaded or
# compiled here. The repository's .dockerignore keeps both out of a repository-root context, so
# PREBUILT=true needs a staged context (test/integration/images.test.ts makes one).
ARG PREBUILT=false
WORKDIR /src
ENV npm_config_cache=/tmp/npm-cache npm_config_update_notifier=false
COPY package.json package-lock.json ./
# No install scripts: nothing this project needs runs one (native bindings come prebuilt).
RUN if [ "$PREBUILT" != true ]; then npm ci --ignore-scripts --no-audit --no-fund; fi
COPY . .
RUN if [ "$PREBUILT" = true ]; then \
      test -f dist/server/main.js && test -f dist/committer/cli.js && test -d node_modules/express \
      && test -f hooks/schema/hooks.generated.json && test ! -d node_modules/typescript; \
    else \
      npm run build && npm prune --omit=dev --ignore-scripts --no-audit --no-fund; \
    fi

FROM ${BASE_IMAGE}
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# dist/api reads ../../hooks/schema/hooks.generated.json.
COPY --from=build /src/hooks/schema ./hooks/schema
# Non-root, numeric (runAsNonRoot can verify it); nothing is written to the root filesystem.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["node", "/app/dist/server/main.js"]
