#!/usr/bin/env bash
# The README's first command: install what is missing, start a private
# PostgreSQL cluster (unless ENCLAVE_DATABASE_URL is set), create a dev master
# key once, then build and serve Enclave on http://localhost:3000. Ctrl-C
# stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

.ci/tools.sh build

mkdir -p .data
if [ -z "${ENCLAVE_DATABASE_URL:-}" ]; then
  base=$(.ci/pg.sh start .data/pg)
  trap '.ci/pg.sh stop .data/pg' EXIT
  psql -q "$base/postgres" -tc "SELECT 1 FROM pg_database WHERE datname = 'enclave'" | grep -q 1 \
    || psql -q "$base/postgres" -c "CREATE DATABASE enclave" >/dev/null
  export ENCLAVE_DATABASE_URL="$base/enclave"
fi

# A development master key, made once and kept (git-ignored) in .data/.
if [ -z "${ENCLAVE_MASTER_KEY:-}" ] && [ -z "${ENCLAVE_MASTER_KEY_FILE:-}" ]; then
  if [ ! -s .data/master.key ]; then
    # Marked as a development key (its first 16 bytes), which production
    # refuses: `server config check`.
    (umask 077 && { printf 'enclave-dev-key:'; head -c 16 /dev/urandom; } | base64 -w0 > .data/master.key)
    echo "[dev] created a development master key in .data/master.key"
  fi
  export ENCLAVE_MASTER_KEY_FILE="$root/.data/master.key"
fi

# The offline demo model: chat works at once, with no API key.
export ENCLAVE_DEMO_MODEL="${ENCLAVE_DEMO_MODEL:-true}"
# Mail the app sends shows at /dev/mail (no mail server needed).
export ENCLAVE_MAIL_CATCHER="${ENCLAVE_MAIL_CATCHER:-true}"

# Passkeys need a host name (WebAuthn refuses an IP address as the site).
export ENCLAVE_PUBLIC_URL="${ENCLAVE_PUBLIC_URL:-http://localhost:3000}"

echo "[dev] building and serving Enclave on $ENCLAVE_PUBLIC_URL"
cargo leptos serve --split
