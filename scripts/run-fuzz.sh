#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (and ASan+UBSan) and runs each for a short time on
# a copy of its checked-in corpus. Usage: run-fuzz.sh OUT_DIR SECONDS
set -euo pipefail
out=${1:?out dir}
secs=${2:-15}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v clang >/dev/null || { echo "run-fuzz: clang is missing (scripts/install-deps.sh installs it)"; exit 1; }
mkdir -p "$out"
flags=(-g -O1 -std=c11 -D_GNU_SOURCE -DCOFFER_VERSION=\"fuzz\" -Wall -Wextra -Werror -Wno-unused-parameter
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I"$root/src")
libs=$(pkg-config --cflags --libs jansson libsodium sqlite3 libmicrohttpd libpq)
src=$(ls "$root"/src/core/*.c "$root"/src/money/*.c "$root"/src/ledger/*.c "$root"/src/store/*.c \
         "$root"/src/store/sqlite/*.c "$root"/src/store/postgres/*.c "$root"/src/http/*.c "$root"/src/api/*.c)
status=0
for target in "$root"/fuzz/fuzz_*.c; do
  name=$(basename "$target" .c)
  corpus=${name#fuzz_}
  clang "${flags[@]}" $src "$target" $libs -lpthread -o "$out/$name"
  work="$out/corpus-$corpus"
  rm -rf "$work" && mkdir -p "$work" && cp "$root/fuzz/corpus/$corpus/"* "$work/"
  echo "run-fuzz: $name for ${secs}s"
  if ! "$out/$name" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$out/" "$work" \
       >"$out/$name.log" 2>&1; then
    tail -40 "$out/$name.log"; status=1
  else
    grep -E "stat::number_of_executed_units|Done" "$out/$name.log" | tail -2
  fi
done
exit $status
