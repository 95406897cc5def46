#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: `start DIR` creates a cluster in a fresh /tmp
# directory owned by the postgres user (so that user can reach it whatever DIR's parents allow),
# on a free loopback port, and writes its URL to DIR/url and its location to DIR/cluster;
# `stop DIR` stops that cluster only and removes both; `pause DIR` / `resume DIR` stop and start
# the same cluster (outage tests).
set -euo pipefail
cmd=${1:?start|stop|pause|resume}
dir=${2:?directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "pg-cluster: PostgreSQL is not installed (scripts/install-deps.sh --test)"; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_start() {
  local c; c=$(cat "$dir/cluster")
  as_pg "$bin/pg_ctl" -D "$c/data" -l "$c/log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $(cat "$dir/port") -k $c -c fsync=on -c synchronous_commit=on -c max_connections=200" \
    start >/dev/null
}

case "$cmd" in
  start)
    rm -rf "$dir" && mkdir -p "$dir"
    c=$(mktemp -d /tmp/coffer-pg.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown postgres "$c"
    echo "$c" >"$dir/cluster"
    as_pg "$bin/initdb" -D "$c/data" -A trust -U postgres >/dev/null
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' >"$dir/port"
    pg_start
    echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres" >"$dir/url"
    echo "pg-cluster: started on $(cat "$dir/url")"
    ;;
  pause) as_pg "$bin/pg_ctl" -D "$(cat "$dir/cluster")/data" -m fast -w stop >/dev/null ;;
  resume) pg_start ;;
  stop)
    c=$(cat "$dir/cluster" 2>/dev/null || true)
    if [ -n "$c" ] && [ -f "$c/data/postmaster.pid" ]; then
      as_pg "$bin/pg_ctl" -D "$c/data" -m fast -w stop >/dev/null || true
    fi
    case "$c" in /tmp/coffer-pg.*) rm -rf "$c" ;; esac
    rm -rf "$dir"
    echo "pg-cluster: stopped"
    ;;
  *) echo "usage: pg-cluster.sh start|stop|pause|resume DIR"; exit 2 ;;
esac
