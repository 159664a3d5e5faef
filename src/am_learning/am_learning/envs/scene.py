'''The simulated scene: OGBench's UR5e manipulation environments behind one small API.

One object serves the ROS simulator (am_sim's `sim_robot`), the offline episode generator
and in-process evaluation, so all three render and step identically. It wraps the
environment of `ogbench.make_env_and_datasets('visual-<scene>-play-v0', env_only=True)`:
the visual variant's colours, but the state observation for `state()`, and a camera look of
its own, legible and cheap (`_set_camera_look`: a bright gripper, the pixel camera re-aimed at
the whole reach box, one small shadow map from a light that shows depth, no anti-aliasing;
ENVIRONMENT.md measured 45-75 ms a 64x64 frame with OGBench's settings, 6-7 ms with these;
`draw_arm=False`, the default, also hides the faint arm).

Tasks:
- play (after `reset`): no task; cubes and arm placed at random.
- eval (`load_eval_task(k)`): OGBench's evaluation task k; success is OGBench's.
- reach (`load_reach_task`): the gripper's goal pose drawn in the workspace; success is
  the end effector within `REACH_TOLERANCE_M` of the goal position.

Actions follow am_learning.conventions (absolute gripper target); OGBench's gripper action
is relative, `operator.action_to_ogbench` converts.
'''

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
import warnings

import numpy as np

from am_learning.conventions import ActionScale
from am_learning.envs.operator import OPERATED_SCENES, PlayOperator, action_to_ogbench

SCENES = {
    'cube-single': 'visual-cube-single-play-v0',
    'cube-double': 'visual-cube-double-play-v0',
    'scene': 'visual-scene-play-v0',
    'puzzle-3x3': 'visual-puzzle-3x3-play-v0',
}
REACH_TOLERANCE_M = 0.03
CAMERA = 'front_pixels'
CAMERA_POSE = ((1.2, 0.0, 0.9), (0.425, 0.0, 0.15), 54.0)
'''The pixel camera: position, the point it looks at (metres) and vertical field of view
(degrees). OGBench's ('front_pixels': 1.05 m out, 0.64 m up, 45 degrees, aimed at the
near table) leaves the reach box's near corners out of the 64 px frame; this one sees the
whole box with 3 cm to spare on every side, and the table under it.'''
GRIPPER_RGBA = (1.0, 0.85, 0.1, 1.0)
'''Colour of the gripper's fingers and pads (OGBench: dim purple, a few pixels at 64 px that
a camera-only policy could barely find against the dark floor).'''
SHADOW_LIGHT = 0
'''The light that casts shadows: OGBench's top light, tilted (`SHADOW_ELEVATION_DEG`).'''
SHADOW_ELEVATION_DEG = 60.0
'''The shadow light shines from behind the reach box, as the camera sees it, towards the
camera at this elevation. The shadow then falls in front of the gripper, below it in the
image, and moves as the gripper moves along the camera's line of sight, which the gripper's
own image hardly shows. A conv net of AM's trunk shape reads the gripper's depth along that
line to 0.56 cm under this light, 1.64 cm with it shining straight down as OGBench's does
(bench/results/legibility.md; 2.55 cm with OGBench's dimmer light and spotlight).
Flatter lights throw the shadow of the box's high corner out of the frame.'''
SHADOW_LIGHT_DIFFUSE = 1.0
'''The shadow light's strength; OGBench's second light, a dim spotlight that only greys
the shadow, is switched off (the headlight still lights what the camera sees).'''
SHADOW_MAP_SIZE = 256
# Hidden unless `draw_arm`: the UR5e links and the gripper's coupling, drawn at 10% opacity
# in OGBench's visual scenes, hold 180k of the 193k visible triangles; a software renderer
# spends most of a frame on them (measured at 64x64: about 35 fps with them, 250 without).
# The gripper's fingers and pads stay visible.
_ARM_PREFIX = 'ur5e/'
_GRIPPER_PREFIX = 'ur5e/robotiq/'
_HEAVY_GRIPPER_MESHES = ('ur5e/robotiq/base', 'ur5e/robotiq/base_mount')
_HIDDEN_GROUP = 5


