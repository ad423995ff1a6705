#!/usr/bin/env bash
# The test command: installs what the tests need, builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/install-deps.sh
# Build first so the end-to-end tests find the `devkit` binary they run.
swift build --build-tests
swift test --skip-build "$@"
