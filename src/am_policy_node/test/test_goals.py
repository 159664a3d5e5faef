'''Goals from recordings: frame N of a real bag, nearest-pose picking, and the am-goal command
and rviz picks against a running policy node.'''

import math
from pathlib import Path
import subprocess

from am_testing.fixtures import executable_path, wait_for
import cv2
from geometry_msgs.msg import PointStamped, PoseStamped
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CompressedImage, Image

from am_policy_node.conversions import image_to_rgb, rgb_to_compressed
from am_policy_node.goals import index_bag, read_bag_frame, yaw_from_quaternion
from am_policy_node.policy_node import LATCHED_QOS

T0 = 1_700_000_000_000_000_000
DT = 50_000_000
FRAMES = 12


def frame_rgb(k: int) -> np.ndarray:
    '''Frame k's image: its index in the red channel, so a reader can tell frames apart.'''
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[..., 0] = 10 * k
    rgb[..., 1] = 200
    rgb[:, :4, 2] = 255  # left edge blue: catches a channel swap
    return rgb


def frame_position(k: int) -> np.ndarray:
    return np.array([0.30 + 0.02 * k, -0.1 + 0.01 * k, 0.2])


def frame_yaw(k: int) -> float:
    return -1.0 + 0.15 * k


def write_bag(path: Path, storage: str = 'mcap', compressed: bool = False) -> Path:
    '''A recording as a robot makes it: camera + /ee_pose at 20 Hz (pose 2 ms later).'''
    store = get_typestore(Stores.ROS2_KILTED)
    t = store.types
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    image_type = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'
    topic = '/camera/image_raw/compressed' if compressed else '/camera/image_raw'
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
        cam = writer.add_connection(topic, image_type, typestore=store)
        pose = writer.add_connection('/ee_pose', 'geometry_msgs/msg/PoseStamped',
                                     typestore=store)
        for k in range(FRAMES):
            stamp = T0 + k * DT
            header = t['std_msgs/msg/Header'](
                stamp=t['builtin_interfaces/msg/Time'](sec=stamp // 10**9,
                                                       nanosec=stamp % 10**9), frame_id='cam')
            rgb = frame_rgb(k)
            if compressed:
                ok, buf = cv2.imencode('.png', rgb[..., ::-1])
                msg = t[image_type](header=header, format='rgb8; png compressed bgr8',
                                    data=buf.reshape(-1))
            else:
                msg = t[image_type](header=header, height=24, width=32, encoding='rgb8',
                                    is_bigendian=0, step=96, data=rgb.reshape(-1))
            writer.write(cam, stamp, bytes(store.serialize_cdr(msg, image_type)))
            p = frame_position(k)
            yaw = frame_yaw(k)
            pose_msg = t['geometry_msgs/msg/PoseStamped'](header=header, pose=t[
                'geometry_msgs/msg/Pose'](
                position=t['geometry_msgs/msg/Point'](x=p[0], y=p[1], z=p[2]),
                orientation=t['geometry_msgs/msg/Quaternion'](
                    x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))))
            writer.write(pose, stamp + 2_000_000, bytes(store.serialize_cdr(
                pose_msg, 'geometry_msgs/msg/PoseStamped')))
    return path


@pytest.mark.parametrize('storage,compressed', [('mcap', False), ('sqlite3', False),
                                                ('mcap', True)])
def test_read_bag_frame_and_index(tmp_path, storage, compressed) -> None:
    bag = write_bag(tmp_path / 'bag', storage, compressed)
    np.testing.assert_array_equal(read_bag_frame(bag, 3), frame_rgb(3))
    np.testing.assert_array_equal(read_bag_frame(bag, -1), frame_rgb(FRAMES - 1))
    with pytest.raises(IndexError, match='has 12 frames'):
        read_bag_frame(bag, FRAMES)
    with pytest.raises(ValueError, match='no image messages on /nope'):
        read_bag_frame(bag, 0, '/nope')
    frames = index_bag(bag)
    assert len(frames) == FRAMES
    np.testing.assert_allclose(frames.positions[5], frame_position(5))
    assert frames.yaws[5] == pytest.approx(frame_yaw(5))
    k = frames.nearest(frame_position(7) + [0.004, -0.003, 0.0])
    assert k == 7
    np.testing.assert_array_equal(frames.image(k), frame_rgb(7))
    # Same position, yaw decides when weighted: frames 7 and 8 are 2.2 cm apart.
    mid = (frame_position(7) + frame_position(8)) / 2
    assert frames.nearest(mid, frame_yaw(8), yaw_weight=1.0) == 8
    assert frames.nearest(mid, frame_yaw(7), yaw_weight=1.0) == 7


