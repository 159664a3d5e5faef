'''sim_robot over DDS: streams and their rates, twist motion, stale commands, services.'''

import threading
import time

from am_testing.fixtures import wait_for
from geometry_msgs.msg import PoseStamped, TwistStamped
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray

from am_learning import conventions as conv
from am_msgs.msg import SimStatus
from am_msgs.srv import LoadTask, ResetScene

pytestmark = pytest.mark.ros
SIZE = 32


class Inbox:
    '''Messages of one topic with their arrival times.'''

    def __init__(self) -> None:
        self.items: list[tuple[float, object]] = []
        self.lock = threading.Lock()

    def __call__(self, msg) -> None:
        with self.lock:
            self.items.append((time.monotonic(), msg))

    def since(self, t: float) -> list:
        with self.lock:
            return [m for s, m in self.items if s >= t]

    def last(self):
        with self.lock:
            return self.items[-1][1] if self.items else None


def call(node, srv_type, name: str, request, timeout: float = 15.0):
    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout), f'{name} not available'
    future = client.call_async(request)
    assert wait_for(future.done, timeout), f'{name} did not answer'
    return future.result()


# Wall-clock rates on 2 shared cores: one retry when the whole suite loads them.
@pytest.mark.flaky(reruns=1)
def test_streams_rates_twist_and_stale_command(start_node, ros_node):
    sim = start_node('am_sim', 'sim_robot', params={
        'image_size': SIZE, 'camera_rate_hz': 10.0, 'seed': 3})
    images, joints, poses = Inbox(), Inbox(), Inbox()
    # Best effort like every camera subscriber, but with room for 5 s of frames: sensor QoS
    # keeps 5, and a reader starved for half a second on a loaded machine lost frames.
    camera_qos = QoSProfile(depth=50, reliability=qos_profile_sensor_data.reliability,
                            durability=qos_profile_sensor_data.durability)
    ros_node.create_subscription(Image, conv.CAMERA_TOPIC, images, camera_qos)
    ros_node.create_subscription(JointState, conv.JOINT_STATES_TOPIC, joints, 50)
    ros_node.create_subscription(PoseStamped, conv.EE_POSE_TOPIC, poses, 50)
    twist_pub = ros_node.create_publisher(TwistStamped, conv.TWIST_TOPIC, 10)
    assert wait_for(lambda: len(images.items) > 2 and len(joints.items) > 2, 30), sim.log()

    # Rates, from the header stamps of what arrived (delivery on two shared cores can come in
    # bursts; the stamps say when the robot published): a 2 s window, every message in it.
    def stamps(inbox: Inbox) -> np.ndarray:
        with inbox.lock:
            return np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
                             for _, m in inbox.items])

    t0 = stamps(joints)[-1] + 0.2
    assert wait_for(lambda: stamps(joints)[-1] > t0 + 2.5 and stamps(images)[-1] > t0 + 2.5,
                    15)
    n_joints = int(np.sum((stamps(joints) >= t0) & (stamps(joints) < t0 + 2.0)))
    n_images = int(np.sum((stamps(images) >= t0) & (stamps(images) < t0 + 2.0)))
    assert 36 <= n_joints <= 42, n_joints  # 20 Hz
    assert 17 <= n_images <= 22, n_images  # 10 Hz
    img = images.last()
    assert (img.height, img.width, img.encoding, img.step) == (SIZE, SIZE, 'rgb8', 3 * SIZE)
    assert len(img.data) == SIZE * SIZE * 3
    js = joints.last()
    assert list(js.name) == [*conv.ARM_JOINTS, conv.GRIPPER_JOINT]
    assert len(js.position) == 7 and 0.0 <= js.position[6] <= 1.0

    # A twist in +x for 0.6 s moves the end effector in +x.
    def pose_after(t: float) -> np.ndarray:
        '''The first end-effector pose stamped after ROS time t (waits for it).'''
        def find():
            with poses.lock:
                for _, m in poses.items:
                    if m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 > t:
                        p = m.pose.position
                        return np.array([p.x, p.y, p.z])
            return None
        assert wait_for(lambda: find() is not None, 10)
        return find()

    def ros_now() -> float:
        return ros_node.get_clock().now().nanoseconds * 1e-9

    assert wait_for(lambda: twist_pub.get_subscription_count() > 0, 10)
    start = pose_after(ros_now())
    for _ in range(12):
        msg = TwistStamped()
        msg.header.stamp = ros_node.get_clock().now().to_msg()
        msg.twist.linear.x = 0.5  # m/s: half of full scale
        twist_pub.publish(msg)
        time.sleep(0.05)
    end = ros_now()
    moved = pose_after(end + 0.3) - start
    assert moved[0] > 0.08, moved
    assert abs(moved[1]) < 0.03, moved

    # No more commands: the last one goes stale and the arm holds still.
    held = pose_after(end + 0.6)
    assert np.linalg.norm(pose_after(end + 1.6) - held) < 0.005
    assert sim.alive()


