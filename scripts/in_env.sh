#!/usr/bin/env bash
# Run one command inside the workspace's environment: scripts/in_env.sh pytest -x
# (no `set -u`: colcon's generated setup scripts read unset variables)
set -eo pipefail
# shellcheck disable=SC1091
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
exec "$@"
