#!/usr/bin/env bash
# Regenerate requirements.lock, the exact environment that `make install`, .ci/run and binder/ share.
#
#   make lock                  (keeps the current pins where they still fit)
#   make lock LOCK_UPGRADE=1   (takes the newest versions pyproject.toml allows)
#
# pip-compile (pip-tools) resolves pyproject.toml's ranges plus the [test] extra with pip's own
# resolver, so it sees the same indexes and find-links that pip is configured with.  torch must
# resolve to the 2.13.0 CPU build (a PyTorch CPU index, or a local CPU wheel); its local label
# `+cpu` is stripped so that the lock names the version only and `pip install -r` accepts the CPU
# wheel installed beforehand by `make install`.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp requirements.lock.XXXXXX)
tools=$(mktemp -d)
trap 'rm -rf "$tmp" "$tmp.final" "$tools"' EXIT
# pip-compile runs from a throwaway venv, so the project's .venv stays exactly the lock
PY=${PYTHON_FOR_LOCK:-}
if [ -z "$PY" ]; then
    "${PYTHON:-python3.11}" -m venv "$tools/venv"
    PY="$tools/venv/bin/python"
fi
"$PY" -m pip install -q "pip-tools==7.7.0"
# start from the current pins (pip-compile keeps them unless they conflict); LOCK_UPGRADE=1 takes
# the newest versions that the ranges of pyproject.toml allow
[ -f requirements.lock ] && sed -E 's/^(torch==[0-9.]+)$/\1+cpu/' requirements.lock > "$tmp"
upgrade=()
[ "${LOCK_UPGRADE:-0}" = 1 ] && upgrade=(--upgrade)
"$PY" -m piptools compile "${upgrade[@]}" --quiet --extra test --strip-extras --allow-unsafe \
    --no-emit-index-url --no-emit-find-links --no-header -o "$tmp" pyproject.toml
{
    echo "# qlab's exact environment: every package, pinned.  Regenerate with \`make lock\`"
    echo "# (scripts/lock.sh: pip-compile over pyproject.toml + the [test] extra).  Install with"
    echo "# \`make install\`, which builds llama-cpp-python with portable CPU flags first."
    sed -E 's/^(torch==[0-9.]+)\+cpu/\1/' "$tmp"
} > "$tmp.final"
mv "$tmp.final" requirements.lock
echo "lock: wrote requirements.lock ($(grep -c '==' requirements.lock) pins)"
