#!/usr/bin/env bash
# Prints a folder holding a `node` of version 22.19 or newer (what the MCP
# inspector needs; Playwright needs 20), for the caller to put first on PATH. The machine's own Node is
# used when it is new enough; otherwise (Debian 12's is 18) a pinned Node is
# installed once from the npm registry, where the `node` package brings its
# binary as another npm package (no download from outside the registries),
# into a cache folder kept between runs.
#
#   ENCLAVE_TOOLS_CACHE   where to keep it (default ~/.cache/enclave)
set -euo pipefail

NODE_MIN=22.19.0
NODE_PINNED=22.23.3

log() { printf '[node] %s\n' "$*" >&2; }

major() { "$1" --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'; }
# Whether version $1 (x.y.z) is at least $2.
at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

if command -v node >/dev/null 2>&1; then
  have=$(node --version 2>/dev/null | sed 's/^v//')
  if [ -n "$have" ] && at_least "$have" "$NODE_MIN"; then
    dirname "$(command -v node)"
    exit 0
  fi
  log "Node $have is older than $NODE_MIN"
fi

cache=${ENCLAVE_TOOLS_CACHE:-$HOME/.cache/enclave}/node-$NODE_PINNED
bin="$cache/node_modules/node/bin"
if [ ! -x "$bin/node" ] || [ "$(major "$bin/node")" != "${NODE_PINNED%%.*}" ]; then
  command -v npm >/dev/null 2>&1 || { log "npm is missing: run .ci/tools.sh"; exit 1; }
  log "installing Node $NODE_PINNED from the npm registry into $cache"
  mkdir -p "$cache"
  npm install --prefix "$cache" --no-audit --no-fund --silent "node@$NODE_PINNED" >&2
fi
[ -x "$bin/node" ] || { log "the pinned Node did not install"; exit 1; }
echo "$bin"
