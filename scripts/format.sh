#!/usr/bin/env bash
# Format the C sources with .clang-format, or with --check only report the
# files that differ (exit 1). Usage: scripts/format.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h')
if [ "${1:-}" = "--check" ]; then
    bad=0
    for f in $files; do
        if ! clang-format --style=file "$f" | cmp -s - "$f"; then
            echo "format: $f differs from .clang-format (run scripts/format.sh)"
            bad=1
        fi
    done
    exit $bad
fi
clang-format --style=file -i $files
