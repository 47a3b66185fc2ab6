#!/usr/bin/env bash
# Set up, build and run every test (C unit tests, busted specs, end-to-end
# tests of the real binary against the emulator). Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
ctest --test-dir build --output-on-failure -j2
