#!/usr/bin/env bash
# Set-up if needed, build, then run every test with CTest. Extra arguments go to ctest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh --fashion
scripts/build.sh
ctest --test-dir build --output-on-failure "$@"
