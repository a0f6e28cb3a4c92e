#!/usr/bin/env bash
# `make release`: the production build in one folder that runs from
# anywhere (README "Run in production"):
#
#   dist/enclave/server            the server (ENCLAVE_* settings; `server --help`)
#   dist/enclave/site/             the site it serves: CSS, JS and WASM
#                                  (optimised by wasm-opt, with .br and .gz twins)
#   dist/enclave/enclave.service   the systemd unit
#   dist/enclave/nginx.conf        TLS in front (nginx)
#   dist/enclave/VERSION           the commit it was built from
#
# `server` finds `site/` next to itself; copy the folder anywhere (say
# /opt/enclave). The site is built into target/release-site, apart from the
# debug site in target/site that `make dev` and `make test` serve.
#
#   RELEASE_DIR   where to put the folder (default dist/enclave)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=${RELEASE_DIR:-$root/dist/enclave}
step() { printf '\n==> %s\n' "$*"; }

step "tools (wasm-opt for the release WASM)"
.ci/tools.sh bench

step "release build (cargo leptos build --release --precompress --split)"
# --split: each lazy route's code in files of its own (app/src/lib.rs).
LEPTOS_SITE_ROOT="$root/target/release-site" cargo leptos build --release --precompress --split

step "the release folder: $out"
rm -rf "$out"
mkdir -p "$out"
cp target/release/server "$out/server"
cp -r target/release-site "$out/site"
cp server/deploy/enclave.service server/deploy/nginx.conf "$out/"
git describe --always --dirty 2>/dev/null > "$out/VERSION" || echo unknown > "$out/VERSION"
du -sh "$out" "$out/server" "$out/site" | sed 's/^/  /'
echo "ready: $out (run $out/server config check, then $out/server)"
