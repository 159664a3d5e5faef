'''Latency of the policy node: camera image published -> twist received, through DDS.

    python bench/policy_latency.py [--seconds 30] [--image-size 64]

Starts the installed `policy` node (a separate process, as in deployment) with a 64x64
checkpoint of the default network and the default acting CEM (TrainConfig.act_cem),
activates it with a goal, and plays the robot from this process: camera images, joint states
and the end-effector pose at 20 Hz. Each twist is paired with the newest image published
before it. Metrics (BENCHMARKS.md shape, bench/results/policy_latency.json and .md):
  latency_p50_ms, latency_p99_ms, latency_max_ms   image publish -> twist receipt
  policy_cpu_percent                               the node's CPU time / wall time at 20 Hz
  node_decision_latency_ms_p50                     the node's own image-receipt -> send figure
  decisions_per_image                              twists received / images published
Run it alone: `flock /tmp/am-heavy.lock python bench/policy_latency.py`.
'''

import argparse
from dataclasses import replace
import datetime
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = Path(__file__).resolve().parent.parent
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 101))

from benchlib import git_commit, machine  # noqa: E402
from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from am_learning.config import TrainConfig  # noqa: E402
from am_learning.conventions import ARM_JOINTS, GRIPPER_JOINT  # noqa: E402
from am_learning.testing import make_point_dataset, render_point  # noqa: E402
from am_learning.train import Trainer  # noqa: E402
from am_msgs.msg import PolicyStatus  # noqa: E402
from am_policy_node.conversions import rgb_to_image  # noqa: E402
from am_policy_node.policy_node import LATCHED_QOS  # noqa: E402

PERIOD = 0.05


def make_checkpoint(folder: Path, image_size: int) -> Path:
    '''The default network and acting CEM at `image_size`; weights barely trained (the
    latency does not depend on them).'''
    base = TrainConfig()
    config = replace(base, network=replace(base.network, image_size=image_size),
                     updates=10, log_interval=10, checkpoint_interval=10, device='cpu')
    trainer = Trainer(config, make_point_dataset(4, 50, image_size=image_size, seed=0))
    trainer.train()
    return trainer.save(folder)


