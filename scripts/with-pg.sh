#!/usr/bin/env bash
# Runs a command with COFFER_TEST_PG_URL set to the test cluster started by pg-cluster.sh.
# Usage: with-pg.sh STATE_DIR command args...
set -euo pipefail
state=${1:?state dir}
shift
COFFER_TEST_PG_URL=$(cat "$state/url")
export COFFER_TEST_PG_URL
exec "$@"
