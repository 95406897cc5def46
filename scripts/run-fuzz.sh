#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (and ASan+UBSan) and runs each for a short time on
# a copy of its checked-in corpus. Usage: run-fuzz.sh OUT_DIR SECONDS
# Every src/ file but src/cli is compiled once (instrumented for coverage, not linked with the
# fuzzer's main) into OUT_DIR/libcoffer_fuzz.a; each fuzz/fuzz_<name>.c links against it and
# runs on fuzz/corpus/<name>/.
set -euo pipefail
out=${1:?out dir}
secs=${2:-15}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v clang >/dev/null || { echo "run-fuzz: clang is missing (scripts/install-deps.sh installs it)"; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
common=(-g -O1 -std=c11 -D_GNU_SOURCE -DCOFFER_VERSION=\"fuzz\" -Wall -Wextra -Werror -Wno-unused-parameter
        -fno-sanitize-recover=all -I"$root/src")
pkgs=(jansson libsodium sqlite3 libmicrohttpd libpq libcrypto libqrencode libcurl)
cflags=$(pkg-config --cflags "${pkgs[@]}")
# libunistring and cracklib ship no pkg-config file (Debian's libunistring-dev, libcrack2-dev).
libs="$(pkg-config --libs "${pkgs[@]}") -lunistring -lcrack -lpthread -lm"

# The library: one object per source file, a few compiles at a time (set -e stops at the first
# that fails, with clang's message above).
obj="$out/obj"
rm -rf "$obj" && mkdir -p "$obj"
mapfile -t src < <(find "$root/src" -name '*.c' -not -path "$root/src/cli/*" | sort)
jobs=$(nproc 2>/dev/null || echo 2)
pids=()
for f in "${src[@]}"; do
  o=${f#"$root"/src/}
  clang "${common[@]}" -fsanitize=fuzzer-no-link,address,undefined $cflags -c "$f" \
    -o "$obj/${o//\//_}.o" &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
rm -f "$out/libcoffer_fuzz.a"
ar rcs "$out/libcoffer_fuzz.a" "$obj"/*.o

status=0
for target in "$root"/fuzz/fuzz_*.c; do
  name=$(basename "$target" .c)
  corpus=${name#fuzz_}
  clang "${common[@]}" -fsanitize=fuzzer,address,undefined $cflags "$target" \
    "$out/libcoffer_fuzz.a" $libs -o "$out/$name"
  work="$out/corpus-$corpus"
  rm -rf "$work" && mkdir -p "$work"
  if [ -d "$root/fuzz/corpus/$corpus" ]; then cp "$root/fuzz/corpus/$corpus/"* "$work/"; fi
  echo "run-fuzz: $name for ${secs}s"
  if ! "$out/$name" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$out/" "$work" \
       >"$out/$name.log" 2>&1; then
    tail -40 "$out/$name.log"; status=1
  else
    grep -E "stat::number_of_executed_units|Done" "$out/$name.log" | tail -2
  fi
done
exit $status
