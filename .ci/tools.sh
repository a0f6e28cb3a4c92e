#!/usr/bin/env bash
# Installs what building and testing Enclave needs, and only what is missing or
# at the wrong version. Safe to run again: every step checks first.
#
#   .ci/tools.sh build   toolchain for building and running the app
#   .ci/tools.sh test    the above, plus Chromium and the Playwright packages
#   .ci/tools.sh bench   the build tools, plus wasm-opt for release WASM; with
#                        BENCH_PEERS=1 also Open WebUI (.ci/peers/open-webui),
#                        Chromium and Playwright, for the peer's rows
#   .ci/tools.sh system  only the packages from Debian (.ci/tests/setup.sh
#                        checks what a bare machine gets; APT_GET names the
#                        apt-get to call)
#
# It needs only Rust (rustup) and Debian's apt: a fresh Debian 12 lacks a C
# compiler, pkg-config, make and Node, and gets them here. Node must be 20 or
# newer for Playwright; .ci/node.sh brings a pinned one when the system's is
# older (Debian 12 ships 18).
#
# Why the lockfile edits below: each build tool is installed from its
# published source with its own lockfile (`--locked`), and a few of the
# versions those lockfiles pin are not in the crate registry Enclave builds
# against (or need a newer rustc). So the tool's source is unpacked and that
# one dependency moved to the nearest version that exists and builds.
set -euo pipefail

WASM_BINDGEN_VERSION=0.2.130   # must equal the wasm-bindgen crate pinned in Cargo.toml
CARGO_LEPTOS_VERSION=0.3.11
# Release builds only. Not Debian's binaryen (wasm-opt 108): its output makes
# the browser throw `WebAssembly.Table.set(): Argument 1 is invalid`.
WASM_OPT_VERSION=0.116.1
# The dependency policy (deny.toml), checked offline by `make test`.
CARGO_DENY_VERSION=0.20.2
mode=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)

log() { printf '[tools] %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

APT_GET=${APT_GET:-apt-get}
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    $SUDO "$APT_GET" update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $SUDO "$APT_GET" install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# Unpacks a crate's published source into a fresh folder and prints the folder.
crate_source() {
  local name=$1 version=$2 dir
  dir=$(mktemp -d)
  local file
  file=$(ls ~/.cargo/registry/cache/*/"$name-$version.crate" 2>/dev/null | head -n 1 || true)
  if [ -z "$file" ]; then
    # `cargo info` downloads the .crate into the registry cache.
    cargo info "$name@$version" >/dev/null 2>&1 || true
    file=$(ls ~/.cargo/registry/cache/*/"$name-$version.crate" 2>/dev/null | head -n 1 || true)
  fi
  [ -n "$file" ] || { log "could not download $name $version"; exit 1; }
  tar -xzf "$file" -C "$dir"
  printf '%s/%s-%s\n' "$dir" "$name" "$version"
}

# Installs a crate from its source with one lockfile entry moved (pkg@version).
install_with_lock_fix() {
  local name=$1 version=$2 pin_pkg=$3 pin_version=$4; shift 4
  local src
  src=$(crate_source "$name" "$version")
  (
    cd "$src"
    cargo update -q -p "$pin_pkg" --precise "$pin_version"
    CARGO_TARGET_DIR="$src/target" cargo install -q --path . --locked "$@"
  )
  rm -rf "$(dirname "$src")"
}

# A C toolchain (crates with C parts: ring, mimalloc), and the small tools
# the scripts use.
missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
for tool in curl python3 make git; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
# Debian's python3 makes virtual environments only with python3-venv.
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# PostgreSQL server binaries (initdb, pg_ctl) for the private dev/test cluster.
if [ -z "$(pg_bin)" ] && [ -z "${ENCLAVE_DATABASE_URL:-}${ENCLAVE_TEST_DATABASE_URL:-}" ]; then
  apt_install postgresql
fi
# runuser (initdb refuses to run as root) comes from util-linux, always present.
[ "$mode" = system ] && exit 0

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 4 min)"
  install_with_lock_fix wasm-bindgen-cli "$WASM_BINDGEN_VERSION" webpki-roots 1.0.10
