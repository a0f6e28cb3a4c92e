#!/usr/bin/env bash
# `make audit`: known vulnerabilities in what Enclave is built and tested
# with. Rust crates against the RustSec advisory database (cargo deny check
# advisories, which fetches it from GitHub), and the npm packages of the
# browser tests and the test peers (npm audit, the registry's audit service).
# Both need the network. Where a source cannot be reached this says so and
# exits non-zero: an audit that could not run never passes.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
.ci/tools.sh test >/dev/null || exit 1
node_dir=$(.ci/node.sh)
failed=()

echo "==> Rust crates (RustSec advisory database)"
out=$(cargo deny check advisories 2>&1)
rc=$?
echo "$out" | grep -v '^\s*$' | tail -n 40
if [ $rc -ne 0 ]; then
  if echo "$out" | grep -q "failed to fetch advisory database"; then
    echo "could not fetch the RustSec advisory database (github.com): no Rust advisory was checked" >&2
  fi
  failed+=("Rust crates")
fi

for dir in end2end .ci/peers; do
  echo "==> npm packages in $dir"
  out=$(cd "$root/$dir" && PATH="$node_dir:$PATH" npm audit --omit=optional 2>&1)
  rc=$?
  echo "$out" | tail -n 20
  if [ $rc -ne 0 ]; then
    if echo "$out" | grep -q "audit endpoint returned an error"; then
      echo "the npm registry's audit service could not be reached: $dir was not checked" >&2
    fi
    failed+=("npm packages in $dir")
  fi
done

if [ ${#failed[@]} -ne 0 ]; then
  echo >&2
  echo "audit NOT passed: ${failed[*]} (vulnerable, or not checked: see above)" >&2
  exit 1
fi
echo "audit passed: no known vulnerability"
