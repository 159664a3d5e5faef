'''`am-goal`: give the policy node a goal image from a file or from frame N of a bag.

    am-goal --image goal.png                       # latched on /policy/goal_image
    am-goal --bag episodes/ep_0003 --frame -1      # last camera frame of a recorded episode
    am-goal --image goal.png --action --timeout 20 # through ~/reach_goal; waits for the end

Topic mode publishes with transient-local QoS (a policy started later still gets it) and
waits until the policy node has subscribed. Action mode prints feedback and exits 0 only
when the goal was reached. Exit codes: 0 ok/reached, 1 goal ended otherwise, 2 bad input,
3 the policy node did not answer.
'''

import argparse
from pathlib import Path
import sys
import time

import rclpy
from rclpy.action import ActionClient
from rclpy.executors import ExternalShutdownException
from sensor_msgs.msg import Image

from am_msgs.action import ReachGoal
from am_policy_node.conversions import ImageError, read_image_file, rgb_to_image
from am_policy_node.goals import read_bag_frame
from am_policy_node.policy_node import LATCHED_QOS

REASONS = {v: k for k, v in vars(ReachGoal.Result).items() if k.isupper() and isinstance(v, int)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='am-goal', description=__doc__.split('\n')[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--image', type=Path, help='image file (png, jpg, ...)')
    source.add_argument('--bag', type=Path, help='rosbag2 bag folder (read with rosbags)')
    parser.add_argument('--frame', type=int, default=0,
                        help="frame of the bag's image topic, 0-based; negative from the end")
    parser.add_argument('--topic', default=None,
                        help='image topic in the bag (default: its camera topic)')
    parser.add_argument('--node', default='/policy', help="the policy node's name")
    parser.add_argument('--action', action='store_true',
                        help='send through ~/reach_goal and wait for the result')
    parser.add_argument('--timeout', type=float, default=0.0,
                        help="action goal timeout, s (0: the node's goal_timeout_s)")
    parser.add_argument('--wait', type=float, default=10.0,
                        help='seconds to wait for the policy node to appear')
    return parser.parse_args(argv)


def load_goal(args: argparse.Namespace) -> Image:
    '''The goal image message named by the arguments; raises on bad input.'''
    if args.image is not None:
        rgb = read_image_file(args.image)
    else:
        rgb = read_bag_frame(args.bag, args.frame, args.topic)
    return rgb_to_image(rgb)


def _publish(node, topic: str, msg: Image, wait_s: float) -> int:
    publisher = node.create_publisher(Image, topic, LATCHED_QOS)
    deadline = time.monotonic() + wait_s
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    publisher.publish(msg)
    if publisher.get_subscription_count() == 0:
        print(f'am-goal: no subscriber on {topic} after {wait_s:.0f} s', file=sys.stderr)
        return 3
    # Stay a moment so the reliable, latched sample is delivered before we leave.
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(f'am-goal: goal ({msg.width}x{msg.height}) published on {topic}')
    return 0


def _send_action(node, name: str, msg: Image, timeout_s: float, wait_s: float) -> int:
    client = ActionClient(node, ReachGoal, name)
    if not client.wait_for_server(timeout_sec=wait_s):
        print(f'am-goal: action server {name} not available', file=sys.stderr)
        return 3
    goal = ReachGoal.Goal(goal_image=msg, timeout_s=float(timeout_s))

    def on_feedback(fb) -> None:
        f = fb.feedback
        print(f'step {f.step:4d}  Q {f.q_value:.3f}  {f.elapsed_s:6.2f} s')

    future = client.send_goal_async(goal, feedback_callback=on_feedback)
    rclpy.spin_until_future_complete(node, future)
    handle = future.result()
    if handle is None or not handle.accepted:
        print('am-goal: goal rejected', file=sys.stderr)
        return 1
    result_future = handle.get_result_async()
    rclpy.spin_until_future_complete(node, result_future)
    result = result_future.result().result
    print(f'am-goal: {REASONS.get(result.reason, result.reason)}: {result.message} '
          f'({result.steps} steps, final Q {result.final_q:.3f})')
    return 0 if result.success else 1


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv if argv is not None else None)
    try:
        msg = load_goal(args)
    except (OSError, ValueError, IndexError, ImageError) as exc:
        print(f'am-goal: {exc}', file=sys.stderr)
        sys.exit(2)
    rclpy.init()
    node = rclpy.create_node('am_goal')
    code = 0
    try:
        base = args.node.rstrip('/')
        if args.action:
            code = _send_action(node, f'{base}/reach_goal', msg, args.timeout, args.wait)
        else:
            code = _publish(node, f'{base}/goal_image', msg, args.wait)
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 130
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    sys.exit(code)


if __name__ == '__main__':
    main()
