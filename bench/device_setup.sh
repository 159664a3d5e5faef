#!/usr/bin/env bash
# Prepare a lent GPU machine (no network, its own Python with torch) for bench/ runs:
# install the wheels carried in .devwheels/ (mujoco, ogbench, a dm_control trimmed to
# what ogbench imports, rosbags; fetched here with `pip download --python-version 3.12`)
# and the EGL loader carried in .gl/, then put the workspace's pure-Python packages on
# PYTHONPATH. Source it: `source bench/device_setup.sh`.
set -e
if [[ -d .gl ]]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
python3 -m pip install --quiet --no-index --find-links .devwheels --no-deps .devwheels/*.whl
export PYTHONPATH="$PWD/src/am_learning:$PWD/src/am_sim:$PWD/src/am_dataset_recorder:$PYTHONPATH"
export MUJOCO_GL=egl PYOPENGL_PLATFORM=egl
set +e
