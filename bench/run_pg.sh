#!/usr/bin/env bash
# PostgreSQL benchmarks (`make bench-pg`): HTTP single transfers on the PostgreSQL backend with
# one and two Coffer servers, the hot-account mix, and pgbench on the same cluster in the same
# run. Everything on loopback; the cluster and servers are stopped at the end.
# Usage: bench/run_pg.sh BUILD_DIR [seconds]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
secs=${2:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/coffer-benchpg.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  bash "$root/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kv() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" <<<"$2"; }

bash "$root/scripts/pg-cluster.sh" start "$work/pg" >/dev/null
url=$(cat "$work/pg/url")
base=${url%/*}
psql "$url" -qAtc "CREATE DATABASE coffer_bench" >/dev/null
export COFFER_OPERATOR_TOKEN="bench-token-$(date +%s)-$$" COFFER_DB="$base/coffer_bench"
export COFFER_ACCOUNTS="$work/accounts.txt"

serve() { # serve NAME PORT
  "$build/coffer" serve --data "$work/$1" --listen "127.0.0.1:$2" --log-level warn \
    >"$work/$1.out" 2>"$work/$1.err" &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$2/healthz" >/dev/null && return; sleep 0.1; done
  echo "server $1 did not start"; cat "$work/$1.err"; exit 1
}
load() { # load PORT CONNECTIONS RUN -> wrk_result line
  COFFER_RUN=$3 wrk -t1 -c"$2" -d"${secs}s" --latency -s "$root/bench/transfer.lua" \
    "http://127.0.0.1:$1" | grep wrk_result
}
report() { # report LABEL RESULT...
  local label=$1; shift; local n=0 us=0 p99=0
  for r in "$@"; do n=$((n + $(kv requests "$r"))); us=$(kv duration_us "$r"); p99=$(kv p99_us "$r"); done
  echo "$label: $((n * 1000000 / us)) transfers/s, p99 ${p99} us (last server)"
}

echo "== PostgreSQL backend"
p1=$(free_port); serve a "$p1"
# the operator token only creates the first admin; the load runs as that admin's session,
# which lives in the database and so serves on the second server as well
python3 "$root/bench/setup_accounts.py" "http://127.0.0.1:$p1" "$COFFER_OPERATOR_TOKEN" 1000 \
  "$work/accounts.txt" "$work/session.token"
COFFER_TOKEN=$(cat "$work/session.token")
export COFFER_TOKEN
report "one server, 64 connections" "$(load "$p1" 64 1)"
report "one server, hot-account mix (50% credit one merchant)" "$(COFFER_HOT_PERCENT=50 load "$p1" 64 2)"
p2=$(free_port); serve b "$p2"

load "$p1" 32 4 >"$work/r1" &
w1=$!
load "$p2" 32 5 >"$work/r2" || true
wait "$w1" || true
cat "$work/r1" "$work/r2" >&2
report "two servers, 32 connections each" "$(cat "$work/r1")" "$(cat "$work/r2")"
for p in "${pids[@]}"; do kill "$p"; wait "$p" || true; done; pids=()
"$build/coffer" verify --data "$work/a" | sed 's/^/verify: /'

echo "== peer: pgbench TPC-B-like on the same cluster (scale 10, 16 clients, prepared)"
pgbench -i -s 10 -q "$url" >/dev/null 2>&1
p=$(pgbench -c 16 -j 2 -M prepared -T "$secs" "$url" 2>/dev/null)
echo "pgbench: $(sed -n 's/^tps = \([0-9]*\).*/\1/p' <<<"$p" | head -1) tps"