def test_services_tasks_and_parameters(start_node, ros_node):
    sim = start_node('am_sim', 'sim_robot', params={'image_size': SIZE, 'seed': 1})
    images, status = Inbox(), Inbox()
    ros_node.create_subscription(Image, conv.CAMERA_TOPIC, images, qos_profile_sensor_data)
    ros_node.create_subscription(SimStatus, '/sim_robot/status', status, 10)

    reply = call(ros_node, ResetScene, '/sim_robot/reset', ResetScene.Request(use_seed=True,
                                                                              seed=5))
    assert reply.success and (reply.image.height, reply.image.width) == (SIZE, SIZE)

    reply = call(ros_node, LoadTask, '/sim_robot/load_task',
                 LoadTask.Request(kind=LoadTask.Request.KIND_EVAL, task_id=2,
                                  use_seed=True, seed=0))
    assert reply.success, reply.message
    goal = np.frombuffer(reply.goal_image.data, np.uint8).reshape(SIZE, SIZE, 3)
    t = time.monotonic()
    assert wait_for(lambda: images.since(t), 5)
    now = np.frombuffer(images.since(t)[-1].data, np.uint8).reshape(SIZE, SIZE, 3)
    assert np.abs(goal.astype(int) - now).mean() > 0.5  # the cube is elsewhere in the goal
    assert wait_for(lambda: status.last() is not None and status.last().task == 'task2', 5)
    assert status.last().scene == 'cube-single' and not status.last().task_solved

    reply = call(ros_node, LoadTask, '/sim_robot/load_task',
                 LoadTask.Request(kind=LoadTask.Request.KIND_REACH, use_seed=True, seed=4))
    assert reply.success
    assert 0.2 <= reply.goal_position[0] <= 0.65 and 0.15 <= reply.goal_position[2] <= 0.4
    assert wait_for(lambda: status.last().task == 'reach' and status.last().goal_distance > 0, 5)

    # Bad requests are refused with a reason; the node keeps running.
    reply = call(ros_node, LoadTask, '/sim_robot/load_task',
                 LoadTask.Request(kind=LoadTask.Request.KIND_EVAL, task_id=9))
    assert not reply.success and 'task_id' in reply.message
    reply = call(ros_node, LoadTask, '/sim_robot/load_task', LoadTask.Request(kind=7))
    assert not reply.success and 'kind' in reply.message

    def set_param(name: str, value: float) -> bool:
        p = ParameterMsg(name=name, value=ParameterValue(
            type=ParameterType.PARAMETER_DOUBLE, double_value=value))
        result = call(ros_node, SetParameters, '/sim_robot/set_parameters',
                      SetParameters.Request(parameters=[p]))
        return result.results[0].successful

    assert not set_param('camera_rate_hz', 7.0)  # does not divide 20 Hz
    assert not set_param('real_time_factor', -2.0)
    assert set_param('command_timeout_s', 0.2)
    assert sim.alive()


# Wall-clock rates on 2 shared cores: one retry when the whole suite loads them.
@pytest.mark.flaky(reruns=1)
def test_faster_than_real_time_publishes_clock(start_node, ros_node):
    start_node('am_sim', 'sim_robot', params={'image_size': 16, 'real_time_factor': 4.0,
                                              'seed': 0})
    clocks, joints = Inbox(), Inbox()
    ros_node.create_subscription(Clock, conv.CLOCK_TOPIC, clocks, 50)
    ros_node.create_subscription(Float32MultiArray, conv.SIM_STATE_TOPIC, joints, 50)
    ros_node.create_subscription(JointState, conv.JOINT_STATES_TOPIC, joints, 50)
    assert wait_for(lambda: len(clocks.items) > 5, 30)
    t = time.monotonic()
    assert wait_for(lambda: len(clocks.since(t)) > 40, 10)
    with clocks.lock:
        arrived = [(s, m) for s, m in clocks.items if s >= t]
    (t0, first), (t1, last) = arrived[0], arrived[-1]
    sim_s = (last.clock.sec + last.clock.nanosec * 1e-9) - (
        first.clock.sec + first.clock.nanosec * 1e-9)
    # Asked for 4x. A loaded 2-core CI machine reached 1.9x, so the bound only separates
    # "faster than the wall clock" from real time (a factor of 1 stays at or below 1.0).
    assert sim_s / (t1 - t0) > 1.3, (sim_s, t1 - t0)
    js = [m for m in joints.since(t) if isinstance(m, JointState)][-1]
    c = last.clock
    stamp = js.header.stamp.sec + js.header.stamp.nanosec * 1e-9
    assert abs(stamp - (c.sec + c.nanosec * 1e-9)) < 1.0  # stamped with simulation time


def test_bad_start_up_parameters_exit_with_a_reason(start_node):
    sim = start_node('am_sim', 'sim_robot', params={'camera_rate_hz': 7.0})
    teleop = start_node('am_sim', 'scripted_teleop', params={'scene': 'cube-triple'})
    assert sim.popen.wait(30) == 2 and 'camera_rate_hz must divide 20' in sim.log()
    assert teleop.popen.wait(30) == 2 and 'drives' in teleop.log()
