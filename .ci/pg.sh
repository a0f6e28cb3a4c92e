#!/usr/bin/env bash
# A private PostgreSQL cluster for Enclave's development server and tests,
# on a free local port.
#
#   .ci/pg.sh start DIR    init (once) and start; prints the server's base URL
#   .ci/pg.sh stop DIR     stop it (no-op when not running)
#   .ci/pg.sh remove DIR   stop it and delete its data
#
# PG_EXTRA_OPTS adds server options (the tests turn durability off for speed).
# PG_PORT starts it on that port instead of a free one (a test that restarts
# the database under a running server needs the same address again).
#
# PostgreSQL refuses to run as root. Run as a normal user, the cluster lives
# in DIR/data and runs as that user. Run as root, it runs as `postgres`,
# which must be able to reach its data: when DIR sits under a folder
# `postgres` cannot enter (a checkout in /root or in a `mktemp -d` folder,
# both mode 0700), the data goes to /var/lib/enclave-dev/<hash of DIR> and
# DIR/data links to it.
set -euo pipefail

cmd=${1:?usage: pg.sh start|stop|remove DIR}
dir=${2:?usage: pg.sh start|stop|remove DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] || { echo "PostgreSQL server binaries not found: run .ci/tools.sh" >&2; exit 1; }

as_root() { [ "$(id -u)" -eq 0 ]; }
as_pg() {
  if as_root; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Where the cluster's files are: DIR/data, or (as root, when `postgres`
# cannot reach DIR) a folder of its own that DIR/data points to.
data_dir() {
  if [ -L "$dir/data" ]; then
    readlink -f "$dir/data"
  elif [ -e "$dir/data" ] || ! as_root || runuser -u postgres -- test -x "$dir"; then
    echo "$dir/data"
  else
    echo "/var/lib/enclave-dev/$(printf '%s' "$dir" | sha256sum | cut -c1-16)"
  fi
}
data=$(data_dir)

running() { [ -f "$data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

case "$cmd" in
  start)
    if [ ! -f "$data/PG_VERSION" ]; then
      if as_root; then
        mkdir -p "$data"
        chown postgres "$data"
        chmod 0700 "$data"
        if [ "$data" != "$dir/data" ]; then
          chown postgres "$(dirname "$data")"
          ln -sfn "$data" "$dir/data"
        else
          chown postgres "$dir"
        fi
      fi
      as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if ! running; then
      port=${PG_PORT:-$("$(dirname "$0")/free-port.sh")}
      # Sockets and the log in the cluster's own folder; TCP on loopback only.
      as_pg "$bin/pg_ctl" -D "$data" -w -t 60 -l "$data/server.log" \
        -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=200 ${PG_EXTRA_OPTS:-}" \
        start >/dev/null || { cat "$data/server.log" >&2 2>/dev/null; exit 1; }
      echo "$port" > "$dir/port.tmp" && mv "$dir/port.tmp" "$dir/port"
    fi
    echo "postgres://postgres@127.0.0.1:$(cat "$dir/port")"
    ;;
  stop)
    if running; then
      as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    fi
    ;;
  remove)
    if running; then
      as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    fi
    [ "$data" != "$dir/data" ] && rm -rf "$data"
    rm -rf "$dir"
    ;;
  *) echo "usage: pg.sh start|stop|remove DIR" >&2; exit 2 ;;
esac
