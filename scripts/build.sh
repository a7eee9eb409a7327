#!/usr/bin/env bash
# Builds gatherd into DIR (default build/) with extra meson options; configures DIR once.
#   scripts/build.sh [DIR [MESON_OPTION...]]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "$@" >/dev/null
fi
ninja -C "$dir" >/dev/null
