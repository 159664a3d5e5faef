'''The simulated scene and its play operator, in process (no ROS).'''

import time

import numpy as np
import pytest

from am_learning.conventions import ActionScale
from am_learning.envs import REACH_TOLERANCE_M, PlayOperator, decode_state, make_scene
from am_learning.envs.operator import (
    SCENE_TARGET_SITE_DZ,
    SUBTASKS,
    action_to_ogbench,
    decode_puzzle_state,
    decode_scene_state,
    drawer_handle_pos,
    ogbench_to_action,
    window_handle_pos,
)
from am_learning.envs.scene import SHADOW_LIGHT

SIZE = 32


@pytest.fixture(scope='module')
def scene():
    s = make_scene('cube-single', SIZE, seed=0)
    yield s
    s.close()


def test_shapes_and_types(scene):
    scene.reset(seed=1)
    image = scene.render()
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert image.std() > 5  # a real picture, not a blank buffer
    assert scene.proprio().shape == (7,) and scene.proprio().dtype == np.float32
    assert scene.state().shape == (28,) and scene.state().dtype == np.float32
    assert scene.ee_position().shape == (3,)
    assert np.isclose(np.linalg.norm(scene.ee_quaternion()), 1.0)
    assert scene.num_eval_tasks == 5
    assert scene.goal_state() is None and np.isnan(scene.goal_distance())
    assert not scene.task_solved()


def test_plus_x_moves_end_effector_plus_x(scene):
    scene.reset(seed=2)
    start = scene.ee_position().copy()
    for _ in range(6):
        scene.step(np.array([1.0, 0.0, 0.0, 0.0, -1.0]))
    moved = scene.ee_position() - start
    assert moved[0] > 0.08  # 6 full steps ask for 0.3 m; the PD arm lags but follows
    assert abs(moved[1]) < 0.02 and abs(moved[2]) < 0.03
    assert scene.steps == 6 and np.isclose(scene.sim_time, 0.3)


def test_hold_keeps_still(scene):
    scene.reset(seed=3)
    start = scene.ee_position().copy()
    for _ in range(10):  # right after a reset
        scene.hold()
    assert np.linalg.norm(scene.ee_position() - start) < 0.005
    for _ in range(4):
        scene.step(np.array([0.0, 1.0, 0.0, 0.0, -1.0]))
    for _ in range(5):  # let the commanded motion finish
        scene.hold()
    start = scene.ee_position().copy()
    for _ in range(10):
        scene.hold()
    assert np.linalg.norm(scene.ee_position() - start) < 0.005
    assert scene.steps == 29


def test_gripper_target_is_absolute(scene):
    scene.reset(seed=4)
    for _ in range(15):
        scene.step(np.array([0.0, 0.0, 0.0, 0.0, 1.0]))
    assert scene.gripper_opening() > 0.6  # closed (OGBench's opening: 1 = closed)
    for _ in range(15):
        scene.step(np.array([0.0, 0.0, 0.0, 0.0, -1.0]))
    assert scene.gripper_opening() < 0.1


