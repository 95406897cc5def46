#!/usr/bin/env bash
# What identity costs on the HTTP transfer benchmark, measured against the build before it.
# Builds commit f780389 (the operator token straight on the ledger) and the current tree with
# the staff-write audit line removed, in git worktrees under a temporary directory, then runs
# ROUNDS rounds of `wrk -t2 -c64 -d SECS` single transfers, alternating the three builds, each
# on a fresh data directory with 1,000 funded accounts. Prints requests/s per build and round.
# Usage: bench/compare_before_identity.sh BUILD_DIR [SECS [ROUNDS]]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
secs=${2:-15}
rounds=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/coffer-compare.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  git -C "$root" worktree remove --force "$work/before" 2>/dev/null || true
  git -C "$root" worktree remove --force "$work/noaudit" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

git -C "$root" worktree add -q --detach "$work/before" f780389
git -C "$root" worktree add -q --detach "$work/noaudit" HEAD
# the experiment: the same tree without the audit line of staff ledger writes
sed -i 's/^        staff_write_audit(req, resp->status);$/        (void)0;/' "$work/noaudit/src/api/write.c"
for t in before noaudit; do
  cmake -S "$work/$t" -B "$work/$t/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$work/$t/build" -j 2 --target coffer >/dev/null
done

# one round: $1 = binary, $2 = "before" for the old setup (operator token on the ledger)
round() {
  local bin=$1 kind=$2 d port token
  d=$(mktemp -d "$work/run.XXXX")
  port=$(free_port)
  export COFFER_OPERATOR_TOKEN="bench-token-$(date +%s)-$$"
  "$bin" serve --data "$d/data" --listen "127.0.0.1:$port" --log-level warn >"$d/out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  if [ "$kind" = before ]; then
    python3 "$work/before/bench/setup_accounts.py" "http://127.0.0.1:$port" \
      "$COFFER_OPERATOR_TOKEN" 1000 "$d/accounts.txt" >/dev/null
    token=$COFFER_OPERATOR_TOKEN
  else
    python3 "$root/bench/setup_accounts.py" "http://127.0.0.1:$port" "$COFFER_OPERATOR_TOKEN" \
      1000 "$d/accounts.txt" "$d/session.token" >/dev/null
    token=$(cat "$d/session.token")
  fi
  COFFER_TOKEN=$token COFFER_ACCOUNTS="$d/accounts.txt" COFFER_RUN=$$ \
    wrk -t2 -c64 -d"${secs}s" -s "$root/bench/transfer.lua" "http://127.0.0.1:$port" |
    sed -n 's/^Requests\/sec: *\([0-9]*\).*/\1/p'
  kill "$pid"; wait "$pid" || true; pid=""
}

for r in $(seq "$rounds"); do
  echo "round $r: before identity $(round "$work/before/build/coffer" before)/s," \
       "current $(round "$build/coffer" current)/s," \
       "current without the staff audit line $(round "$work/noaudit/build/coffer" current)/s"
done
