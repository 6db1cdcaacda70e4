#!/usr/bin/env bash
# Compile llama-cpp-python (the version of requirements.lock) into the environment of PYTHON.
#
#   scripts/build_llama.sh PYTHON        (make install and binder/postBuild call it)
#
# Flags: $LLAMA_CMAKE_ARGS, else scripts/llama_cmake_args -- portable x86-64 from AVX2 up, with or
# without AVX-512/AMX (README, "llama.cpp build"). Always compiled here: --no-cache-dir and
# --no-binary keep pip from taking a wheel built with other flags or on another machine.
# The flags used are recorded in $prefix/.qlab-llama-build for `qlab doctor`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:?usage: scripts/build_llama.sh PYTHON}
ARGS=${LLAMA_CMAKE_ARGS:-$(cat scripts/llama_cmake_args)}
PIN=$(grep -E '^llama-cpp-python==' requirements.lock)
echo "build_llama: $PIN with CMAKE_ARGS=\"$ARGS\""
CMAKE_ARGS="$ARGS" FORCE_CMAKE=1 "$PY" -m pip install --no-cache-dir --no-binary llama-cpp-python \
    --no-deps --force-reinstall "$PIN"
prefix=$("$PY" -c 'import sys; print(sys.prefix)')
echo "$PIN $ARGS" > "$prefix/.qlab-llama-build.tmp" && mv "$prefix/.qlab-llama-build.tmp" "$prefix/.qlab-llama-build"
