#!/usr/bin/env bash
# Installs the Debian packages Coffer needs to build, test and run, and only those missing.
# Safe to run repeatedly; does nothing when everything is present. Needs root (or sudo) only
# when something is missing.
set -euo pipefail

want=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libmicrohttpd-dev libjansson-dev libsqlite3-dev libsodium-dev libcmocka-dev libpq-dev
      libssl-dev libqrencode-dev libcurl4-openssl-dev libunistring-dev libcrack2-dev
      cracklib-runtime python3 curl ca-certificates)
case "${1:-}" in
  --test) want+=(postgresql) ;;                 # the PostgreSQL pass of `make test`
  --bench) want+=(wrk postgresql postgresql-contrib) ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