def make_scene(name: str = 'cube-single', image_size: int = 64, *, render: bool = True,
               seed: int | None = None, draw_arm: bool = False) -> 'Scene':
    '''Make and reset a scene (names: cube-single, cube-double, scene, puzzle-3x3).'''
    return Scene(name, image_size, render=render, seed=seed, draw_arm=draw_arm)


def _hide_faint_arm(model: 'mujoco.MjModel') -> None:  # noqa: F821
    '''Move the faint, triangle-heavy arm meshes to a geom group the camera does not draw.'''
    import mujoco

    for g in range(model.ngeom):
        name = model.geom(g).name
        if (model.geom_type[g] != mujoco.mjtGeom.mjGEOM_MESH or model.geom_group[g] > 2
                or not name.startswith(_ARM_PREFIX)):  # the scene's own meshes stay
            continue
        mesh = model.mesh(model.geom_dataid[g]).name
        if not name.startswith(_GRIPPER_PREFIX) or mesh in _HEAVY_GRIPPER_MESHES:
            model.geom_group[g] = _HIDDEN_GROUP


def _set_camera_look(model: 'mujoco.MjModel') -> None:  # noqa: F821
    '''What the pixel camera sees, made for camera-only policies and fast to render.

    OGBench's visual look hides the gripper (dim, and out of frame at the reach box's
    near corners) and shows no height. Here the fingers are bright, the camera sees the
    whole box (`CAMERA_POSE`), and one light casts a small shadow map, aimed so that the
    shadow shows the gripper's height and its distance from the camera
    (`SHADOW_ELEVATION_DEG`); multisampling stays off. At 64 px a frame costs 6.7 ms here
    (2.1 ms without the shadow).
    '''
    model.vis.quality.shadowsize = SHADOW_MAP_SIZE
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    model.light_castshadow[SHADOW_LIGHT] = 1
    model.light_diffuse[:] = 0.0
    model.light_diffuse[SHADOW_LIGHT] = SHADOW_LIGHT_DIFFUSE
    position, target, _ = CAMERA_POSE
    _aim_shadow_light(model, SHADOW_LIGHT, position, target, SHADOW_ELEVATION_DEG)
    _aim_camera(model, model.camera(CAMERA).id, *CAMERA_POSE)
    for g in range(model.ngeom):
        if model.geom(g).name.startswith(_GRIPPER_PREFIX) and model.geom_group[g] <= 2:
            model.geom_matid[g] = -1
            model.geom_rgba[g] = GRIPPER_RGBA


Point = tuple[float, float, float]


def _aim_camera(model: 'mujoco.MjModel', camera: int, position: Point,  # noqa: F821
                target: Point, fovy_deg: float) -> None:
    '''Place a fixed world camera at `position` looking at `target`, image up = world up.'''
    import mujoco

    forward = np.subtract(target, position, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    # A MuJoCo camera looks along its -z with +y up in the image.
    frame = np.stack([right, np.cross(right, forward), -forward], axis=1)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, frame.reshape(-1))
    model.cam_pos[camera] = position
    model.cam_quat[camera] = quat
    model.cam_fovy[camera] = fovy_deg


def _aim_shadow_light(model: 'mujoco.MjModel', light: int, camera: Point,  # noqa: F821
                      target: Point, elevation_deg: float) -> None:
    '''Make `light` a directional light that travels towards the camera's side of `target`
    (the camera's horizontal bearing), falling at `elevation_deg` below the horizontal.'''
    import mujoco

    towards = np.subtract(camera, target, dtype=np.float64)
    towards[2] = 0.0
    towards /= np.linalg.norm(towards)
    fall = np.radians(elevation_deg)
    direction = np.append(np.cos(fall) * towards[:2], -np.sin(fall))
    model.light_type[light] = mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
    model.light_dir[light] = direction
    # A directional light's position only places its shadow map: 2 m up the ray through
    # the target's footprint on the table.
    model.light_pos[light] = np.array([target[0], target[1], 0.0]) - 2.0 * direction


