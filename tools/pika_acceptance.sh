#!/usr/bin/env bash
# Run pika's own acceptance suite (tests/acceptance of github.com/pika/pika) against the
# broker at 127.0.0.1:$PORT (guest/guest, vhost /), using the pika installed in $VENV.
#
#   usage: tools/pika_acceptance.sh [pytest args...]     e.g.  -k Blocking  -x  --lf
#   env:   VENV=/path/to/venv     (default: <repo>/.venv; gevent/tornado/twisted/pytest-timeout
#                                  are pip-installed into it if missing)
#          PORT=5672              broker port; the suite hard-codes 5672, other values are
#                                 patched into the cached copy (tests that bind 127.0.0.1:0
#                                 or proxy via ForwardServer follow the same setting)
#          PIKA_SRC=/path/to/pika a pika clone (bare or not); its tag == installed version is
#                                 used if present, else its working tree
#          PIKA_CACHE=dir         where the suite is kept (default ~/.cache/trimq/pika-acceptance-<ver>)
#          TEST_TIMEOUT=60        per-test hard timeout (pytest-timeout), so a hung broker fails fast
#
# Where the suite comes from, first that works: $PIKA_SRC; the cache; the PyPI sdist of the
# installed version (pika <= 1.4.4 sdists do NOT ship tests/); the GitHub tag tarball
# ($PIKA_TARBALL_URL overrides it). Only tests/ and pyproject.toml are extracted, so the
# installed pika (not a checkout's) is what gets tested. Nothing is written inside this repo.
# The broker must accept connections to "localhost" as well as 127.0.0.1 (async tests use
# localhost, blocking tests 127.0.0.1). TLS variants (--use-tls, port 5671) are not supported.
# ~190 of the 589 tests never touch the broker. Baseline vs RabbitMQ 3.10.8 (~12 s, Linux):
#   545 passed, 4 failed, 40 skipped (kqueue variants). Failures: TestInvalidExchangeType...
#   (3.10 closes the connection 503, the test wants a channel close 406) and 3 x
#   TestGetaddrinfoWWWGoogleDotComPort80 (need DNS/internet; they pass on a networked host).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
PORT=${PORT:-5672}
PY="$VENV/bin/python"
VER=$("$PY" -c 'import pika; print(pika.__version__)')
SUITE=${PIKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trimq/pika-acceptance-$VER}

fetch_suite() {   # populate $SUITE with tests/ and pyproject.toml of pika $VER
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/s"
  if [ -n "${PIKA_SRC:-}" ]; then
    if git -C "$PIKA_SRC" rev-parse -q --verify "refs/tags/$VER" >/dev/null 2>&1; then
      git -C "$PIKA_SRC" archive "refs/tags/$VER" tests pyproject.toml | tar -x -C "$tmp/s"
    else
      echo "warning: no tag $VER in $PIKA_SRC, using its working tree" >&2
      cp -r "$PIKA_SRC/tests" "$PIKA_SRC/pyproject.toml" "$tmp/s/"
    fi
  else
    "$PY" -m pip download -q --no-deps --no-binary :all: "pika==$VER" -d "$tmp" >&2 || true
    if tar -tzf "$tmp/pika-$VER.tar.gz" 2>/dev/null | grep -q "^pika-$VER/tests/acceptance/"; then
      tar -xzf "$tmp/pika-$VER.tar.gz" -C "$tmp/s" --strip-components=1 "pika-$VER/tests" "pika-$VER/pyproject.toml"
    else
      echo "PyPI sdist of pika $VER has no tests/; trying the GitHub tag tarball" >&2
      curl -fsSL "${PIKA_TARBALL_URL:-https://github.com/pika/pika/archive/refs/tags/$VER.tar.gz}" -o "$tmp/gh.tgz" ||
        { echo "cannot get pika $VER tests: set PIKA_SRC=/path/to/pika/clone" >&2; exit 2; }
      tar -xzf "$tmp/gh.tgz" -C "$tmp/s" --strip-components=1 --wildcards '*/tests' '*/pyproject.toml'
    fi
  fi
  [ -d "$tmp/s/tests/acceptance" ] || { echo "no tests/acceptance found" >&2; exit 2; }
  mkdir -p "$(dirname "$SUITE")"; rm -rf "$SUITE"; mv "$tmp/s" "$SUITE"; rm -rf "$tmp"
}
if [ -n "${PIKA_SRC:-}" ] || [ ! -d "$SUITE/tests/acceptance" ]; then fetch_suite; fi

# Extra test deps (the async tests run every test on gevent, tornado and asyncio; twisted has its own file).
"$PY" -c 'import gevent, tornado, twisted, pytest_timeout' 2>/dev/null ||
  "$PY" -m pip install -q gevent tornado twisted pytest pytest-timeout

# Point the suite at $PORT (idempotent; restores 5672 too).
sed -i -E "s/\{'port': [0-9]+\}/{'port': $PORT}/" "$SUITE/tests/acceptance/blocking_adapter_test.py"
sed -i -E "s/host='localhost', port=[0-9]+\)/host='localhost', port=$PORT)/" "$SUITE/tests/base/async_test_base.py"
[ "$(cat "$SUITE"/tests/{acceptance/blocking_adapter_test,base/async_test_base}.py |
  grep -cE "'port': $PORT\}|host='localhost', port=$PORT\)")" = 2 ] ||
  { echo "could not set PORT=$PORT in the suite" >&2; exit 2; }

cd "$SUITE"
# -o addopts= drops pika's "-v"; -rfE lists failures/errors before the summary line.
exec "$PY" -m pytest tests/acceptance -o addopts= -q -rfE --tb=short \
  --timeout="${TEST_TIMEOUT:-60}" "$@"
