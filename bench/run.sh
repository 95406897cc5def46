#!/usr/bin/env bash
# Coffer benchmarks (`make bench`): in-process ledger, HTTP single transfers, HTTP batch, and
# PostgreSQL's pgbench as the peer measured in the same run. Everything listens on loopback and
# is stopped at the end. Usage: bench/run.sh BUILD_DIR [seconds]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
secs=${2:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/coffer-bench.XXXXXX)
out="$root/bench/out"
mkdir -p "$out"
server_pid=""
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
pg_data="$work/pg"

cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  if [ -f "$pg_data/postmaster.pid" ]; then
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -m fast stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kv() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" <<<"$2"; }

echo "== machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(date -u +%FT%TZ)"

echo "== in-process ledger (durable group commits through the writer and SQLite)"
"$build/bench_ledger" "$work/inproc" 200000 2>/dev/null | tee "$out/inproc.txt"

echo "== HTTP"
port=$(free_port)
export COFFER_OPERATOR_TOKEN="bench-token-$(date +%s)-$$"
"$build/coffer" serve --data "$work/http" --listen "127.0.0.1:$port" --log-level warn \
  >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
# the operator token only creates the first admin; the load runs as that admin's session
python3 "$root/bench/setup_accounts.py" "http://127.0.0.1:$port" "$COFFER_OPERATOR_TOKEN" 1000 \
  "$work/accounts.txt" "$work/session.token"
COFFER_TOKEN=$(cat "$work/session.token")
export COFFER_TOKEN COFFER_ACCOUNTS="$work/accounts.txt" COFFER_RUN=$$

r=$(wrk -t2 -c64 -d"${secs}s" --latency -s "$root/bench/transfer.lua" "http://127.0.0.1:$port" | grep wrk_result)
n=$(kv requests "$r"); us=$(kv duration_us "$r")
http_tps=$((n * 1000000 / us))
echo "single transfers, 64 connections: $http_tps transfers/s, p50 $(kv p50_us "$r") us, p99 $(kv p99_us "$r") us, p99.9 $(kv p999_us "$r") us, non-2xx $(kv non2xx "$r"), socket errors $(kv errors "$r")" | tee "$out/http.txt"

export COFFER_BATCH=1000
r=$(wrk -t2 -c4 -d"${secs}s" --latency -s "$root/bench/transfer.lua" "http://127.0.0.1:$port" | grep wrk_result)
n=$(kv requests "$r"); us=$(kv duration_us "$r")
batch_tps=$((n * COFFER_BATCH * 1000000 / us))
echo "batch endpoint, 1000 per request, 4 connections: $batch_tps transfers/s, p50 $(kv p50_us "$r") us per request, non-2xx $(kv non2xx "$r")" | tee -a "$out/http.txt"
# What authentication costs per request: the same trivial answer with and without a session
# check (GET /healthz is public; GET /v1/ledger/currencies checks the token and the role).
g=$(wrk -t2 -c64 -d"${secs}s" "http://127.0.0.1:$port/healthz" | sed -n 's/^Requests\/sec: *\([0-9]*\).*/\1/p')
a=$(wrk -t2 -c64 -d"${secs}s" -H "Authorization: Bearer $COFFER_TOKEN" \
  "http://127.0.0.1:$port/v1/ledger/currencies" | sed -n 's/^Requests\/sec: *\([0-9]*\).*/\1/p')
echo "GET /healthz (public): $g req/s; GET /v1/ledger/currencies (session checked): $a req/s" | tee "$out/auth.txt"
kill "$server_pid"; wait "$server_pid" || true; server_pid=""
"$build/coffer" verify --data "$work/http" | tee -a "$out/http.txt"

# One QR payment run: $1 the label, $2 the data directory, $3 the rules to store, then the
# server's extra environment. Sets pay_tps.
pay_run() {
  local label=$1 data=$2 rules=$3
  shift 3
  port=$(free_port)
  export COFFER_OPERATOR_TOKEN="bench-pay-$(date +%s)-$$"
  # the bench's customers are unverified (tier 0): thousands of payments each are far above a
  # tier's daily limit, so the limits are off here
  env COFFER_KYC_ENFORCE=0 "$@" "$build/coffer" serve --data "$data" --listen "127.0.0.1:$port" \
    --log-level warn >"$data.out" 2>"$data.err" &
  server_pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  python3 "$root/bench/setup_payments.py" "http://127.0.0.1:$port" "$COFFER_OPERATOR_TOKEN" 64 \
    "$data.payers" "$rules"
  export COFFER_PAYERS="$data.payers"
  r=$(wrk -t2 -c64 -d"${secs}s" --latency -s "$root/bench/pay.lua" "http://127.0.0.1:$port" | grep wrk_result)
  n=$(kv requests "$r"); us=$(kv duration_us "$r")
  pay_tps=$((n * 1000000 / us))
  echo "QR payments, 64 connections, $label: $pay_tps payments/s, p50 $(kv p50_us "$r") us, p99 $(kv p99_us "$r") us, p99.9 $(kv p999_us "$r") us, non-2xx $(kv non2xx "$r"), socket errors $(kv errors "$r")" | tee -a "$out/pay.txt"
  kill "$server_pid"; wait "$server_pid" || true; server_pid=""
  "$build/coffer" verify --data "$data" | tee -a "$out/pay.txt"
}

echo "== merchant QR payments end to end (64 customers' sessions, a static code, a fee leg)"
: >"$out/pay.txt"
pay_run "monitoring off" "$work/pay-off" 0 COFFER_MONITORING=off
off_tps=$pay_tps
pay_run "monitoring on, 50 rules" "$work/pay" 50 COFFER_MONITORING=on
echo "QR payments / HTTP single transfers in this run: $(python3 -c "print(round($pay_tps/$http_tps, 2))")x" | tee -a "$out/pay.txt"
echo "monitoring on (50 rules) / off in this run: $(python3 -c "print(round($pay_tps/$off_tps, 2))")x" | tee -a "$out/pay.txt"

echo "== authentication in process (argon2id, session checks, sign-ins)"
"$build/bench_auth" "$work" 2 2>/dev/null | tee -a "$out/auth.txt"

echo "== peer: pgbench TPC-B-like (scale 10, 16 clients, prepared, synchronous_commit on)"
if [ -z "$pg_bin" ]; then echo "pgbench: PostgreSQL is not installed (make bench installs it)"; exit 1; fi
pg_port=$(free_port)
mkdir -p "$pg_data" && chown postgres "$work" "$pg_data"
runuser -u postgres -- "$pg_bin/initdb" -D "$pg_data" -A trust >/dev/null
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -l "$work/pg.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $work -c synchronous_commit=on -c fsync=on" start >/dev/null
runuser -u postgres -- "$pg_bin/pgbench" -h 127.0.0.1 -p "$pg_port" -i -s 10 -q postgres >/dev/null 2>&1
p=$(runuser -u postgres -- "$pg_bin/pgbench" -h 127.0.0.1 -p "$pg_port" -c 16 -j 2 -M prepared -T "$secs" postgres 2>/dev/null)
pg_tps=$(sed -n 's/^tps = \([0-9]*\).*/\1/p' <<<"$p" | head -1)
echo "pgbench: $pg_tps tps" | tee "$out/pgbench.txt"
echo "== ratios in this run"
echo "HTTP single transfers / pgbench tps: $(python3 -c "print(round($http_tps/$pg_tps, 1))")x" | tee -a "$out/pgbench.txt"
echo "HTTP batch transfers / pgbench tps: $(python3 -c "print(round($batch_tps/$pg_tps, 1))")x" | tee -a "$out/pgbench.txt"
