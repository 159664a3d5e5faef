'''Goal images from recordings: frame N of a bag, and the frame nearest a picked pose.

rviz's "Publish Point" and "2D Goal Pose" tools give a position (and a yaw); the policy
needs an image. A recorded episode pairs camera frames with end-effector poses, so the
frame whose end-effector pose is nearest the pick is the goal image. Bags are read with
rosbags (pure Python, works without rosbag2); only the index (pose + timestamp per frame)
is kept in memory and the chosen image is read back from the bag.
'''

from collections.abc import Iterator
from dataclasses import dataclass
import math
from pathlib import Path

import numpy as np

from am_policy_node.conversions import ImageError, compressed_to_rgb, image_to_rgb

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
POSE_TYPE = 'geometry_msgs/msg/PoseStamped'


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    '''Heading (rotation about z) of a quaternion, radians in (-pi, pi].'''
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _reader(bag: Path):
    '''An opened-later rosbags AnyReader over one bag folder (or .mcap/.db3 file's folder).'''
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f'bag {bag} does not exist')
    if bag.is_file():
        bag = bag.parent
    return AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED))


def _image_connections(reader, topic: str | None) -> list:
    conns = [c for c in reader.connections if c.msgtype in IMAGE_TYPES
             and (topic is None or c.topic == topic)]
    if not conns:
        have = sorted({f'{c.topic} ({c.msgtype})' for c in reader.connections})
        wanted = topic or 'any image topic'
        raise ValueError(f'no image messages on {wanted} in the bag; it has: {", ".join(have)}')
    if topic is None:
        # Prefer raw images when a bag holds both forms.
        conns.sort(key=lambda c: c.msgtype != 'sensor_msgs/msg/Image')
        conns = [c for c in conns if c.topic == conns[0].topic]
    return conns


def _to_rgb(msg, msgtype: str) -> np.ndarray:
    if msgtype == 'sensor_msgs/msg/CompressedImage':
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)


def read_bag_frame(bag: Path, index: int, topic: str | None = None) -> np.ndarray:
    '''Frame `index` (0-based; negative counts from the end) of a bag's image topic, RGB.'''
    with _reader(bag) as reader:
        conns = _image_connections(reader, topic)
        count = sum(c.msgcount for c in conns)
        if not -count <= index < count:
            raise IndexError(f'frame {index} out of range: {conns[0].topic} has {count} frames')
        index %= count
        for i, (conn, _, raw) in enumerate(reader.messages(connections=conns)):
            if i == index:
                return _to_rgb(reader.deserialize(raw, conn.msgtype), conn.msgtype)
    raise IndexError(f'frame {index} not found')  # pragma: no cover - msgcount was wrong


@dataclass(frozen=True)
class FrameIndex:
    '''End-effector pose of every recorded frame, and where its image lies.'''

    positions: np.ndarray
    '''(N, 3) end-effector positions, metres.'''
    yaws: np.ndarray
    '''(N,) end-effector yaw, radians.'''
    stamps_ns: np.ndarray
    '''(N,) int64 bag timestamp of each frame's image message.'''
    bag: Path
    image_topic: str

    def __len__(self) -> int:
        return len(self.positions)

    def nearest(self, position: np.ndarray, yaw: float | None = None,
                yaw_weight: float = 0.0) -> int:
        '''Index of the frame nearest a position (and yaw, weighted in metres per radian).'''
        d = np.linalg.norm(self.positions - np.asarray(position, dtype=np.float64), axis=1)
        if yaw is not None and yaw_weight > 0:
            dyaw = np.abs((self.yaws - yaw + np.pi) % (2 * np.pi) - np.pi)
            d = d + yaw_weight * dyaw
        return int(np.argmin(d))

    def image(self, i: int) -> np.ndarray:
        '''RGB image of frame i, read back from the bag.'''
        stamp = int(self.stamps_ns[i])
        with _reader(self.bag) as reader:
            conns = [c for c in reader.connections if c.topic == self.image_topic]
            for conn, t, raw in reader.messages(connections=conns, start=stamp, stop=stamp + 1):
                if t == stamp:
                    return _to_rgb(reader.deserialize(raw, conn.msgtype), conn.msgtype)
        raise ImageError(f'frame at {stamp} ns is no longer in {self.bag}')


def _poses(reader, topic: str) -> Iterator[tuple[int, np.ndarray, float]]:
    conns = [c for c in reader.connections if c.topic == topic and c.msgtype == POSE_TYPE]
    if not conns:
        raise ValueError(f'no {POSE_TYPE} messages on {topic} in the bag')
    for conn, t, raw in reader.messages(connections=conns):
        msg = reader.deserialize(raw, conn.msgtype)
        p, q = msg.pose.position, msg.pose.orientation
        yield t, np.array([p.x, p.y, p.z]), yaw_from_quaternion(q.x, q.y, q.z, q.w)


def index_bag(bag: Path, image_topic: str | None = None, pose_topic: str = '/ee_pose',
              max_gap_s: float = 0.1) -> FrameIndex:
    '''Pair each image of a bag with the end-effector pose nearest in time.

    Images with no pose within `max_gap_s` are left out (the arm's pose then is unknown).
    '''
    bag = Path(bag)
    with _reader(bag) as reader:
        conns = _image_connections(reader, image_topic)
        topic = conns[0].topic
        pose_t, pose_p, pose_y = [], [], []
        for t, p, y in _poses(reader, pose_topic):
            pose_t.append(t)
            pose_p.append(p)
            pose_y.append(y)
        image_t = np.array([t for _, t, _ in reader.messages(connections=conns)], np.int64)
    if not pose_t or len(image_t) == 0:
        raise ValueError(f'{bag}: need both images and poses to pick goals')
    pose_t = np.asarray(pose_t, np.int64)
    order = np.argsort(pose_t, kind='stable')
    pose_t, pose_p, pose_y = pose_t[order], np.asarray(pose_p)[order], np.asarray(pose_y)[order]
    right = np.clip(np.searchsorted(pose_t, image_t), 0, len(pose_t) - 1)
    left = np.clip(right - 1, 0, len(pose_t) - 1)
    nearest = np.where(np.abs(pose_t[left] - image_t) <= np.abs(pose_t[right] - image_t),
                       left, right)
    keep = np.abs(pose_t[nearest] - image_t) <= int(max_gap_s * 1e9)
    if not np.any(keep):
        raise ValueError(f'{bag}: no image has an end-effector pose within {max_gap_s} s')
    return FrameIndex(positions=pose_p[nearest][keep], yaws=pose_y[nearest][keep],
                      stamps_ns=image_t[keep], bag=bag, image_topic=topic)