def test_yaw_and_missing_bag(tmp_path) -> None:
    assert yaw_from_quaternion(0, 0, math.sin(0.3), math.cos(0.3)) == pytest.approx(0.6)
    with pytest.raises(FileNotFoundError):
        read_bag_frame(tmp_path / 'absent', 0)


@pytest.mark.ros
def test_am_goal_and_rviz_picks_reach_the_policy_node(start_node, ros_node, tmp_path,
                                                      tiny_checkpoint) -> None:
    bag = write_bag(tmp_path / 'recording')
    node = start_node('am_policy_node', 'policy', params={
        'checkpoint': str(tiny_checkpoint), 'goal_frames_bag': str(bag)})
    displayed: list[Image] = []
    ros_node.create_subscription(Image, '/policy/goal_image_display', displayed.append,
                                 LATCHED_QOS)
    clicked = ros_node.create_publisher(PointStamped, '/clicked_point', 10)
    goal_pose = ros_node.create_publisher(PoseStamped, '/goal_pose', 10)
    assert wait_for(lambda: clicked.get_subscription_count() > 0, 30), node.log()

    # am-goal with an image file.
    png = tmp_path / 'goal.png'
    cv2.imwrite(str(png), frame_rgb(9)[..., ::-1])
    tool = str(executable_path('am_policy_node', 'am-goal'))
    run = subprocess.run([tool, '--image', str(png)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert wait_for(lambda: len(displayed) == 1, 10), node.log()
    np.testing.assert_array_equal(image_to_rgb(displayed[-1]), frame_rgb(9))

    # am-goal with frame N of a bag.
    run = subprocess.run([tool, '--bag', str(bag), '--frame', '4'], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert wait_for(lambda: len(displayed) == 2, 10)
    np.testing.assert_array_equal(image_to_rgb(displayed[-1]), frame_rgb(4))

    # The compressed goal topic.
    compressed = ros_node.create_publisher(CompressedImage, '/policy/goal_image/compressed',
                                           LATCHED_QOS)
    assert wait_for(lambda: compressed.get_subscription_count() > 0, 10)
    compressed.publish(rgb_to_compressed(frame_rgb(6), 'png'))
    assert wait_for(lambda: len(displayed) == 3, 10), node.log()
    np.testing.assert_array_equal(image_to_rgb(displayed[-1]), frame_rgb(6))

    # Through the action: the node is not active, so am-goal reports NOT_ACTIVE, exit 1.
    run = subprocess.run([tool, '--image', str(png), '--action', '--timeout', '2'],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and 'NOT_ACTIVE' in run.stdout, (run.stdout, run.stderr)

    # Bad input to am-goal: a clear message and exit code 2, nothing sent.
    run = subprocess.run([tool, '--bag', str(bag), '--frame', '99'], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and 'out of range' in run.stderr

    # rviz: the clicked point picks the frame whose end-effector position is nearest.
    point = PointStamped()
    point.header.frame_id = 'base_link'
    point.point.x, point.point.y, point.point.z = frame_position(2) + [0.003, 0.002, 0.01]
    clicked.publish(point)
    assert wait_for(lambda: len(displayed) == 4, 10), node.log()
    np.testing.assert_array_equal(image_to_rgb(displayed[-1]), frame_rgb(2))

    pose = PoseStamped()
    p = frame_position(10)
    pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = p
    pose.pose.orientation.z, pose.pose.orientation.w = (math.sin(frame_yaw(10) / 2),
                                                        math.cos(frame_yaw(10) / 2))
    goal_pose.publish(pose)
    assert wait_for(lambda: len(displayed) == 5, 10)
    np.testing.assert_array_equal(image_to_rgb(displayed[-1]), frame_rgb(10))
    assert 'goal set from goal pose' in node.log()
    assert node.alive()
