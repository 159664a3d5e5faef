# Source this file (or use scripts/in_env.sh) to get the workspace's environment:
# the venv, the built workspace, loopback-only DDS discovery and headless MuJoCo rendering.
_am_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$_am_root/.venv/bin/activate"
# shellcheck disable=SC1091
source "$_am_root/install/setup.bash"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
unset _am_root
