'''scripted_teleop: OGBench's play oracle as a human teleoperator would be wired.

It watches the robot's state (/am_sim/state: the privileged scene state a scripted
operator is allowed to see), answers each control step with a Servo twist and a gripper
command (the only way it moves the robot), and records N episodes of M steps: reset the
simulator, start the recorder's episode, drive, stop the episode.
'''

import threading
import time

from geometry_msgs.msg import TwistStamped
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Float32MultiArray, Float64MultiArray

from am_learning import conventions as conv
from am_msgs.srv import ResetScene, StartEpisode, StopEpisode
from am_sim.params import declare_config
from am_sim.teleop_core import TeleopConfig, TeleopCore

DESCRIPTIONS = {
    'scene': 'Scene the simulator runs: cube-single, cube-double, puzzle-3x3 or scene.',
    'episodes': 'Episodes to record, then stop.',
    'steps': 'Control steps (commands) per episode.',
    'seed': "Seed of the operator's choices and the resets; -1 draws one.",
    'label': 'Task label given to the recorder.',
    'operator': 'play (OGBench pick-and-place) or reach (gripper to random workspace points).',
    'record': "Call the recorder's episode services (false: only drive the robot).",
    'reset_service': "The simulator's reset service.",
    'start_service': "The recorder's start_episode service.",
    'stop_service': "The recorder's stop_episode service.",
    'service_timeout_s': 'How long to wait for a service to appear and answer.',
    'stall_timeout_s': 'Give up on an episode when no robot state arrived for this long.',
    'exit_when_done': 'Shut the node down after the last episode.',
}


class EpisodeError(RuntimeError):
    '''A service refused or did not answer; the episode run stops.'''


class ScriptedTeleopNode(Node):
    '''Parameters -> TeleopConfig -> TeleopCore; a worker thread runs the episodes.'''

    def __init__(self) -> None:
        super().__init__('scripted_teleop')
        config = declare_config(self, TeleopConfig, DESCRIPTIONS)
        self.core = TeleopCore(config)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._twist_pub = self.create_publisher(TwistStamped, conv.TWIST_TOPIC, 10)
        self._gripper_pub = self.create_publisher(Float64MultiArray, conv.GRIPPER_TOPIC, 10)
        self.create_subscription(Float32MultiArray, conv.SIM_STATE_TOPIC, self._on_state, 10)
        self._reset = self.create_client(ResetScene, config.reset_service)
        self._start = self.create_client(StartEpisode, config.start_service)
        self._stop = self.create_client(StopEpisode, config.stop_service)
        self._lock = threading.Lock()
        self._episode_done = threading.Event()
        self._last_state = time.monotonic()
        self.finished = threading.Event()
        self.succeeded = False

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        # The episode plan is fixed once the run started: refuse changes, say why.
        names = [p.name for p in params if p.name in TeleopConfig.names()]
        if names:
            return SetParametersResult(
                successful=False, reason=f'{", ".join(names)} are fixed once the run started')
        return SetParametersResult(successful=True)

    # --- the control loop: one command per robot state -----------------------------------

    def _on_state(self, msg: Float32MultiArray) -> None:
        self._last_state = time.monotonic()
        with self._lock:
            try:
                command = self.core.on_state(np.asarray(msg.data, dtype=np.float32))
            except ValueError as exc:
                self.get_logger().error(f'cannot read the robot state: {exc}',
                                        throttle_duration_sec=1.0)
                return
            done = self.core.done
        if done:
            self._episode_done.set()
        if command is None:
            return
        stamp = self.get_clock().now().to_msg()
        twist = TwistStamped()
        twist.header.stamp = stamp
        twist.header.frame_id = 'world'
        twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = map(
            float, command.linear)
        twist.twist.angular.z = float(command.yaw_rate)
        self._twist_pub.publish(twist)
        self._gripper_pub.publish(Float64MultiArray(data=[float(command.closure)]))

    # --- episodes ------------------------------------------------------------------------

    def _call(self, client, request):
        timeout = self.core.config.service_timeout_s
        if not client.wait_for_service(timeout_sec=timeout):
            raise EpisodeError(f'service {client.srv_name} not available after {timeout:g} s')
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise EpisodeError(f'service {client.srv_name} did not answer in {timeout:g} s')
            time.sleep(0.002)
        response = future.result()
        if response is None or not response.success:
            raise EpisodeError(f'{client.srv_name} refused: '
                               f'{getattr(response, "message", "no response")}')
        return response

    def run_episodes(self) -> None:
        '''Record the configured episodes (worker thread); sets `finished` at the end.'''
        cfg = self.core.config
        try:
            for index in range(cfg.episodes):
                self._run_episode(index)
            self.succeeded = True
            verb = 'recorded' if cfg.record else 'drove'
            self.get_logger().info(f'{verb} {cfg.episodes} episode(s) of {cfg.steps} steps')
        except EpisodeError as exc:
            self.get_logger().error(f'episode run stopped: {exc}')
        finally:
            self.finished.set()

    def _run_episode(self, index: int) -> None:
        cfg = self.core.config
        self._call(self._reset, ResetScene.Request(use_seed=True, seed=self.core.reset_seed()))
        if cfg.record:
            started = self._call(self._start, StartEpisode.Request(label=cfg.label))
            self.get_logger().info(f'episode {index + 1}/{cfg.episodes}: {started.episode_id}')
        self._episode_done.clear()
        with self._lock:
            self.core.begin_episode()
        self._last_state = time.monotonic()
        while not self._episode_done.wait(0.05):
            if time.monotonic() - self._last_state > cfg.stall_timeout_s:
                with self._lock:
                    self.core.active = False
                if cfg.record:
                    self._call(self._stop, StopEpisode.Request(discard=True))
                raise EpisodeError(f'no robot state on {conv.SIM_STATE_TOPIC} for '
                                   f'{cfg.stall_timeout_s:g} s (is sim_robot running?)')
        if cfg.record:
            # Play has no task: the operator's success verdict is false.
            stopped = self._call(self._stop, StopEpisode.Request(task_success=False))
            self.get_logger().info(f'  {stopped.messages_written} messages in {stopped.path}')


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = None
    executor = None
    try:
        node = ScriptedTeleopNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        worker = threading.Thread(target=node.run_episodes, daemon=True)
        worker.start()
        while rclpy.ok() and not (node.finished.is_set() and node.core.config.exit_when_done):
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:  # bad parameters: say which, exit 2
        rclpy.logging.get_logger('scripted_teleop').fatal(f'cannot start: {exc}')
        raise SystemExit(2) from None
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    if node is not None and node.finished.is_set() and not node.succeeded:
        raise SystemExit(1)


if __name__ == '__main__':
    main()