def test_bad_action_is_refused(scene):
    with pytest.raises(ValueError, match='5 finite'):
        scene.step(np.array([np.nan, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match='5 finite'):
        scene.step(np.zeros(4))


def test_reach_task(scene):
    goal = scene.load_reach_task(seed=5)
    start = scene.render()
    assert scene.task == 'reach'
    assert goal.shape == start.shape
    assert np.abs(goal.astype(int) - start).mean() > 0.5  # the gripper moved in the picture
    assert scene.goal_distance() > REACH_TOLERANCE_M and not scene.task_solved()
    # Drive straight to the goal with the true position: the task becomes solved.
    for _ in range(60):
        delta = scene.goal_position - scene.ee_position()
        scene.step(np.append(np.clip(delta / 0.05, -1, 1), [0.0, -1.0]))
        if scene.task_solved():
            break
    assert scene.task_solved() and scene.goal_distance() <= REACH_TOLERANCE_M
    assert scene.goal_state().shape == (28,)


def test_reach_error_is_split_along_and_across_the_cameras_line_of_sight(scene):
    from am_learning.envs.scene import CAMERA_POSE

    scene.load_reach_task(seed=6)
    goal = scene.goal_position
    sight = goal - np.asarray(CAMERA_POSE[0])
    sight /= np.linalg.norm(sight)
    side = np.cross(sight, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    for offset, along, across in ((0.06 * sight, 0.06, 0.0), (-0.05 * sight, -0.05, 0.0),
                                  (0.06 * side, 0.0, 0.06)):
        for _ in range(40):  # drive there with the true position
            delta = goal + offset - scene.ee_position()
            scene.step(np.append(np.clip(delta / 0.05, -1, 1), [0.0, -1.0]))
        got_along, got_across = scene.goal_error_in_view()
        assert got_along == pytest.approx(along, abs=0.01)
        assert got_across == pytest.approx(across, abs=0.01)
        assert np.hypot(got_along, got_across) == pytest.approx(scene.goal_distance())
    scene.reset(seed=0)
    assert np.isnan(scene.goal_error_in_view()).all()


def test_reach_is_seeded(scene):
    first = scene.load_reach_task(seed=11)
    pos = scene.goal_position
    second = scene.load_reach_task(seed=11)
    assert np.allclose(pos, scene.goal_position) and np.array_equal(first, second)
    scene.load_reach_task(seed=12)
    assert not np.allclose(pos, scene.goal_position)


def test_eval_tasks_are_seeded(scene):
    '''The same task and seed give the same start and goal in another scene (OGBench settles
    the goal scene with random actions from the action space's own generator).'''
    other = make_scene('cube-single', SIZE, seed=5)
    try:
        for s in (scene, other):
            s.load_eval_task(2, seed=9)
        assert np.array_equal(scene.goal_state(), other.goal_state())
        assert np.array_equal(scene.state(), other.state())
        other.load_eval_task(2, seed=10)
        assert not np.array_equal(scene.goal_state(), other.goal_state())
    finally:
        other.close()


def test_eval_task_goal_image(scene):
    goal = scene.load_eval_task(1, seed=0)
    start = scene.render()
    assert scene.task == 'task1' and goal.shape == (SIZE, SIZE, 3)
    # Task 1 moves the cube from y=+0.1 to y=-0.1: the pictures differ.
    assert np.abs(goal.astype(int) - start).mean() > 0.5
    goal_state = scene.goal_state()
    cube_goal = decode_state(goal_state, 1)['privileged/block_0_pos']
    assert np.allclose(cube_goal[:2], [0.425, -0.1], atol=0.02)
    assert not scene.task_solved()
    with pytest.raises(ValueError, match='task_id'):
        scene.load_eval_task(6)


def test_state_decoding_matches_scene(scene):
    scene.reset(seed=6)
    info = decode_state(scene.state(), 1)
    assert np.allclose(info['proprio/effector_pos'], scene.ee_position(), atol=1e-5)
    assert np.isclose(info['proprio/effector_yaw'][0], scene.ee_yaw(), atol=1e-4)
    assert np.isclose(info['proprio/gripper_opening'][0], scene.gripper_opening(), atol=1e-5)
    assert np.allclose(info['proprio/joint_pos'], scene.proprio()[:6], atol=1e-5)


def test_gripper_conversion_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(-1, 1, 5).astype(np.float32)
        opening = float(rng.uniform(0, 1))
        assert np.allclose(ogbench_to_action(action_to_ogbench(a, opening), opening), a,
                           atol=1e-6)


def test_play_operator_moves_the_cube(scene):
    scene.reset(seed=7)
    rng = np.random.default_rng(0)
    cube0 = decode_state(scene.state(), 1)['privileged/block_0_pos']
    actions = []
    for _ in range(120):
        a = scene.oracle_action(rng)
        actions.append(a)
        scene.step(a)
    actions = np.array(actions)
    assert actions.shape == (120, 5) and np.all(np.abs(actions) <= 1.0)
    assert np.abs(actions[:, :3]).mean() > 0.05  # it moves
    assert actions[:, 4].max() > 0.5 and actions[:, 4].min() < -0.5  # it grasps and releases
    cube1 = decode_state(scene.state(), 1)['privileged/block_0_pos']
    assert np.linalg.norm(cube1 - cube0) > 0.03  # the cube was carried


def test_play_operator_is_reproducible_and_leaves_global_rng_alone():
    states = [make_scene('cube-single', SIZE, render=False, seed=3) for _ in range(2)]
    np.random.seed(123)
    expected_global = np.random.get_state()[1].copy()
    runs = []
    for s in states:
        rng = np.random.default_rng(9)
        run = []
        for _ in range(40):
            a = s.oracle_action(rng)
            s.step(a)
            run.append(a)
        runs.append(np.array(run))
    assert np.array_equal(runs[0], runs[1])
    assert np.array_equal(np.random.get_state()[1], expected_global)


def test_play_operator_two_cubes():
    op = PlayOperator('cube-double', ActionScale())
    s = make_scene('cube-double', SIZE, render=False, seed=1)
    rng = np.random.default_rng(1)
    op.reset(rng)
    for _ in range(30):
        s.step(op.act(s.state(), rng))
    assert op.target_block in (0, 1)
    with pytest.raises(ValueError, match='drives'):
        PlayOperator('cube-triple')


def test_play_operator_presses_puzzle_buttons():
    s = make_scene('puzzle-3x3', SIZE, render=False, seed=2)
    info = decode_puzzle_state(s.state())
    u = s._env
    for i in range(9):  # the operator knows where each button top is
        top = u.data.site_xpos[u._button_site_ids[i]]
        assert np.allclose(info[f'privileged/button_{i}_top_pos'], top, atol=1e-3)
    before = [info[f'privileged/button_{i}_state'][0] for i in range(9)]
    rng = np.random.default_rng(0)
    for _ in range(150):
        s.step(s.oracle_action(rng))
    info = decode_puzzle_state(s.state())
    after = [info[f'privileged/button_{i}_state'][0] for i in range(9)]
    assert before != after  # buttons were pressed (each press toggles its neighbours too)
    assert s.gripper_opening() > 0.5  # OGBench presses with the gripper closed


@pytest.fixture(scope='module')
def scene_scene():
    s = make_scene('scene', SIZE, render=False, seed=0)
    yield s
    s.close()


def test_scene_state_decoding_matches_ogbench(scene_scene):
    '''decode_scene_state against the info dict of OGBench's own SceneEnv, random states.'''
    s, u = scene_scene, scene_scene._env
    rng = np.random.default_rng(0)
    seen_states = set()
    for seed in range(5):
        s.reset(seed=seed)  # cube, button states, drawer and window drawn at random
        for _ in range(int(rng.integers(0, 10))):
            s.step(rng.uniform(-1.0, 1.0, 5))
        info = decode_scene_state(s.state())
        truth = u.compute_ob_info()
        needed = {'proprio/effector_pos', 'proprio/effector_yaw', 'proprio/gripper_opening',
                  'privileged/block_0_pos', 'privileged/block_0_yaw', 'button_states',
                  'privileged/button_0_state', 'privileged/button_1_state',
                  'privileged/drawer_pos', 'privileged/drawer_handle_pos',
                  'privileged/drawer_handle_yaw', 'privileged/window_pos',
                  'privileged/window_handle_pos', 'privileged/window_handle_yaw'}
        assert needed <= set(info) & set(truth)
        for key in set(info) & set(truth) - {'privileged/block_0_quat'}:
            value = truth[key]
            want = np.asarray(value, dtype=np.float64)
            err = np.abs(np.asarray(info[key], dtype=np.float64).reshape(want.shape) - want)
            if key.endswith('_yaw'):
                err = np.abs((err + np.pi) % (2.0 * np.pi) - np.pi)
            assert err.max() < 1e-5, (key, info[key], value)
        quat = info['privileged/block_0_quat']  # q and -q are the same rotation
        assert min(np.abs(quat - truth['privileged/block_0_quat']).max(),
                   np.abs(quat + truth['privileged/block_0_quat']).max()) < 1e-5
        for i in range(2):  # the buttons' tops and the drawer's and window's target handles
            top = u.data.site_xpos[u._button_site_ids[i]]
            assert np.allclose(info[f'privileged/button_{i}_top_pos'], top, atol=1e-6)
        drawer = drawer_handle_pos(truth['privileged/target_drawer_pos'][0])
        window = window_handle_pos(truth['privileged/target_window_pos'][0])
        assert np.allclose(drawer + [0, 0, SCENE_TARGET_SITE_DZ],
                           truth['privileged/target_drawer_handle_pos'], atol=1e-6)
        assert np.allclose(window + [0, 0, SCENE_TARGET_SITE_DZ],
                           truth['privileged/target_window_handle_pos'], atol=1e-6)
        seen_states.add(tuple(info['button_states']))
    assert len(seen_states) >= 2  # both locked and unlocked states were decoded
    with pytest.raises(ValueError, match='scene state'):
        decode_scene_state(np.zeros(28))


def test_scene_subtasks_are_drawn_as_ogbench_does(scene_scene):
    '''SceneEnv.set_new_target's weights: a locked drawer (window) is tried 4x less often, and
    the cube is never picked from inside the drawer.'''
    scene_scene.reset(seed=1)
    info = decode_scene_state(scene_scene.state())
    op = PlayOperator('scene')
    rng = np.random.default_rng(0)

    def frequencies(button_states, cube_pos=None):
        i = dict(info, button_states=np.array(button_states))
        if cube_pos is not None:
            i['privileged/block_0_pos'] = np.asarray(cube_pos)
        counts = dict.fromkeys(SUBTASKS, 0)
        for _ in range(4000):
            op._new_target(i, rng)
            counts[op.subtask] += 1
        return np.array([counts[k] for k in SUBTASKS]) / 4000

    assert np.allclose(frequencies([0, 0]), [0.4, 0.4, 0.1, 0.1], atol=0.03)
    assert np.allclose(frequencies([1, 1]), [0.25] * 4, atol=0.03)
    assert np.allclose(frequencies([1, 0]), [1 / 3.25, 1 / 3.25, 1 / 3.25, 0.25 / 3.25],
                       atol=0.03)
    inside = info['privileged/drawer_handle_pos'] + [0.0, -0.17, -0.01]
    assert frequencies([1, 1], inside)[0] == 0.0


def test_play_operator_does_scene_subtasks(scene_scene):
    '''In the real scene each finished subtask changed its object as intended (checked from
    the environment's own info), and the operator's own account of success agrees.'''
    s, u = scene_scene, scene_scene._env
    s.reset(seed=4)
    op = PlayOperator('scene', s.action_scale)
    rng = np.random.default_rng(4)
    op.reset(rng)
    begin, plan = None, None
    checked = []
    for _ in range(400):
        truth = u.compute_ob_info()
        n = len(op.finished)
        action = op.act(s.state(), rng)
        assert action.shape == (5,) and np.all(np.abs(action) <= 1.0)
        if len(op.finished) > n:  # the subtask `plan` ended at this state
            kind, target, target_pos = plan
            if kind == 'button':
                reached = moved = truth[f'privileged/button_{target}_state'] \
                    != begin[f'privileged/button_{target}_state']
            else:  # the cube, or the drawer's or window's handle, at its target
                key = f'privileged/{"block_0" if kind == "cube" else kind + "_handle"}_pos'
                reached = np.linalg.norm(truth[key] - target_pos) <= 0.04 + 1e-3
                moved = reached and np.linalg.norm(truth[key] - begin[key]) > 0.03
            assert op.finished[-1] == (kind, bool(reached))
            checked.append((kind, bool(moved)))
        if len(op.finished) > n or plan is None:
            begin, plan = truth, (op.subtask, op.target_block, op.target_pos.copy())
        s.step(action)
    done = {kind for kind, moved in checked if moved}
    print(f'subtasks finished in 400 steps (object changed): {checked}')
    assert len(checked) >= 5 and len(done) >= 3  # several subtasks, of most kinds, worked


def test_unknown_scene_is_refused():
    with pytest.raises(ValueError, match='unknown scene'):
        make_scene('cube-ninefold')


def test_render_speed_sanity(scene):
    '''Reported, not asserted against a number: the machine is shared.'''
    scene.reset(seed=8)
    scene.render()
    t = time.perf_counter()
    for _ in range(20):
        scene.render()
    fps = 20 / (time.perf_counter() - t)
    print(f'render {SIZE}x{SIZE}: {fps:.0f} frames/s')
    # What makes it fast: one small shadow map, no multisampling, the faint heavy arm hidden.
    model = scene._env.model
    assert model.vis.quality.shadowsize <= 256 and model.vis.quality.offsamples == 0
    assert model.light_castshadow.sum() == 1
    assert (model.geom_group == 5).sum() > 20


def _gripper_pixels(image: np.ndarray) -> np.ndarray:
    '''(row, col) of the pixels in the gripper's colour (bright, red + green >> blue).'''
    rgb = image.astype(np.int32)
    mask = (rgb[..., 0] > 120) & (rgb[..., 1] > 90) & (rgb[..., 2] < 0.5 * rgb[..., 1])
    return np.argwhere(mask)


def _gripper_and_shadow(s, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    '''Mean (row, col) of the gripper's pixels and of its shadow's with the gripper posed
    at `pose` (the shadow: pixels the shadow-casting light leaves darker).'''
    model = s._env.model
    image, reached, _ = s.posed(pose, 0.0)
    assert np.linalg.norm(reached - pose) < 0.01
    pixels = _gripper_pixels(image)
    assert len(pixels) >= 15, f'gripper hardly visible at {pose}'
    model.light_castshadow[SHADOW_LIGHT] = 0
    unshaded = s.posed(pose, 0.0)[0]
    model.light_castshadow[SHADOW_LIGHT] = 1
    darker = unshaded.astype(np.int32).sum(-1) - image.astype(np.int32).sum(-1)
    darker[tuple(pixels.T)] = 0  # the gripper's shade on itself
    assert (darker > 15).sum() >= 8, f'no shadow in the frame at {pose}'
    return pixels.mean(axis=0), np.argwhere(darker > 15).mean(axis=0)


def test_gripper_and_its_height_are_legible_anywhere_in_the_reach_box():
    '''A camera-only policy must see where the gripper is: at every corner of the box reach
    goals are drawn from, the gripper is in the 64 px frame, and its height shows as the gap
    to its shadow on the table below it.'''
    s = make_scene('cube-single', 64, seed=0)
    s.reset(seed=5)
    low, high = s._env._arm_sampling_bounds
    for x in (low[0], high[0]):
        for y in (low[1], high[1]):
            seen = [_gripper_and_shadow(s, np.array([x, y, z])) for z in (low[2], high[2])]
            # Image rows grow downwards: the shadow lies below the gripper, farther the higher.
            gaps = [shadow[0] - gripper[0] for gripper, shadow in seen]
            assert 0 < gaps[0] and gaps[0] + 6.0 <= gaps[1], (x, y, seen)
    s.close()


def test_depth_along_the_cameras_line_of_sight_shows_in_the_shadow():
    '''Moving the gripper along the camera's line of sight hardly moves it in the image; the
    shadow light is aimed so that the shadow moves instead (`SHADOW_ELEVATION_DEG`).'''
    from am_learning.envs.scene import CAMERA_POSE

    s = make_scene('cube-single', 64, seed=0)
    s.reset(seed=5)
    for centre in (np.array([0.4, -0.2, 0.25]), np.array([0.45, 0.0, 0.3]),
                   np.array([0.5, 0.2, 0.27])):
        sight = centre - np.asarray(CAMERA_POSE[0])
        sight /= np.linalg.norm(sight)
        (g0, s0), (g1, s1) = (_gripper_and_shadow(s, centre + d * sight) for d in (-0.04, 0.04))
        gripper_moved, shadow_moved = np.linalg.norm(g1 - g0), np.linalg.norm(s1 - s0)
        assert gripper_moved < 1.5 and shadow_moved >= 3.0, (centre, g0, g1, s0, s1)
    # OGBench's direction, straight down, for comparison (bench/legibility.py).
    s.aim_shadow_light(90.0)
    assert np.allclose(s._env.model.light_dir[SHADOW_LIGHT], [0.0, 0.0, -1.0], atol=1e-9)
    for bad in (0.0, 91.0):
        with pytest.raises(ValueError, match='elevation_deg'):
            s.aim_shadow_light(bad)
    s.close()


def test_close_releases_the_renderer_and_a_later_render_makes_one():
    '''OGBench's env.close() leaves the GL context to the garbage collector, which may run it
    on another thread (an rclpy executor's) or after EGL is gone: close() releases it now.'''
    s = make_scene('cube-single', 16, seed=0)
    before = s.render()
    s.close()
    assert s._env._renderer is None
    assert np.array_equal(s.render(), before)
    s.close()


@pytest.mark.parametrize('name', ['cube-double', 'scene', 'puzzle-3x3'])
def test_other_scenes_step_render_and_load_tasks(name):
    s = make_scene(name, 16, seed=0)
    start = s.ee_position().copy()
    for _ in range(4):
        s.step(np.array([1.0, 0.0, 0.0, 0.0, -1.0]))
    assert s.ee_position()[0] - start[0] > 0.03
    goal = s.load_eval_task(3, seed=0)
    assert goal.shape == (16, 16, 3) and s.task == 'task3' and s.num_eval_tasks == 5
    assert np.abs(goal.astype(int) - s.render()).mean() > 0.2
    assert s.goal_state().shape == s.state().shape
    s.load_reach_task(seed=1)
    assert s.goal_distance() > 0
    # Only the faint arm is hidden: the scene's own meshes (buttons, drawer, window, puzzle
    # pieces) stay in the camera's groups.
    model = s._env.model
    hidden = {model.geom(g).name for g in np.flatnonzero(model.geom_group == 5)}
    assert hidden and all(n.startswith('ur5e/') for n in hidden), sorted(hidden)[:5]
    s.close()


def test_scene_task_success_is_ogbench_verdict(scene_scene):
    '''No `scene` evaluation task starts solved, and task_solved agrees with SceneEnv's own
    success (every cube, button, the drawer and the window at their targets).'''
    u = scene_scene._env
    for task in range(1, scene_scene.num_eval_tasks + 1):
        scene_scene.load_eval_task(task, seed=0)
        for _ in range(3):
            scene_scene.hold()
            assert scene_scene.task_solved() == bool(u._success)
        assert not scene_scene.task_solved(), f'task{task} counted as solved at its start'
