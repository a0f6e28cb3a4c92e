#!/usr/bin/env bash
# The README's second command, and what CI runs: formatting, lints for the
# server and the WASM build, the check that no server-only crate reaches the
# WASM bundle, Rust tests against a real PostgreSQL, and browser tests in
# Debian's Chromium against the real server. Starts everything it needs and
# stops it all on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
step() { printf '\n==> %s\n' "$*"; }

step "tools"
.ci/tools.sh test

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (server side, all targets)"
cargo clippy -p app -p server --features app/ssr --all-targets -- -D warnings
step "clippy (WASM side)"
cargo clippy -p app -p frontend --features app/hydrate --target wasm32-unknown-unknown -- -D warnings

step "dependency policy (cargo deny: licenses, banned crates, sources; offline)"
# deny.toml: licenses from an allow list, no OpenSSL or second TLS stack,
# only the crate registry. Duplicate versions are reported as warnings.
# cargo-deny reads the metadata of every target's crates; a build fetches
# only this machine's, so a fresh checkout fetches the rest first.
cargo fetch --locked --quiet
cargo deny --offline --log-level error check bans licenses sources

step "no server-only crate in the WASM bundle"
forbidden='^(sqlx|sqlx-core|sqlx-postgres|tokio|axum|hyper|argon2|sha2|hmac|cookie|leptos_axum|reqwest|eventsource-stream|tower|tower-http|aes-gcm|zeroize|tracing-subscriber|rustls|ring)$'
leaks=$(cargo tree -p frontend --target wasm32-unknown-unknown -e normal,no-proc-macro --prefix none --format '{p}' \
  | awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
if [ -n "$leaks" ]; then
  echo "server-only crates reached the WASM bundle:" $leaks >&2
  exit 1
fi
echo "ok: none of them is a dependency of frontend on wasm32"

# Everything below needs a database server: a throwaway cluster, unless
# ENCLAVE_TEST_DATABASE_URL names a server to use (a DATABASE_URL left in the
# shell is ignored: it may be another project's). The Rust tests make a fresh
# database per test on it; sqlx's test harness reads DATABASE_URL.
if [ -z "${ENCLAVE_TEST_DATABASE_URL:-}" ]; then
  .ci/pg.sh remove .data/test-pg
  export PG_EXTRA_OPTS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  base=$(.ci/pg.sh start .data/test-pg)
else
  base=${ENCLAVE_TEST_DATABASE_URL%/*}
fi
export DATABASE_URL="$base/postgres"
server_pid=""
billing_pid=""
fake_pid=""
release_pid=""
# Stops a process and everything it started (the release build's cargo).
kill_tree() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
cleanup() {
  [ -n "$release_pid" ] && kill_tree "$release_pid"
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [ -n "$billing_pid" ] && kill "$billing_pid" 2>/dev/null && wait "$billing_pid" 2>/dev/null || true
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null || true
  [ -d .data/test-pg ] && .ci/pg.sh stop .data/test-pg || true
}
trap cleanup EXIT

step "setup scripts: an old Node, a checkout in a private folder"
.ci/tests/setup.sh

step "Rust tests (a fresh database per test)"
RUST_BACKTRACE=0 cargo test -p app -p server --features app/ssr

step "build the app (cargo leptos build --split)"
cargo leptos build --split

step "browser tests (Playwright, Debian Chromium)"
psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS enclave_e2e" -c "CREATE DATABASE enclave_e2e" >/dev/null
free_port() { "$root/.ci/free-port.sh"; }
# Waits until the server on port $1 (process $2, log $3) is ready to serve.
wait_ready() {
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$1/ready" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; exit 1; }
    sleep 0.2
  done
  echo "the server on port $1 did not become ready" >&2
  cat "$3" >&2
  exit 1
}
# The fake model provider (a real HTTP server speaking the providers' formats).
fake_port=$(free_port)
target/debug/server fake-provider "127.0.0.1:$fake_port" >"$root/target/e2e-fake-provider.log" 2>&1 &
fake_pid=$!
port=$(free_port)
log="$root/target/e2e-server.log"
# The browser tests run the operator's command line too (`server policy
# publish`), against the same database and master key.
e2e_db="${DATABASE_URL%/*}/enclave_e2e"
e2e_key="$(head -c 32 /dev/urandom | base64)"
LEPTOS_SITE_ROOT="$root/target/site" \
ENCLAVE_DATABASE_URL="$e2e_db" \
ENCLAVE_ADDR="127.0.0.1:$port" \
ENCLAVE_PUBLIC_URL="http://localhost:$port" \
ENCLAVE_MASTER_KEY="$e2e_key" \
ENCLAVE_LOG="info" \
ENCLAVE_SIGN_UP_LIMIT_PER_IP=10000 \
ENCLAVE_OPENAI_BASE_URL="http://127.0.0.1:$fake_port/openai/v1" \
ENCLAVE_OPENAI_API_KEY="e2e-platform-key" \
ENCLAVE_GITHUB_API_URL="http://127.0.0.1:$fake_port/github" \
ENCLAVE_SLACK_API_URL="http://127.0.0.1:$fake_port/slack" \
ENCLAVE_TELEGRAM_API_URL="http://127.0.0.1:$fake_port/telegram" \
ENCLAVE_EGRESS_ALLOW="127.0.0.1:$fake_port" \
ENCLAVE_DEMO_MODEL=true \
ENCLAVE_MAIL_CATCHER=true \
ENCLAVE_OIDC_PROVIDERS=fake \
ENCLAVE_OIDC_FAKE_NAME="Fake ID" \
ENCLAVE_OIDC_FAKE_ISSUER="http://127.0.0.1:$fake_port/oidc" \
ENCLAVE_OIDC_FAKE_CLIENT_ID=enclave-test-client \
ENCLAVE_OIDC_FAKE_CLIENT_SECRET=fake-oidc-client-secret \
ENCLAVE_SIGN_IN_LIMIT_PER_IP=10000 \
  target/debug/server >"$log" 2>&1 &
server_pid=$!
wait_ready "$port" "$server_pid" "$log"
# A second server, on its own database, that runs on prepaid credits with
# card payments through the fake Stripe (usage.spec.ts): the billing mode
# is per deployment, and the other browser tests chat without credits.
psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS enclave_e2e_billing" -c "CREATE DATABASE enclave_e2e_billing" >/dev/null
billing_port=$(free_port)
billing_log="$root/target/e2e-billing-server.log"
stripe_webhook_secret="whsec_e2e_$(head -c 18 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')"
LEPTOS_SITE_ROOT="$root/target/site" \
ENCLAVE_DATABASE_URL="${DATABASE_URL%/*}/enclave_e2e_billing" \
ENCLAVE_ADDR="127.0.0.1:$billing_port" \
ENCLAVE_PUBLIC_URL="http://localhost:$billing_port" \
ENCLAVE_MASTER_KEY="$e2e_key" \
ENCLAVE_LOG="info" \
ENCLAVE_SIGN_UP_LIMIT_PER_IP=10000 \
ENCLAVE_SIGN_IN_LIMIT_PER_IP=10000 \
ENCLAVE_OPENAI_BASE_URL="http://127.0.0.1:$fake_port/openai/v1" \
ENCLAVE_OPENAI_API_KEY="e2e-platform-key" \
ENCLAVE_EGRESS_ALLOW="127.0.0.1:$fake_port" \
ENCLAVE_MAIL_CATCHER=true \
ENCLAVE_BILLING=credits \
ENCLAVE_STRIPE_API_URL="http://127.0.0.1:$fake_port/stripe" \
ENCLAVE_STRIPE_SECRET_KEY="sk_test_e2e_enclave" \
ENCLAVE_STRIPE_WEBHOOK_SECRET="$stripe_webhook_secret" \
  target/debug/server >"$billing_log" 2>&1 &
billing_pid=$!
wait_ready "$billing_port" "$billing_pid" "$billing_log"
curl -fsS -X POST "http://127.0.0.1:$fake_port/fakes/stripe/config" -H 'content-type: application/json' \
  -d "{\"webhook_url\": \"http://127.0.0.1:$billing_port/stripe/webhook\", \"webhook_secret\": \"$stripe_webhook_secret\", \"secret_key\": \"sk_test_e2e_enclave\"}"
e2e_out="$root/target/e2e-playwright.txt"
node_dir=$(.ci/node.sh)
set +e
(cd end2end && PATH="$node_dir:$PATH" BASE_URL="http://localhost:$port" FAKE_URL="http://127.0.0.1:$fake_port" \
  BILLING_URL="http://localhost:$billing_port" \
  ENCLAVE_DATABASE_URL="$e2e_db" ENCLAVE_MASTER_KEY="$e2e_key" ENCLAVE_PUBLIC_URL="http://localhost:$port" \
  npx playwright test) 2>&1 | tee "$e2e_out"
e2e_rc=${PIPESTATUS[0]}
set -e

step "no secret in the server log"
# Every password and email the browser tests typed carries this canary
# (end2end/tests/helpers.ts); none may reach a log line.
for server_log in "$log" "$billing_log"; do
  canary_hits=$(grep -c "canary7f3e" "$server_log" || true)
  if [ "$canary_hits" -ne 0 ]; then
    echo "$server_log holds $canary_hits line(s) with a password or email typed in the browser tests:" >&2
    grep "canary7f3e" "$server_log" | head -5 | cut -c1-200 >&2
    exit 1
  fi
  [ -s "$server_log" ] || { echo "$server_log is empty: the check above proves nothing" >&2; exit 1; }
  if grep -q -e "$stripe_webhook_secret" -e "sk_test_e2e_enclave" "$server_log"; then
    echo "$server_log holds a Stripe secret" >&2
    exit 1
  fi
  echo "ok: $(wc -l < "$server_log") log lines in $(basename "$server_log"), no canary, no Stripe secret"
done

passed=$(grep -oE '[0-9]+ passed' "$e2e_out" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
failed=$(grep -oE '[0-9]+ failed' "$e2e_out" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
echo
echo "browser tests: $passed passed, $failed failed"
[ "$e2e_rc" -eq 0 ] || exit "$e2e_rc"

# The release folder builds after the browser tests, not beside them. Built
# beside them (niced, then on idle CPU only), a sign-in in the browser tests
# sat with no next request for 15 s, at the same point of three runs in a
# row, while the release build linked; it never happened without it.
step "the release folder (make release)"
release_log="$root/target/release-build.log"
RELEASE_DIR="$root/target/dist/enclave" .ci/release.sh >"$release_log" 2>&1 &
release_pid=$!
if ! wait "$release_pid"; then
  release_pid=""
  cat "$release_log" >&2
  echo "make release failed" >&2
  exit 1
fi
release_pid=""
grep -E '^==>|Finished|ready:' "$release_log" || true

step "README \"Run in production\", step by step, over the release (.ci/tests/production.sh)"
.ci/tests/production.sh "$root/target/dist/enclave"
