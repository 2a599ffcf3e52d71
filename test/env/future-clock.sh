#!/usr/bin/env bash
# Runs the unit project with the wall clock moved ahead (libfaketime, Debian's `faketime`), so a test
# that is tied to the calendar — a literal date judged by the real clock — fails today instead of on
# some later day. Part of `npm test`; by hand: `npm run test:future-clock` (FUTURE_CLOCK_OFFSET=+800d
# to move further). Monotonic clocks stay real, so timers and timeouts behave as usual.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
offset="${FUTURE_CLOCK_OFFSET:-+400d}"

bash test/env/install-components.sh || true
if ! command -v faketime >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then
    echo "future-clock: faketime is missing (test/env/install-components.sh installs it as root) — failing, CI=true" >&2
    exit 1
  fi
  echo "future-clock: faketime is missing — run test/env/install-components.sh as root; skipped (not CI)" >&2
  exit 0
fi

export FAKETIME_DONT_FAKE_MONOTONIC=1
# Prove the offset reaches a Node process before trusting a green run.
real_year="$(date -u +%Y)"
faked_year="$(faketime -f "$offset" node -e 'process.stdout.write(String(new Date().getUTCFullYear()))')"
if [ "$faked_year" -le "$real_year" ]; then
  echo "future-clock: faketime $offset did not move Node's clock (year $faked_year, real $real_year)" >&2
  exit 1
fi
echo "future-clock: unit tests with the clock at $(faketime -f "$offset" date -u +%Y-%m-%dT%H:%MZ) ($offset)" >&2
exec faketime -f "$offset" npx vitest run --project unit
