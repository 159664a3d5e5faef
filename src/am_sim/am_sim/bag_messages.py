'''The robot's messages serialised with rosbags (no rclpy): what the offline generator writes.

Field for field the messages `sim_robot` and `scripted_teleop` publish, so a generated
episode reads exactly like a recorded one.
'''

import numpy as np

from am_learning import conventions as conv
from am_sim.core import Observation

TOPICS = {
    conv.CAMERA_TOPIC: 'sensor_msgs/msg/Image',
    conv.JOINT_STATES_TOPIC: 'sensor_msgs/msg/JointState',
    conv.EE_POSE_TOPIC: 'geometry_msgs/msg/PoseStamped',
    conv.SIM_STATE_TOPIC: 'std_msgs/msg/Float32MultiArray',
    conv.TWIST_TOPIC: 'geometry_msgs/msg/TwistStamped',
    conv.GRIPPER_TOPIC: 'std_msgs/msg/Float64MultiArray',
}
'''Every topic of a generated episode and its type (the episode events come on top).'''


class BagMessages:
    '''Builds and serialises the robot's messages with a rosbags typestore.'''

    def __init__(self, typestore, frame_id: str = 'world') -> None:
        self._store = typestore
        self._t = typestore.types
        self.frame_id = frame_id

    def _header(self, stamp_ns: int, frame_id: str):
        t = self._t
        stamp = t['builtin_interfaces/msg/Time'](sec=int(stamp_ns // 1_000_000_000),
                                                 nanosec=int(stamp_ns % 1_000_000_000))
        return t['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)

    def _cdr(self, msg, topic: str) -> bytes:
        return bytes(self._store.serialize_cdr(msg, TOPICS[topic]))

    def observation(self, obs: Observation, stamp_ns: int) -> list[tuple[str, bytes]]:
        '''(topic, CDR bytes) of one observation: camera (if any), joints, pose, state.'''
        t = self._t
        out = []
        if obs.image is not None:
            image = np.ascontiguousarray(obs.image, dtype=np.uint8)
            msg = t['sensor_msgs/msg/Image'](
                header=self._header(stamp_ns, 'camera'), height=image.shape[0],
                width=image.shape[1], encoding='rgb8', is_bigendian=0,
                step=3 * image.shape[1], data=image.reshape(-1))
            out.append((conv.CAMERA_TOPIC, self._cdr(msg, conv.CAMERA_TOPIC)))
        joints = t['sensor_msgs/msg/JointState'](
            header=self._header(stamp_ns, ''), name=[*conv.ARM_JOINTS, conv.GRIPPER_JOINT],
            position=np.append(obs.joint_positions, obs.gripper).astype(np.float64),
            velocity=np.append(obs.joint_velocities, 0.0).astype(np.float64),
            effort=np.zeros(0, np.float64))
        out.append((conv.JOINT_STATES_TOPIC, self._cdr(joints, conv.JOINT_STATES_TOPIC)))
        p, q = obs.ee_position, obs.ee_quaternion
        pose = t['geometry_msgs/msg/PoseStamped'](
            header=self._header(stamp_ns, self.frame_id),
            pose=t['geometry_msgs/msg/Pose'](
                position=t['geometry_msgs/msg/Point'](x=float(p[0]), y=float(p[1]),
                                                      z=float(p[2])),
                orientation=t['geometry_msgs/msg/Quaternion'](
                    x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))
        out.append((conv.EE_POSE_TOPIC, self._cdr(pose, conv.EE_POSE_TOPIC)))
        n = int(obs.state.size)
        layout = t['std_msgs/msg/MultiArrayLayout'](
            dim=[t['std_msgs/msg/MultiArrayDimension'](label=conv.OGBENCH_STATE_LAYOUT,
                                                       size=n, stride=n)],
            data_offset=0)
        state = t['std_msgs/msg/Float32MultiArray'](layout=layout,
                                                    data=obs.state.astype(np.float32))
        out.append((conv.SIM_STATE_TOPIC, self._cdr(state, conv.SIM_STATE_TOPIC)))
        return out

    def command(self, linear: np.ndarray, yaw_rate: float, closure: float,
                stamp_ns: int) -> list[tuple[str, bytes]]:
        '''(topic, CDR bytes) of one operator command: the Servo twist and the gripper.'''
        t = self._t
        vec = t['geometry_msgs/msg/Vector3']
        twist = t['geometry_msgs/msg/TwistStamped'](
            header=self._header(stamp_ns, 'world'),
            twist=t['geometry_msgs/msg/Twist'](
                linear=vec(x=float(linear[0]), y=float(linear[1]), z=float(linear[2])),
                angular=vec(x=0.0, y=0.0, z=float(yaw_rate))))
        layout = t['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0)
        gripper = t['std_msgs/msg/Float64MultiArray'](
            layout=layout, data=np.array([closure], dtype=np.float64))
        return [(conv.TWIST_TOPIC, self._cdr(twist, conv.TWIST_TOPIC)),
                (conv.GRIPPER_TOPIC, self._cdr(gripper, conv.GRIPPER_TOPIC))]
