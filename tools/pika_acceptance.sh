#!/usr/bin/env bash
# Run pika's own acceptance suite (tests/acceptance of github.com/pika/pika) against the
# broker at 127.0.0.1:$PORT (guest/guest, vhost /).
#
#   usage: tools/pika_acceptance.sh [pytest args...]     e.g.  -k Blocking  -x  --lf
#   env:   PORT=5672              broker port; the suite hard-codes 5672, other values are
#                                 patched into the cached copy (tests that bind 127.0.0.1:0
#                                 or proxy via ForwardServer follow the same setting)
#          TEST_TIMEOUT=60        per-test hard timeout (pytest-timeout), so a hung broker fails fast
#
# Two modes:
#
# * The installed release (default): the suite of the pika installed in $VENV, run with it.
#          VENV=/path/to/venv     (default: <repo>/.venv; gevent/tornado/twisted/pytest-timeout
#                                  are pip-installed into it if missing)
#          PIKA_SRC=/path/to/pika a pika clone (bare or not); its tag == installed version is
#                                 used if present, else its working tree
#          PIKA_CACHE=dir         where the suite is kept (default ~/.cache/trimq/pika-acceptance-<ver>)
#   Where the suite comes from, first that works: $PIKA_SRC; the cache; the PyPI sdist of the
#   installed version (pika <= 1.4.4 sdists do NOT ship tests/); the GitHub tag tarball
#   ($PIKA_TARBALL_URL overrides it). Only tests/ and pyproject.toml are extracted, so the
#   installed pika (not a checkout's) is what gets tested.
#
# * A revision of pika's repository, with that revision's pika (PIKA_REF=master for the
#   current development branch):
#          PIKA_REF=rev           a branch, tag or commit of $PIKA_SRC; "master" (or "main")
#                                 means the repository's default branch
#          PIKA_SRC=/path/to/pika a pika clone (bare or not), read with git archive; without it
#                                 the cached copy of the last run with this PIKA_REF is used
#          PIKA_CACHE=dir         the revision's whole tree (default ~/.cache/trimq/pika-<rev>-src)
#          PIKA_VENV=dir          its own venv (default ~/.cache/trimq/pika-<rev>-venv): pika
#                                 pip-installed from that tree plus the suite's dependencies
#                                 (pytest, pytest-timeout, gevent, tornado, twisted); VENV is not
#                                 used. Tree and pika are refreshed when the revision moves.
#
# Nothing is written inside this repo. The broker must accept connections to "localhost" as
# well as 127.0.0.1. TLS variants (--use-tls, port 5671) are not supported.
# ~190 of the 589 tests of 1.4.4 never touch the broker. Baseline vs RabbitMQ 3.10.8 (~12 s, Linux):
#   1.4.4: 545 passed, 4 failed, 40 skipped (kqueue variants). Failures: TestInvalidExchangeType...
#   (3.10 closes the connection 503, the test wants a channel close 406) and 3 x
#   TestGetaddrinfoWWWGoogleDotComPort80 (need DNS/internet; they pass on a networked host).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
PORT=${PORT:-5672}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/trimq

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

resolve_ref() {   # the commit PIKA_REF names in PIKA_SRC ("master"/"main": the default branch)
  local candidates=("$PIKA_REF")
  case "$PIKA_REF" in master|main) candidates=(master main HEAD) ;; esac
  for ref in "${candidates[@]}"; do
    git -C "$PIKA_SRC" rev-parse -q --verify "$ref^{commit}" 2>/dev/null && return 0
  done
  echo "no revision $PIKA_REF in $PIKA_SRC" >&2; exit 2
}

fetch_tree() {   # the whole tree of commit $1 into $SUITE (pika itself, its tests, pyproject)
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  git -C "$PIKA_SRC" archive "$1" | tar -x -C "$tmp"
  [ -d "$tmp/tests/acceptance" ] && [ -d "$tmp/pika" ] ||
    { echo "$PIKA_REF ($1) has no pika/ and tests/acceptance" >&2; exit 2; }
  echo "$1" >"$tmp/.commit"
  mkdir -p "$(dirname "$SUITE")"; rm -rf "$SUITE"; mv "$tmp" "$SUITE"; chmod 755 "$SUITE"
}

