#!/usr/bin/env bash
# Prints the path of a promtool binary, fetching it on first use: Debian's prometheus package
# would also install and start a Prometheus server, so its promtool is extracted instead
# (apt-get download + dpkg -x) into ${XDG_CACHE_HOME:-~/.cache}/gatherd.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}/gatherd
tool=$cache/prometheus/usr/bin/promtool
if [ ! -x "$tool" ]; then
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/download.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download prometheus >/dev/null 2>&1) ||
    { apt-get update -qq && (cd "$work" && apt-get download prometheus >/dev/null); }
  dpkg -x "$work"/prometheus_*.deb "$cache/prometheus"
fi
echo "$tool"
