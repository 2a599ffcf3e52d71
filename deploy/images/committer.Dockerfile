# The committer image, run by the commit and unpause Jobs (privileged, on the sandbox's node).
# Build from the repository root:
#   buildah bud -f deploy/images/committer.Dockerfile -t image-committer:dev .
# The Jobs pass arguments only (`<pod> <namespace> <container>:<image>...` or `unpause ...`); the
# entrypoint is the CLI itself, exec form, no shell. It runs as root: it talks to containerd's socket
# and reads overlay upper directories under containerd's root. BASE_IMAGE must be glibc-based (the
# zstd binding is prebuilt for glibc) and carry GNU tar, which reads the upper directories
# (docs/committer.md); Debian's node images have both.
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
# dist/containerd/proto holds containerd's API definitions (copied by the build).
COPY --from=build /src/dist ./dist
COPY --from=build /src/hooks/schema ./hooks/schema
ENTRYPOINT ["node", "/app/dist/committer/cli.js"]
