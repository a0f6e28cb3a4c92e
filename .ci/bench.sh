#!/usr/bin/env bash
# `make bench`: the chat-path benchmark (BENCHMARKS.md). On demand, not part
# of CI's pass/fail. Builds the release site (WASM optimised by wasm-opt,
# precompressed with gzip and brotli), starts a private PostgreSQL with its
# default durability (fsync and synchronous commit on), then runs
# server/benches/chat.rs, which starts the fake provider and Enclave itself
# and prints the table (also written to target/bench/report.md).
#
#   BENCH_QUICK=1 make bench   a shorter run, for trying a change
#   BENCH_PEERS=1 make bench   also Open WebUI beside Enclave (installs it once,
#                              about 7 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
step() { printf '\n==> %s\n' "$*"; }

step "tools"
.ci/tools.sh bench

# The site only: the measured server is the one `cargo bench` builds (with
# the bench's features and flags). Building cargo-leptos's server as well
# cost a second full release build of app and server on every run, since
# the two builds' differing environments rebuilt each other's crates.
step "release site (cargo leptos build --release --precompress --split --frontend-only)"
cargo leptos build --release --precompress --split --frontend-only

step "PostgreSQL (a private cluster, default durability)"
rm -rf .data/bench-pg
base=$(.ci/pg.sh start .data/bench-pg)
trap '.ci/pg.sh stop .data/bench-pg' EXIT

# 10,000 open streams need about 10,000 sockets in the server and in the
# fake provider: ask for as many descriptors as the machine allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open files allowed: $(ulimit -n)"

peers=()
if [ "${BENCH_PEERS:-}" = 1 ]; then
  peers=(BENCH_OPEN_WEBUI="$root/.ci/peers/open-webui/bin/open-webui"
         BENCH_NODE="$(.ci/node.sh)/node")
fi

step "benchmark"
# The same flags cargo-leptos gives the release server (always-erase-components),
# so the benchmarked server is built like the one `cargo leptos build` makes.
# LEPTOS_OUTPUT_NAME at compile time too, as cargo-leptos gives it: without
# it Leptos names the WASM `enclave_bg.wasm`, which the site does not have.
env "${peers[@]}" \
LEPTOS_OUTPUT_NAME=enclave \
RUSTFLAGS="--cfg erase_components" \
BENCH_DATABASE_URL="$base/postgres" \
LEPTOS_SITE_ROOT="$root/target/site" \
BENCH_REPORT="$root/target/bench/report.md" \
  cargo bench -p server --features h2c --bench chat

step "knowledge: search and ingestion (figures only)"
cargo bench -p app --features ssr --bench vectors --bench ingest --profile bench-quick
