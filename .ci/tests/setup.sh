#!/usr/bin/env bash
# Tests of the first command's setup, for the cases a new machine meets:
#  0. a bare Debian lacks a C compiler, pkg-config, make, Node and python3-venv: they are
#     installed from Debian's packages;
#  1. the Node on PATH is too old for Playwright (Debian 12 has 18): a pinned
#     Node from the npm registry is used instead;
#  2. the checkout sits in a folder the `postgres` user cannot enter (/root,
#     any `mktemp -d` folder are 0700): the private cluster still starts.
# Each fails without its fix. Called by .ci/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "-- a bare machine: the C toolchain, pkg-config, make and Node come from apt"
bare="$work/bare-bin"
mkdir -p "$bare"
# Only what a minimal Debian has: a shell and the core utilities.
for tool in bash sh env dirname cat printf id ls sort tail grep sed cut mktemp rm mkdir sha256sum; do
  ln -s "$(command -v "$tool")" "$bare/$tool"
done
cat >"$work/apt-get" <<'APT'
#!/bin/sh
# Records what would be installed.
[ "$1" = install ] && echo "$@" >>"$APT_LOG"
exit 0
APT
chmod +x "$work/apt-get"
APT_LOG="$work/apt.log" APT_GET="$work/apt-get" PATH="$bare" .ci/tools.sh system 2>/dev/null
for package in build-essential pkg-config make nodejs npm git postgresql-client python3-venv; do
  grep -qw -- "$package" "$work/apt.log" || fail "$package would not be installed: $(cat "$work/apt.log")"
done
echo "ok: $(cat "$work/apt.log")"

echo "-- a Node older than 20 on PATH: the pinned one is used"
mkdir -p "$work/old-node"
real_node=$(command -v node)
# Reports version 18 (and otherwise runs, so npm still works).
cat >"$work/old-node/node" <<STUB
#!/bin/sh
[ "\$1" = --version ] && { echo v18.19.0; exit 0; }
exec "$real_node" "\$@"
STUB
chmod +x "$work/old-node/node"
chosen=$(PATH="$work/old-node:$PATH" .ci/node.sh)
[ "$chosen" != "$work/old-node" ] || fail "the old Node was chosen"
version=$("$chosen/node" --version)
case "$version" in
  v2[0-9].*|v[3-9][0-9].*) echo "ok: $chosen/node is $version" ;;
  *) fail "the chosen Node is $version" ;;
esac

echo "-- a checkout inside a 0700 folder: PostgreSQL starts"
private="$work/private"
mkdir -m 0700 "$private"
git clone -q --no-hardlinks "$root" "$private/enclave"
# The scripts as they are in this working tree (the clone has the last commit).
cp "$root/.ci/pg.sh" "$root/.ci/free-port.sh" "$private/enclave/.ci/"
url=$("$private/enclave/.ci/pg.sh" start "$private/enclave/.data/pg")
answer=$(psql -qtA "$url/postgres" -c "SELECT 40 + 2")
"$private/enclave/.ci/pg.sh" remove "$private/enclave/.data/pg"
[ "$answer" = 42 ] || fail "PostgreSQL answered $answer"
echo "ok: the cluster started from $private (mode $(stat -c %a "$private")) and answered"
