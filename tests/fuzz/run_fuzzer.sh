#!/bin/sh
# run_fuzzer.sh FUZZER SECONDS SEEDS REGRESSIONS
# Replays the inputs kept in REGRESSIONS (crashes found earlier, now fixed), then fuzzes for SECONDS
# from the seed corpus, writing new corpus entries to a temporary folder so the repo stays as it is.
set -eu
fuzzer=$1 seconds=$2 seeds=$3 regressions=$4
kept=$(find "$regressions" -type f ! -name '.keep' 2>/dev/null)
if [ -n "$kept" ]; then
  # shellcheck disable=SC2086 # file names are ours, without spaces
  "$fuzzer" -rss_limit_mb=2048 -malloc_limit_mb=512 $kept
fi
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
  -artifact_prefix="${TMPDIR:-/tmp}/moe-mnist-$(basename "$fuzzer")-" "$corpus" "$seeds"