if [ -n "${PIKA_REF:-}" ]; then
  name=$(printf %s "$PIKA_REF" | tr -c 'A-Za-z0-9._-' _)
  SUITE=${PIKA_CACHE:-$CACHE/pika-$name-src}
  PIKA_VENV=${PIKA_VENV:-$CACHE/pika-$name-venv}
  if [ -n "${PIKA_SRC:-}" ]; then
    commit=$(resolve_ref)
    [ "$(cat "$SUITE/.commit" 2>/dev/null)" = "$commit" ] || fetch_tree "$commit"
  fi
  [ -f "$SUITE/.commit" ] ||
    { echo "no cached pika $PIKA_REF suite in $SUITE: set PIKA_SRC=/path/to/pika/clone" >&2; exit 2; }
  commit=$(cat "$SUITE/.commit")
  PY="$PIKA_VENV/bin/python"
  if [ ! -x "$PY" ]; then
    base=python3; [ -x "$VENV/bin/python" ] && base="$VENV/bin/python"
    "$base" -m venv "$PIKA_VENV"
  fi
  "$PY" -c 'import gevent, tornado, twisted, pytest, pytest_timeout' 2>/dev/null ||
    "$PY" -m pip install -q gevent tornado twisted pytest pytest-timeout
  if [ "$(cat "$PIKA_VENV/.pika-commit" 2>/dev/null)" != "$commit" ]; then
    "$PY" -m pip install -q --no-deps --force-reinstall "$SUITE"
    rm -rf "$SUITE/build" "$SUITE"/*.egg-info
    echo "$commit" >"$PIKA_VENV/.pika-commit"
  fi
  echo "pika acceptance suite of $PIKA_REF ($commit), pika $("$PY" -c 'import pika; print(pika.__version__)') from $PIKA_VENV" >&2
else
  PY="$VENV/bin/python"
  VER=$("$PY" -c 'import pika; print(pika.__version__)')
  SUITE=${PIKA_CACHE:-$CACHE/pika-acceptance-$VER}
  if [ -n "${PIKA_SRC:-}" ] || [ ! -d "$SUITE/tests/acceptance" ]; then fetch_suite; fi
  # Extra test deps (the async tests run every test on gevent, tornado and asyncio; twisted has
  # its own file).
  "$PY" -c 'import gevent, tornado, twisted, pytest_timeout' 2>/dev/null ||
    "$PY" -m pip install -q gevent tornado twisted pytest pytest-timeout
fi

# Point the suite at $PORT (idempotent; restores 5672 too): every "port=N" keyword and
# {'port': N} of tests/acceptance and tests/base (1.4.4 has two, master more).
files=$(grep -lrE "port=[0-9]+|'port': [0-9]+\}" "$SUITE/tests/acceptance" "$SUITE/tests/base" || true)
[ -n "$files" ] || { echo "no broker port found in the suite" >&2; exit 2; }
# shellcheck disable=SC2086
sed -i -E "s/\bport=[0-9]+/port=$PORT/g; s/\{'port': [0-9]+\}/{'port': $PORT}/g" $files
# shellcheck disable=SC2086
if grep -hE "port=[0-9]+|'port': [0-9]+\}" $files | grep -vqE "port=$PORT\b|'port': $PORT\}"; then
  echo "could not set PORT=$PORT in the suite" >&2; exit 2
fi

cd "$SUITE"
# -o addopts= drops pika's "-v"; -rfE lists failures/errors before the summary line.
exec "$PY" -m pytest tests/acceptance -o addopts= -q -rfE --tb=short \
  --timeout="${TEST_TIMEOUT:-60}" "$@"