fi

if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  log "installing cargo-leptos $CARGO_LEPTOS_VERSION with no_downloads (15-30 min, once)"
  install_with_lock_fix cargo-leptos "$CARGO_LEPTOS_VERSION" cargo-util-schemas 0.14.1 --features no_downloads
fi

if [ "$mode" = bench ] && ! cargo install --list | grep -q "^wasm-opt v$WASM_OPT_VERSION:"; then
  log "installing wasm-opt $WASM_OPT_VERSION (binaryen 116, about 12 min, once)"
  cargo install -q --locked wasm-opt --version "$WASM_OPT_VERSION"
fi

if [ "$mode" = test ] && ! cargo deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
  log "installing cargo-deny $CARGO_DENY_VERSION (about 2 min, once)"
  cargo install -q --locked cargo-deny --version "$CARGO_DENY_VERSION"
fi

# Debian's Chromium and the Playwright packages of end2end (no browser
# download); sets node_dir. Playwright needs Node 20 or newer: a pinned one
# when the system's is older.
playwright_and_chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium
  fi
  node_dir=$("$here/.ci/node.sh")
  if [ ! -d "$here/end2end/node_modules/@playwright/test" ]; then
    log "npm ci in end2end (Playwright without a browser download)"
    (cd "$here/end2end" && PATH="$node_dir:$PATH" PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
  fi
}

# A private virtual environment in .ci/peers/$1 (never the system's Python)
# with the pinned requirements file $2, installed again when that changes.
pinned_venv() {
  local dir="$here/.ci/peers/$1" requirements="$here/.ci/peers/$2"
  local mark="$dir/.installed-$(sha256sum "$requirements" | cut -c1-16)"
  if [ ! -e "$mark" ]; then
    log "pip install in .ci/peers/$1 ($3)"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    touch "$mark"
  fi
}

if [ "$mode" = test ]; then
  playwright_and_chromium
  # nginx and openssl's command line for the production walk-through (TLS
  # in front of the release build). Debian starts a newly installed nginx
  # on port 80: a policy-rc.d for the install keeps it from starting (the
  # walk-through runs its own on a free port).
  if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    policy_made=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
      $SUDO chmod +x /usr/sbin/policy-rc.d
      policy_made=1
    fi
    apt_install nginx-light openssl
    [ -n "$policy_made" ] && $SUDO rm -f /usr/sbin/policy-rc.d
  fi
  # The official MCP peers the Rust tests talk to (the reference server and
  # the inspector CLI). `npm install --no-save` rather than `npm ci`: one of
  # vite's optional Windows-only packages is not on this registry, which
  # `npm ci` counts as a lock file out of sync; the lock still pins the rest.
  peers_mark="$here/.ci/peers/node_modules/.installed-$(sha256sum "$here/.ci/peers/package-lock.json" | cut -c1-16)"
  if [ ! -e "$peers_mark" ]; then
    log "npm install in .ci/peers (the MCP reference server and inspector)"
    (cd "$here/.ci/peers" && PATH="$node_dir:$PATH" INSPECTOR_SKIP_CLIENT_INSTALL=1 \
      npm install --no-save --no-audit --no-fund --silent)
    touch "$peers_mark"
  fi
  # The openai SDK for Python and schemathesis, pinned with what they need.
  pinned_venv python requirements.txt "the openai SDK, schemathesis, stripe"
fi
if [ "$mode" = bench ] && [ "${BENCH_PEERS:-}" = 1 ]; then
  # Chromium weighs both first loads.
  playwright_and_chromium
  pinned_venv open-webui open-webui.txt "Open WebUI, about 7 GB, a few minutes"
fi
log "tools ready"
