#!/usr/bin/env bash
# A private PostgreSQL cluster in a folder of its own, on a free local port.
#
#   .ci/pg.sh start DIR   init (once) and start; prints the server's base URL
#   .ci/pg.sh stop DIR    stop it (no-op when not running)
#
# PG_EXTRA_OPTS adds server options (the tests turn durability off for speed).
# initdb and pg_ctl refuse to run as root, so as root they run as `postgres`.
set -euo pipefail

cmd=${1:?usage: pg.sh start|stop DIR}
dir=${2:?usage: pg.sh start|stop DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data="$dir/data"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] || { echo "PostgreSQL server binaries not found: run .ci/tools.sh" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

running() { [ -f "$data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

case "$cmd" in
  start)
    if [ ! -f "$data/PG_VERSION" ]; then
      [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
      as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if ! running; then
      port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
      # Sockets in the cluster's own folder; TCP on loopback only.
      as_pg "$bin/pg_ctl" -D "$data" -w -t 60 -l "$dir/server.log" \
        -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=200 ${PG_EXTRA_OPTS:-}" \
        start >/dev/null
      echo "$port" > "$dir/port.tmp" && mv "$dir/port.tmp" "$dir/port"
    fi
    echo "postgres://postgres@127.0.0.1:$(cat "$dir/port")"
    ;;
  stop)
    if running; then
      as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    fi
    ;;
  *) echo "usage: pg.sh start|stop DIR" >&2; exit 2 ;;
esac
