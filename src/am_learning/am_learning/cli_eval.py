'''am-eval: greedy rollouts of a checkpoint in the simulated scene, in-process (no ROS).

    am-eval CHECKPOINT [--scene cube-single] [--tasks all|1,3] [--reach 10]
            [--episodes-per-task 2] [--max-steps 200] [--stop success|policy|time]
            [--no-actor] [--out eval/]

Writes OUT/eval.json (success per task in percent, per-rollout details) and
OUT/filmstrip.png (the first rollouts next to their goal images), and prints the summary.
'''

import argparse
import json
import logging
from pathlib import Path
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='am-eval', description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n', 2)[2])
    p.add_argument('checkpoint', type=Path, help='checkpoint folder (or its model.safetensors)')
    p.add_argument('--scene', default='cube-single',
                   help='cube-single, cube-double, scene, puzzle-3x3, or point-world (toy)')
    p.add_argument('--tasks', default='all', help='evaluation task ids: all, none, or 1,2,5')
    p.add_argument('--reach', type=int, default=5, help='number of reach-task rollouts')
    p.add_argument('--episodes-per-task', type=int, default=1, help='rollouts per eval task')
    p.add_argument('--max-steps', type=int, default=200, help='control steps per rollout')
    p.add_argument('--stop', default='success', choices=['success', 'policy', 'time'],
                   help='how a rollout ends: success = as soon as the scene reports success '
                        "(oracle stop); policy = the policy node's rule (Q >= 0.9 for 3 steps: "
                        'reached; Q < 0.02 for 40: give up) or the time limit; time = always '
                        'max-steps. Success is judged when the rollout ends; touched beside it')
    p.add_argument('--seed', type=int, default=0, help='seed of task starts and of CEM')
    p.add_argument('--cem-samples', type=int, help='override the CEM samples of the checkpoint')
    p.add_argument('--cem-iterations', type=int, help='override the CEM iterations')
    p.add_argument('--cem-warm-start', action=argparse.BooleanOptionalAction, default=None,
                   help="start each step's CEM search at the previous action (default: the "
                        "checkpoint's act_cem.warm_start)")
    p.add_argument('--actor', action=argparse.BooleanOptionalAction, default=True,
                   help="with an actor head (network.actor_head): start CEM at the actor's "
                        'action; --no-actor acts as if the checkpoint had none')
    p.add_argument('--filmstrips', type=int, default=4, help='rollouts shown in the filmstrip')
    p.add_argument('--device', default='cpu', help='cpu or cuda')
    p.add_argument('--out', type=Path, default=Path('eval'), help='output folder')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


def parse_tasks(text: str, available: int) -> list[int]:
    if text == 'all':
        return list(range(1, available + 1))
    if text in ('none', ''):
        return []
    tasks = [int(t) for t in text.split(',')]
    bad = [t for t in tasks if not 1 <= t <= available]
    if bad:
        raise ValueError(f'task ids {bad} outside 1..{available}')
    return tasks


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    args = build_parser().parse_args(argv)
    from am_learning.evaluate import evaluate
    from am_learning.policy import CheckpointError, GoalReachingPolicy
    try:
        policy = GoalReachingPolicy.from_checkpoint(
            args.checkpoint, args.device, cem_samples=args.cem_samples,
            cem_iterations=args.cem_iterations, cem_warm_start=args.cem_warm_start,
            use_actor=args.actor, seed=args.seed)
        if args.scene == 'point-world':
            from am_learning.testing import PointWorld
            scene = PointWorld(policy.image_size, seed=args.seed)
        else:
            from am_learning.envs import make_scene
            scene = make_scene(args.scene, policy.image_size, seed=args.seed)
        try:
            tasks = parse_tasks(args.tasks, scene.num_eval_tasks)
            report = evaluate(policy, scene, eval_tasks=tasks, reach_tasks=args.reach,
                              episodes_per_task=args.episodes_per_task,
                              max_steps=args.max_steps, seed=args.seed,
                              filmstrips=args.filmstrips,
                              filmstrip_path=args.out / 'filmstrip.png',
                              progress=not args.no_progress, stop=args.stop)
        finally:
            scene.close()
    except (CheckpointError, ValueError, OSError, RuntimeError) as exc:
        print(f'am-eval: error: {exc}', file=sys.stderr)
        return 2
    report = {'checkpoint': str(args.checkpoint), 'scene': args.scene,
              'agent': policy.config.agent, 'checkpoint_step': policy.checkpoint_step,
              'cem': {'samples': policy.cem.samples, 'iterations': policy.cem.iterations,
                      'warm_start': policy.cem.warm_start,
                      'actor_proposal': policy.has_actor},
              **report}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'eval.json').write_text(json.dumps(report, indent=2))
    summary = {k: report[k] for k in ('checkpoint', 'scene', 'agent', 'success_pct',
                                       'touched_pct', 'cube_stages_pct', 'rollouts', 'stop')}
    summary['per_task'] = {k: v['success_pct'] for k, v in report['per_task'].items()}
    summary['eval_json'] = str(args.out / 'eval.json')
    summary['filmstrip'] = report.get('filmstrip')
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