def cpu_seconds(pid: int) -> float:
    '''User + system CPU time of a process, from /proc.'''
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def run(seconds: float, image_size: int, extra: list[str]) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix='policy_latency_'))
    checkpoint = make_checkpoint(tmp / 'ckpt', image_size)
    exe = ROOT / 'install' / 'am_policy_node' / 'lib' / 'am_policy_node' / 'policy'
    log = open(tmp / 'policy.log', 'wb')
    proc = subprocess.Popen(
        [str(exe), '--ros-args', '-p', f'checkpoint:={checkpoint}', '-p', 'reach_threshold:=1.0',
         '-p', 'q_floor:=0.0', '-p', f'goal_timeout_s:={seconds + 60}']
        + [a for p in extra for a in ('-p', p)],
        stdout=log, stderr=subprocess.STDOUT)
    rclpy.init()
    node = rclpy.create_node('policy_latency_bench')
    executor = SingleThreadedExecutor()  # the multi-threaded one costs a core (see README)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    camera = node.create_publisher(Image, '/camera/image_raw', qos_profile_sensor_data)
    joints = node.create_publisher(JointState, '/joint_states', qos_profile_sensor_data)
    ee = node.create_publisher(PoseStamped, '/ee_pose', 10)
    goal = node.create_publisher(Image, '/policy/goal_image', LATCHED_QOS)
    twists: list[tuple[float, TwistStamped]] = []
    statuses: list[PolicyStatus] = []
    node.create_subscription(TwistStamped, '/servo_node/delta_twist_cmds',
                             lambda m: twists.append((time.perf_counter(), m)), 100)
    node.create_subscription(PolicyStatus, '/policy/status', statuses.append, 10)
    activate = node.create_client(SetBool, '/policy/activate')
    try:
        if not activate.wait_for_service(timeout_sec=60):
            raise RuntimeError('policy node did not start:\n' + (tmp / 'policy.log').read_text())
        deadline = time.monotonic() + 10
        while camera.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        goal.publish(rgb_to_image(render_point(np.array([0.8, 0.2]), image_size)))
        future = activate.call_async(SetBool.Request(data=True))
        while not future.done():
            time.sleep(0.01)
        rng = np.random.default_rng(0)
        names = list(ARM_JOINTS) + [GRIPPER_JOINT]
        frames = [rgb_to_image(render_point(rng.uniform(0.1, 0.9, 2), image_size))
                  for _ in range(50)]
        published: list[float] = []
        warmup = 2.0
        n = int((seconds + warmup) / PERIOD)
        start = time.perf_counter()
        cpu_start = wall_start = None
        for k in range(n):
            target = start + k * PERIOD
            while (now := time.perf_counter()) < target:
                time.sleep(min(0.002, target - now))
            if k == int(warmup / PERIOD):
                cpu_start, wall_start = cpu_seconds(proc.pid), time.perf_counter()
                twists.clear()
                published.clear()
            pose = PoseStamped()
            pose.pose.position.x, pose.pose.position.z = 0.4, 0.2
            pose.pose.orientation.w = 1.0
            ee.publish(pose)
            joints.publish(JointState(name=names, position=[0.0] * 7))
            published.append(time.perf_counter())
            camera.publish(frames[k % len(frames)])
        time.sleep(0.3)
        cpu = cpu_seconds(proc.pid) - cpu_start
        wall = time.perf_counter() - wall_start
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    pub = np.asarray(published)
    latencies = []
    # After the last image the watchdog's zero twists follow (the camera 'stopped'): not
    # answers to images, so the window ends 0.1 s after the last image (< max_image_age_s).
    twists = [(t, m) for t, m in twists if t <= pub[-1] + 0.1]
    for t, _ in twists:
        i = np.searchsorted(pub, t) - 1
        if i >= 0:
            latencies.append((t - pub[i]) * 1e3)
    lat = np.asarray(latencies)
    slow = [(round(t - pub[0], 2), round(x, 1)) for (t, _), x in zip(twists, latencies)
            if x > 30]
    if slow:
        print(f'{len(slow)} twists over 30 ms (s since start, ms): {slow[:20]}')
    node_lat = [s.decision_latency_ms for s in statuses if np.isfinite(s.decision_latency_ms)]
    return {
        'latency_p50_ms': round(float(np.percentile(lat, 50)), 3),
        'latency_p99_ms': round(float(np.percentile(lat, 99)), 3),
        'latency_max_ms': round(float(lat.max()), 3),
        'policy_cpu_percent': round(100.0 * cpu / wall, 1),
        'node_decision_latency_ms_p50': round(float(np.median(node_lat)), 3)
        if node_lat else None,
        'decisions_per_image': round(len(lat) / len(pub), 3),
        'images': len(pub),
        'twists': len(lat),
    }


def write(metrics: dict, args: argparse.Namespace, command: str) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cem = TrainConfig().act_cem
    report = {
        'benchmark': 'policy_latency',
        'command': command,
        'date': datetime.date.today().isoformat(),
        'machine': machine(),
        'git_commit': git_commit('src/am_policy_node', 'src/am_learning',
                                 'bench/policy_latency.py'),
        'metrics': {k: v for k, v in metrics.items() if v is not None},
        'notes': (
            f'{args.image_size}x{args.image_size} rgb8 images at 20 Hz for {args.seconds:g} s '
            '(after 2 s warm-up) to the policy node (separate process, Fast DDS on loopback, '
            'trigger=image, servo commander), default network and default acting CEM '
            f'({cem.samples} samples x {cem.iterations} iterations, fp32, CPU). Latency = '
            'twist receipt - publish time '
            "of the newest image before it, both in this process. CPU = the node's "
            'user+system time over the same window. The machine is shared (2 cores): other '
            'jobs inflate the tail. Target: latency_p99_ms <= 15.'),
    }
    (out / 'policy_latency.json').write_text(json.dumps(report, indent=2) + '\n')
    rows = '\n'.join(f'| {k} | {v} |' for k, v in report['metrics'].items())
    (out / 'policy_latency.md').write_text(
        f'# policy_latency\n\n`{command}`\n\n{report["date"]}, {report["machine"]}, '
        f'commit {report["git_commit"][:10]}\n\n| metric | value |\n|---|---|\n{rows}\n\n'
        f'{report["notes"]}\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=30.0)
    parser.add_argument('--image-size', type=int, default=64)
    parser.add_argument('--param', action='append', default=[],
                        help='extra policy node parameter, name:=value (repeatable)')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results'),
                        help='folder for policy_latency.json/.md')
    args = parser.parse_args()
    command = 'python bench/policy_latency.py ' + ' '.join(sys.argv[1:])
    metrics = run(args.seconds, args.image_size, args.param)
    for k, v in metrics.items():
        print(f'{k}: {v}')
    write(metrics, args, command.strip())


if __name__ == '__main__':
    main()
