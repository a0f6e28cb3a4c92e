#!/usr/bin/env bash
# README "Run in production", step by step, on 127.0.0.1: the release folder
# (`make release`, run before this) copied to a folder of its own, a second
# PostgreSQL cluster with a role that owns the database (the operator's
# own), the master key and settings files, `server config check`, the
# server started with exactly the environment the systemd unit gives it
# (systemd itself does not run here), nginx in front with TLS from the
# shipped server/deploy/nginx.conf, a real SMTP server (aiosmtpd, PyPI),
# `/ready` and `server doctor`, Prometheus metrics, and a browser that
# signs up and chats over https. Two servers run, as README "More than one
# server" has them: the same release, key and settings on one database,
# both in nginx's upstream; the browser's last test stops the one writing
# its reply (SIGTERM) and goes on through the other. What differs from the README: folders
# under a temporary root instead of /opt and /etc, free ports instead of
# 443 and 3000, localhost and a self-signed certificate instead of your
# host name and a real one, and the fake provider for a model provider.
#
#   .ci/tests/production.sh RELEASE_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
release=${1:?usage: production.sh RELEASE_DIR}
work=$(mktemp -d "${TMPDIR:-/tmp}/enclave-production.XXXXXX")
chmod 755 "$work"
pids=()
log() { printf '[production] %s\n' "$*"; }
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  .ci/pg.sh remove "$work/pg" >/dev/null 2>&1 || true
  # PRODUCTION_KEEP=1 keeps the folder (logs, nginx's access log) for a look.
  if [ "${PRODUCTION_KEEP:-}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
free_port() { "$root/.ci/free-port.sh"; }
fail() {
  echo "production walk-through: $*" >&2
  for f in "$work"/*.log; do
    [ -f "$f" ] && { echo "--- $(basename "$f")" >&2; tail -n 30 "$f" >&2; }
  done
  exit 1
}

opt="$work/opt/enclave"
etc="$work/etc/enclave"
app_port=$(free_port)
app_port2=$(free_port)
metrics_port2=$(free_port)
tls_port=$(free_port)
http_port=$(free_port)
metrics_port=$(free_port)
smtp_port=$(free_port)
fake_port=$(free_port)
public_url="https://localhost:$tls_port"

log "1. the release folder, copied to a folder of its own"
mkdir -p "$(dirname "$opt")"
cp -r "$release" "$opt"
[ -x "$opt/server" ] && [ -f "$opt/site/pkg/enclave.wasm" ] && [ -f "$opt/site/pkg/enclave.wasm.br" ] \
  || fail "the release folder lacks the server, its site or the compressed WASM"

log "2. PostgreSQL: a role that owns the database"
base=$(.ci/pg.sh start "$work/pg")
db_password="walk-db-$(head -c 12 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')"
psql -q "$base/postgres" -c "CREATE ROLE enclave LOGIN PASSWORD '$db_password'" \
  -c "CREATE DATABASE enclave OWNER enclave" >/dev/null
db_port=${base##*:}
database_url="postgres://enclave:$db_password@127.0.0.1:$db_port/enclave"

log "3. the master key and the settings"
install -d -m 700 "$etc"
(umask 077 && "$opt/server" keys generate > "$etc/master.key")
# The fake provider stands for OpenAI; aiosmtpd for the mail relay.
"$opt/server" fake-provider "127.0.0.1:$fake_port" > "$work/fake-provider.log" 2>&1 &
pids+=($!)
"$root/.ci/peers/python/bin/python" -m aiosmtpd -n -l "127.0.0.1:$smtp_port" -c aiosmtpd.handlers.Debugging stdout \
  > "$work/smtp.log" 2>&1 &
pids+=($!)
provider_key="sk-walk-$(head -c 12 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')"
(umask 077 && cat > "$etc/enclave.env" <<EOF
ENCLAVE_DATABASE_URL=$database_url
ENCLAVE_ADDR=127.0.0.1:$app_port
ENCLAVE_PUBLIC_URL=$public_url
ENCLAVE_PROXY_HOPS=1
ENCLAVE_SMTP_URL=smtp://127.0.0.1:$smtp_port
ENCLAVE_MAIL_FROM="Enclave <enclave@example.com>"
ENCLAVE_OPENAI_API_KEY=$provider_key
ENCLAVE_OPENAI_BASE_URL=http://127.0.0.1:$fake_port/openai/v1
ENCLAVE_EGRESS_ALLOW=127.0.0.1:$fake_port
ENCLAVE_METRICS_ADDR=127.0.0.1:$metrics_port
EOF
)

# The service's environment, as systemd builds it: the unit's Environment=
# lines (%d is the credentials folder, where LoadCredential= puts the key),
# then the EnvironmentFile=. Paths of the unit point into the copy.
unit="$opt/enclave.service"
credentials="$work/credentials"
install -d -m 700 "$credentials"
cp "$etc/master.key" "$credentials/master-key"
service_env=()
while IFS= read -r line; do
  value=${line#Environment=}
  value=${value//%d/$credentials}
  value=${value//\/opt\/enclave/$opt}
  service_env+=("$value")
done < <(grep '^Environment=' "$unit")
while IFS= read -r line; do
  [ -z "$line" ] && continue
  key=${line%%=*}
  value=${line#*=}
  value=${value#\"}
  value=${value%\"}
  service_env+=("$key=$value")
done < "$etc/enclave.env"
grep -q '^EnvironmentFile=/etc/enclave/enclave.env$' "$unit" || fail "the unit reads another settings file"
grep -q '^LoadCredential=master-key:/etc/enclave/master.key$' "$unit" || fail "the unit loads another key"
as_service() { (cd "$opt" && env -i PATH=/usr/bin:/bin "${service_env[@]}" "$@"); }
# The same in the background, as the process itself (`exec`: `$!` is the
# server, which a signal must reach; through a function it was a subshell,
# and stopping that left the server running).
service_in_background() {
  local out=$1
  shift
  (cd "$opt" && exec env -i PATH=/usr/bin:/bin "${service_env[@]}" "$@") > "$out" 2>&1 &
  service_pid=$!
}

log "4. server config check"
as_service "$opt/server" config check > "$work/config-check.txt" 2>&1 \
  || { cat "$work/config-check.txt" >&2; fail "config check refused the settings"; }
grep -q "configuration OK for production" "$work/config-check.txt" || fail "config check did not say OK"
grep -q "ENCLAVE_MASTER_KEY  *(set, hidden)  \[file $credentials/master-key\]" "$work/config-check.txt" \
  || fail "config check does not say where the key came from"
if grep -q -e "$db_password" -e "$provider_key" -e "$(cat "$etc/master.key")" "$work/config-check.txt"; then
  fail "config check printed a secret"
fi

log "5. the service (ExecStart with the unit's environment), on two servers"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
exec_start=${exec_start//\/opt\/enclave/$opt}
# shellcheck disable=SC2086
service_in_background "$work/server.log" $exec_start
server_pid=$service_pid
pids+=("$server_pid")
# The second machine's settings differ only in its own address (and its
# metrics address, which would clash on one host): given after the others,
# they win for that server alone.
# shellcheck disable=SC2086
service_in_background "$work/server2.log" \
  "ENCLAVE_ADDR=127.0.0.1:$app_port2" "ENCLAVE_METRICS_ADDR=127.0.0.1:$metrics_port2" $exec_start
server2_pid=$service_pid
pids+=("$server2_pid")

log "6. TLS in front: nginx with the shipped configuration"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost" \
  -keyout "$work/tls.key" -out "$work/tls.crt" >/dev/null 2>&1
mkdir -p "$work/nginx"
site=$(sed \
  -e "s|server 127.0.0.1:3000;|server 127.0.0.1:$app_port;\n    server 127.0.0.1:$app_port2;|" \
  -e "s|listen 443 ssl;|listen 127.0.0.1:$tls_port ssl;|" \
  -e "s|listen 80;|listen 127.0.0.1:$http_port;|" \
  -e "s|enclave.example.com;|localhost;|" \
  -e "s|/etc/letsencrypt/live/enclave.example.com/fullchain.pem|$work/tls.crt|" \
  -e "s|/etc/letsencrypt/live/enclave.example.com/privkey.pem|$work/tls.key|" \
  "$opt/nginx.conf")
for expected in "127.0.0.1:$app_port;" "127.0.0.1:$app_port2;" "127.0.0.1:$tls_port ssl" "$work/tls.crt" "proxy_buffering off"; do
  grep -qF "$expected" <<<"$site" || fail "nginx.conf no longer has what the walk-through replaces ($expected)"
done
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx-error.log warn;
$( [ "$(id -u)" -eq 0 ] && echo "user root;" )
events { worker_connections 256; }
http {
  access_log $work/nginx-access.log;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
$site
}
EOF
nginx=$(command -v nginx || echo /usr/sbin/nginx)
"$nginx" -t -q -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx-test.log" || fail "nginx -t: $(cat "$work/nginx-test.log")"
"$nginx" -p "$work/nginx" -c "$work/nginx/nginx.conf" > "$work/nginx-out.log" 2>&1 &
pids+=($!)

log "7. ready through the load balancer, doctor, metrics"
curl_tls() { curl -sS --cacert "$work/tls.crt" "$@"; }
ready=""
for _ in $(seq 1 150); do
  if [ "$(curl_tls -o /dev/null -w '%{http_code}' "$public_url/ready" 2>/dev/null)" = 200 ]; then
    ready=1
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited"
  kill -0 "$server2_pid" 2>/dev/null || fail "the second server exited"
  sleep 0.2
done
[ -n "$ready" ] || fail "the server never became ready through nginx"
for port in "$app_port" "$app_port2"; do
  for _ in $(seq 1 150); do
    [ "$(curl -s "http://127.0.0.1:$port/ready" 2>/dev/null)" = ready ] && break
    sleep 0.2
  done
  [ "$(curl -s "http://127.0.0.1:$port/ready")" = ready ] || fail "the server on port $port is not ready"
done
[ "$(curl_tls "$public_url/ready")" = ready ] || fail "/ready did not say ready"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/")" = 301 ] || fail "http does not send people to https"
as_service "$opt/server" doctor > "$work/doctor.txt" 2>&1 || { cat "$work/doctor.txt" >&2; fail "doctor found something to fix"; }
grep -q "mail" "$work/doctor.txt" || fail "doctor did not check mail"
curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -q '^enclave_http_requests_total{' \
  || fail "no request metrics on the metrics address"
[ "$(curl_tls -o /dev/null -w '%{http_code}' "$public_url/metrics")" = 404 ] || fail "metrics on the public address"

log "8. a person signs up and chats, in Chromium, over https"
node_dir=$(.ci/node.sh)
(cd end2end && PATH="$node_dir:$PATH" BASE_URL="$public_url" \
  REPLICA_PIDS="$server_pid,$server2_pid" REPLICA_LOGS="$work/server.log,$work/server2.log" \
  npx playwright test --config playwright.production.config.ts) 2>&1 | tee "$work/playwright.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "the browser walk-through failed"

log "9. what the servers wrote: JSON lines with request ids, no secret"
for server_log in "$work/server.log" "$work/server2.log"; do
  grep -q '"request_id"' "$server_log" || fail "no request id in $(basename "$server_log")"
  python3 - "$server_log" <<'EOF' || fail "a line of $(basename "$server_log") is not JSON"
import json, sys
for line in open(sys.argv[1]):
    json.loads(line)
EOF
  if grep -q -e "canary7f3e" -e "$db_password" -e "$provider_key" -e "$(cat "$etc/master.key")" "$server_log"; then
    fail "$(basename "$server_log") holds a secret or what the person typed"
  fi
done
grep -q "live replies saved and ended" "$work/server.log" "$work/server2.log" \
  || fail "no server said it saved its replies on SIGTERM"
grep -q "Subject: " "$work/smtp.log" || fail "no mail reached the SMTP server"
log "ok: $(cat "$work/server.log" "$work/server2.log" | wc -l) JSON log lines from two servers, mail sent through SMTP, chat over TLS"