def split_along_sight(error: np.ndarray, point: np.ndarray,
                      camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    '''Offsets `error` (..., 3) at `point` (..., 3), metres, split along the line of sight
    from `camera` (3,) through each point (positive away from the camera) and across it
    (>= 0). One camera shows the first only through size and shadows.'''
    sight = np.asarray(point, np.float64) - camera
    sight = sight / np.linalg.norm(sight, axis=-1, keepdims=True)
    along = (error * sight).sum(-1)
    return along, np.linalg.norm(error - along[..., None] * sight, axis=-1)


def _flatten_successes(successes: Any) -> list[bool]:
    '''OGBench's per-object successes as one flat list: cube and puzzle scenes return a list
    of booleans, `scene` a tuple (cube list, button list, drawer, window), where a plain
    all() would count every non-empty list as a success.'''
    flat: list[bool] = []
    for item in successes:
        if isinstance(item, list | tuple | np.ndarray):
            flat.extend(_flatten_successes(item))
        else:
            flat.append(bool(item))
    return flat


@contextmanager
def _quiet_gym() -> Iterator[None]:
    '''Silence gymnasium's note that OGBench's float64 action bounds are cast to float32.'''
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*precision lowered', category=UserWarning)
        yield


def _own_action_space(env: Any) -> None:
    '''Give `env` one action space that `load_eval_task` can seed.

    OGBench's `action_space` is a property that builds a new Box, with a new generator seeded
    from the OS, on every call, and an eval task's reset settles the goal scene with two of
    its samples: the goal state (the arm's pose in it) then differed from run to run whatever
    the seed. A property can only be replaced on the class, so this env gets a subclass of its
    own whose property returns one Box.
    '''
    cls = type(env)
    space = cls.action_space.fget(env)
    env.__class__ = type(cls.__name__, (cls,), {'action_space': property(lambda _: space)})


def _task_rng(seed: int | None) -> np.random.Generator:
    '''The scene's own draws (reach goals, play operator); a stream apart from OGBench's.

    OGBench seeds its env with `np.random.default_rng(seed)`; using the same seed here would
    draw the reach goal equal to the start pose.
    '''
    return np.random.default_rng(None if seed is None else [int(seed), 0x5CE4E])


def _release_renderer(env) -> None:
    '''Close an OGBench env's mujoco.Renderer (its GL context); the next render makes one.'''
    if env._renderer is not None:
        env._renderer.close()
        env._renderer = None


class Scene:
    '''One OGBench manipulation scene, stepped at the control rate (20 Hz).'''

    def __init__(self, name: str = 'cube-single', image_size: int = 64, *,
                 render: bool = True, seed: int | None = None, draw_arm: bool = False) -> None:
        if name not in SCENES:
            raise ValueError(f'unknown scene {name!r}; choose one of {sorted(SCENES)}')
        if not 8 <= int(image_size) <= 1024:
            raise ValueError(f'image_size must be in [8, 1024], got {image_size}')
        import ogbench
        from ogbench.manipspace.envs.manipspace_env import ManipSpaceEnv

        self.name = name
        self.image_size = int(image_size)
        self.action_scale = ActionScale()
        self._render_enabled = render
        self._rng = _task_rng(seed)
        with _quiet_gym():
            env = ogbench.make_env_and_datasets(
                SCENES[name], env_only=True, width=self.image_size, height=self.image_size)
        self._env = env.unwrapped
        u = self._env
        with _quiet_gym():
            _own_action_space(u)
        u._mode = 'data_collection'
        u.reset(seed=seed)  # builds and compiles the model with the visual variant's colours
        # From now on observations are state vectors; images come from `render()` only.
        u._ob_type = 'states'
        # OGBench renders task goals with `self.render()`; point it at the pixel camera.
        u.render = lambda camera=None, **kw: ManipSpaceEnv.render(u, camera=camera or CAMERA,
                                                                  **kw)
        model = u.model
        _set_camera_look(model)
        if not draw_arm:
            _hide_faint_arm(model)
        _release_renderer(u)  # rebuilt on the next render with the settings above
        self.num_eval_tasks = int(u.num_tasks)
        self._task = ''
        self._goal_pos: np.ndarray | None = None
        self._goal_state: np.ndarray | None = None
        self._operator = (PlayOperator(name, self.action_scale) if name in OPERATED_SCENES
                          else None)
        self._steps = 0
        self._begin_episode()

    def aim_shadow_light(self, elevation_deg: float) -> None:
        '''Re-aim the shadow light (`SHADOW_ELEVATION_DEG` by default; 90 shines straight
        down, as OGBench's does), e.g. to compare looks (bench/legibility.py).'''
        if not 0.0 < elevation_deg <= 90.0:
            raise ValueError(f'elevation_deg must be in (0, 90], got {elevation_deg}')
        position, target, _ = CAMERA_POSE
        _aim_shadow_light(self._env.model, SHADOW_LIGHT, position, target, elevation_deg)

    # --- episodes and tasks -------------------------------------------------------------

    @property
    def task(self) -> str:
        '''The loaded task: 'task<k>', 'reach', or '' (play).'''
        return self._task

    @property
    def steps(self) -> int:
        '''Control steps since the last reset or task load.'''
        return self._steps

    @property
    def sim_time(self) -> float:
        '''Simulated seconds since the last reset or task load.'''
        return self._steps * self.action_scale.period_s

    def _begin_episode(self) -> None:
        # Joint targets = where the arm is, so that `hold()` right after a reset holds still
        # (OGBench leaves the controls at zero until the first action).
        u = self._env
        u.data.ctrl[u._arm_actuator_ids] = u.data.qpos[u._arm_joint_ids]
        u.data.ctrl[u._gripper_actuator_ids] = 255.0 * self.gripper_opening()
        self._steps = 0
        if self._operator is not None:
            self._operator.reset(self._rng)

    def reset(self, seed: int | None = None) -> None:
        '''Play reset: arm and objects at random (OGBench's data-collection reset).'''
        self._env._mode = 'data_collection'
        self._env.reset(seed=seed)
        if seed is not None:
            self._rng = _task_rng(seed)
        self._task = ''
        self._goal_pos = None
        self._goal_state = None
        self._begin_episode()

    def load_eval_task(self, task_id: int, seed: int | None = None) -> np.ndarray:
        '''Reset to evaluation task `task_id`'s start (1-based); return its goal image.'''
        if not 1 <= int(task_id) <= self.num_eval_tasks:
            raise ValueError(f'task_id must be in [1, {self.num_eval_tasks}], got {task_id}')
        u = self._env
        u._mode = 'task'
        if seed is not None:  # the goal scene settles under random actions (_own_action_space)
            u.action_space.seed(seed)
        with _quiet_gym():  # the task reset samples OGBench's action space
            _, info = u.reset(seed=seed, options={'task_id': int(task_id),
                                                  'render_goal': self._render_enabled})
        if seed is not None:
            self._rng = _task_rng(seed)
        self._task = f'task{int(task_id)}'
        self._goal_pos = None
        self._goal_state = np.asarray(info['goal'], dtype=np.float32)
        self._begin_episode()
        if not self._render_enabled:
            return np.zeros((self.image_size, self.image_size, 3), np.uint8)
        return np.ascontiguousarray(info['goal_rendered'], dtype=np.uint8)

    def load_reach_task(self, seed: int | None = None) -> np.ndarray:
        '''Play-reset, then draw a gripper goal pose in the workspace; return its image.

        The goal image shows the scene as it is with the gripper moved to the goal pose
        (solved by OGBench's IK); the start is restored afterwards.
        '''
        self.reset(seed)
        pos = self._rng.uniform(*self._env._arm_sampling_bounds)
        yaw = self._rng.uniform(-np.pi, np.pi)
        image, self._goal_pos, self._goal_state = self.posed(pos, yaw)
        self._task = 'reach'
        return image

    def posed(self, pos: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        '''The scene with the gripper pointing down at `pos` (metres) turned by `yaw`: its
        image (zeros without rendering), the effector position the IK reached, and the state.
        The arm is put back where it was; nothing is stepped.'''
        import mujoco
        from ogbench.manipspace import lie

        u = self._env
        rot = lie.SO3.from_z_radians(float(yaw)) @ u._effector_down_rotation
        t_wa = lie.SE3.from_rotation_and_translation(rot, np.asarray(pos, np.float64)) @ u._T_pa
        qpos_goal = u._ik.solve(pos=t_wa.translation(), quat=t_wa.rotation().wxyz,
                                curr_qpos=u._data.qpos[u._arm_joint_ids])
        saved_qpos, saved_qvel = u.data.qpos.copy(), u.data.qvel.copy()
        u.data.qpos[u._arm_joint_ids] = qpos_goal
        u.data.qvel[:] = 0.0
        mujoco.mj_forward(u.model, u.data)
        reached, state = self.ee_position(), self.state()  # what the image shows exactly
        image = self.render() if self._render_enabled else np.zeros(
            (self.image_size, self.image_size, 3), np.uint8)
        u.data.qpos[:], u.data.qvel[:] = saved_qpos, saved_qvel
        mujoco.mj_forward(u.model, u.data)
        return image, reached, state

    # --- stepping and observing ---------------------------------------------------------

    def step(self, action: np.ndarray) -> None:
        '''Apply one (5,) normalised action for one control step (1/20 s).'''
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (5,) or not np.all(np.isfinite(a)):
            raise ValueError(f'action must be 5 finite numbers, got {a!r}')
        self._env.step(action_to_ogbench(a, self.gripper_opening()))
        self._steps += 1

    def hold(self, gripper: float | None = None) -> None:
        '''One control step keeping the arm's last joint targets: what a stale command means.

        A zero action re-targets the pose the arm has now, so under gravity it sags about
        1 cm in half a second; holding the previous targets keeps it where it was.
        gripper: optional new gripper target, as the action's last entry (-1 open, +1 closed).
        '''
        import mujoco

        u = self._env
        if gripper is not None:
            closure = (float(np.clip(gripper, -1.0, 1.0)) + 1.0) / 2.0
            u.data.ctrl[u._gripper_actuator_ids] = 255.0 * closure
        u.pre_step()
        mujoco.mj_step(u.model, u.data, nstep=u._n_steps)
        mujoco.mj_rnePostConstraint(u.model, u.data)
        u.post_step()
        self._steps += 1

    def render(self) -> np.ndarray:
        '''Camera image (H, W, 3) uint8 (the look of `_set_camera_look`).'''
        if not self._render_enabled:
            raise RuntimeError('this scene was made with render=False')
        return self._env.render()

    def state(self) -> np.ndarray:
        '''OGBench's state observation (D,) float32 (proprioception + objects).'''
        return np.asarray(self._env.compute_observation(), dtype=np.float32)

    def goal_state(self) -> np.ndarray | None:
        '''State observation of the loaded task's goal (None in play).'''
        return None if self._goal_state is None else self._goal_state.copy()

    def joint_positions(self) -> np.ndarray:
        '''(6,) UR5e joint positions, radians.'''
        u = self._env
        return u.data.qpos[u._arm_joint_ids].astype(np.float64)

    def joint_velocities(self) -> np.ndarray:
        '''(6,) UR5e joint velocities, rad/s.'''
        u = self._env
        return u.data.qvel[u._arm_joint_ids].astype(np.float64)

    def gripper_opening(self) -> float:
        '''OGBench's gripper opening: driver joint / 0.8 in [0, 1], 0 open .. 1 closed.'''
        u = self._env
        return float(np.clip(u.data.qpos[u._gripper_opening_joint_id] / 0.8, 0.0, 1.0))

    def proprio(self) -> np.ndarray:
        '''(7,) float32: 6 UR5e joint positions + gripper opening.'''
        return np.append(self.joint_positions(), self.gripper_opening()).astype(np.float32)

    def ee_position(self) -> np.ndarray:
        '''(3,) end-effector (pinch site) position in the world frame, metres.'''
        return self._env.data.site_xpos[self._env._pinch_site_id].astype(np.float64)

    def ee_quaternion(self) -> np.ndarray:
        '''(4,) end-effector orientation as a unit quaternion (x, y, z, w).'''
        import mujoco

        wxyz = np.zeros(4)
        mujoco.mju_mat2Quat(wxyz, self._env.data.site_xmat[self._env._pinch_site_id])
        return np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]])

    def ee_yaw(self) -> float:
        '''End-effector yaw about the world z axis, radians (OGBench's definition).'''
        from ogbench.manipspace import lie

        mat = self._env.data.site_xmat[self._env._pinch_site_id].reshape(3, 3)
        return float(lie.SO3.from_matrix(mat.copy()).compute_yaw_radians())

    def task_solved(self) -> bool:
        '''Eval task: OGBench's success; reach: within 3 cm of the goal; play: False.'''
        if self._task == 'reach':
            return bool(self.goal_distance() <= REACH_TOLERANCE_M)
        if self._task.startswith('task'):
            return all(_flatten_successes(self._env._compute_successes()))
        return False

    def goal_distance(self) -> float:
        '''Reach task: metres from the end effector to the goal position; nan otherwise.'''
        if self._task != 'reach' or self._goal_pos is None:
            return float('nan')
        return float(np.linalg.norm(self.ee_position() - self._goal_pos))

    def cube_positions(self) -> np.ndarray:
        '''(N, 3) the centres of the scene's cubes, metres; (0, 3) in scenes without cubes.'''
        u = self._env
        return np.array([u.data.joint(f'object_joint_{i}').qpos[:3]
                         for i in range(getattr(u, '_num_cubes', 0))],
                        dtype=np.float64).reshape(-1, 3)

    def cube_yaws(self) -> np.ndarray:
        '''(N,) the cubes' yaw about the world z axis, radians; (0,) without cubes.'''
        from ogbench.manipspace import lie

        u = self._env
        return np.array([lie.SO3(wxyz=u.data.joint(f'object_joint_{i}').qpos[3:7].copy())
                         .compute_yaw_radians() for i in range(getattr(u, '_num_cubes', 0))],
                        dtype=np.float64)

    def cube_targets(self) -> np.ndarray:
        '''(N, 3) where the loaded eval task wants each cube, metres (OGBench counts a cube as
        placed within 4 cm); (0, 3) outside eval tasks or without cubes.'''
        u = self._env
        if not self._task.startswith('task'):
            return np.zeros((0, 3))
        return np.array([u.data.mocap_pos[i] for i in getattr(u, '_cube_target_mocap_ids', [])],
                        dtype=np.float64).reshape(-1, 3)

    def goal_error_in_view(self) -> tuple[float, float]:
        '''Reach task: the gripper's offset from the goal split along the pixel camera's line
        of sight through the goal (metres, positive beyond the goal, seen from the camera) and
        across it (metres, >= 0), as `split_along_sight`; (nan, nan) otherwise.'''
        if self._task != 'reach' or self._goal_pos is None:
            return float('nan'), float('nan')
        u = self._env
        camera = u.data.cam_xpos[u.model.camera(CAMERA).id]
        along, across = split_along_sight(self.ee_position() - self._goal_pos, self._goal_pos,
                                          camera)
        return float(along), float(across)

    @property
    def goal_position(self) -> np.ndarray | None:
        '''Reach task's goal end-effector position (3,), metres; None otherwise.'''
        return None if self._goal_pos is None else self._goal_pos.copy()

    def oracle_action(self, rng: np.random.Generator) -> np.ndarray:
        '''OGBench's play operator (plan oracle + smoothed noise) for this state, (5,).'''
        if self._operator is None:
            raise ValueError(f'no scripted play operator for scene {self.name!r}; '
                             f'it exists for {sorted(OPERATED_SCENES)}')
        return self._operator.act(self.state(), rng)

    def close(self) -> None:
        '''Release the renderer (its GL context) now, on this thread: OGBench's env.close()
        leaves it to the garbage collector, which may run after EGL has gone (a warning
        "EGL_BAD_ACCESS" at exit). Rendering again makes a new one.'''
        _release_renderer(self._env)
        self._env.close()
