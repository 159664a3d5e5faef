#!/usr/bin/env bash
# Run one command inside the workspace's environment: scripts/in_env.sh pytest -x
set -euo pipefail
# shellcheck disable=SC1091
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
exec "$@"
