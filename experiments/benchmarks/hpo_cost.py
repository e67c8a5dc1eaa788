"""HPO cost: one SPG-HPO retraining run against search over the dropout rate, on MNIST-1D.

Per seed, from the same base model (trained once from scratch, its cost reported apart):
  * SPG-HPO: ONE retraining run (the protocol's `spg_hpo` arm);
  * grid search: one retraining run (no SPG) per dropout rate in {0, 0.1, ..., 0.5};
  * random search: the same number of runs, rates drawn uniformly from [0, 0.5];
  * Optuna TPE (if `optuna` is installed): the same number of trials;
each search keeps the run with the best validation accuracy and reports its test accuracy.
Compute: training steps and wall time (compilation included, as a user would pay it).

  python -m experiments.benchmarks.hpo_cost
  python -m experiments.benchmarks.hpo_cost --seeds=0,1,2 --retrain_steps=1000

Where the dropout sits: on the head's input, exactly where SPG-HPO's replicas drop units:
the registry model's `head_dropout` field (the protocol's `dropout` arm, same parameters,
so the same checkpoint; the published `cnn1d_mnist1d` has no dropout of its own).
Fair comparisons (the searches get the budget SPG-HPO used, not six times it):
- `grid_equal_steps`: the same grid, each rate trained `retrain_steps / len(grid)` steps, so
  the search's training steps equal SPG-HPO's (an SPG step costs more than a plain step, so
  this search gets somewhat less compute than SPG-HPO).
- equal wall-clock: the random and TPE searches cut to their first runs whose summed wall
  time (compilation included) fits in SPG-HPO's own wall time (at least one run), from the
  runs already made.
- `spg_controller`: SPG-HPO with the online controller (`config.controller`), against
  SPG-HPO at the fixed rate and the grid's best fixed rate.
Writes section `hpo_cost` of experiments/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
import numpy as np

from experiments.benchmarks import common
from experiments.configs import mnist1d_protocol
from spg_jax import protocol
from spg_jax import report
from spg_jax.train import loop

SECTION = "hpo_cost"
MODEL = "cnn1d_mnist1d"
RATE_KWARG = "head_dropout"


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--grid", default="0,0.1,0.2,0.3,0.4,0.5", help="dropout rates")
  p.add_argument("--resolution", type=float, default=0.05,
                 help="random / Optuna rates are multiples of this")
  p.add_argument("--methods", default="spg,spg_controller,grid,grid_equal_steps,random,optuna")
  p.add_argument("--base_steps", type=int, default=0, help="0: the protocol config's")
  p.add_argument("--retrain_steps", type=int, default=0, help="0: the protocol config's")
  p.add_argument("--quick", action="store_true", help="the config's quick variant (tests)")
  p.add_argument("--workdir", default="")
  p.add_argument("--results", default=common.RESULTS_PATH)
  return p.parse_args(argv)


def quantize(rates, resolution: float) -> np.ndarray:
  """Rates rounded to multiples of `resolution`: each distinct rate is a static setting
  (one compilation), so a finite set keeps compilation from dominating CPU wall times."""
  # round(..., 10): 0.1 * 3 must equal the grid's 0.3, or it would be another static setting.
  return np.round(np.round(np.asarray(rates) / resolution) * resolution, 10)


def search_run(config, seed: int, rate: float, base_variables: dict, workdir: str,
               num_steps: int = 0) -> dict:
  """One retraining run of the control arm with dropout `rate` on the head input
  (`num_steps` > 0: that many steps instead of the protocol's, validated at least at the
  end)."""
  stage = protocol.arm_stage_configs(config, seed)[config.protocol.reference]
  stage.model.kwargs[RATE_KWARG] = float(rate)
  if num_steps:
    stage.num_steps = int(num_steps)
    stage.eval_every_steps = min(int(stage.eval_every_steps), int(num_steps))
    stage.log_every_steps = min(int(stage.log_every_steps), int(num_steps))
  result = loop.train_and_evaluate(stage, workdir, init_variables=base_variables)
  return {"rate": float(rate), "val": result.best_val_score, "test": result.test_score,
          "steps": result.num_steps, "wall": result.wall_time_s}


def select(runs: list[dict]) -> dict:
  """The search's outcome: the run with the best validation accuracy (first on ties);
  `trials` keeps every run, in order (for the equal-wall-clock cut)."""
  best = max(runs, key=lambda r: r["val"])
  return {"test": best["test"], "rate": best["rate"], "runs": len(runs),
          "steps": sum(r["steps"] for r in runs), "wall": sum(r["wall"] for r in runs),
          "trials": list(runs)}


def within_wall(search: dict, wall_budget: float) -> dict:
  """`search` cut to its first runs whose summed wall time fits in `wall_budget` seconds
  (at least the first run), then selected on validation as before."""
  runs, total = [], 0.0
  for run in search["trials"]:
    if runs and total + run["wall"] > wall_budget:
      break
    runs.append(run)
    total += run["wall"]
  return select(runs)


def final_rates(history: list[dict]) -> tuple[float, ...]:
  """The controller's last logged dropout rates (`controller/dropout_rates...` keys)."""
  for record in reversed(history):
    keys = sorted(k for k in record if k.startswith("controller/"))
    if keys:
      return tuple(float(record[k]) for k in keys)
  return ()


def run_seed(config, seed: int, args, workdir: str, grid: list[float]) -> dict:
  """Every method's outcome for one seed (a shared base)."""
  base_stage = protocol.base_stage_config(config, seed)
  base = loop.train_and_evaluate(base_stage, os.path.join(workdir, "base"))
  out = {"base": {"test": base.test_score, "steps": base.num_steps,
                  "wall": base.wall_time_s, "runs": 1, "rate": None}}
  methods = [m for m in args.methods.split(",") if m]
  n = len(grid)
  run_dir = lambda name, i: os.path.join(workdir, name, str(i))  # noqa: E731
  if "spg" in methods:
    stage = protocol.arm_stage_configs(config, seed)["spg_hpo"]
    r = loop.train_and_evaluate(stage, run_dir("spg", 0), init_variables=base.best_variables)
    out["spg"] = {"test": r.test_score, "steps": r.num_steps, "wall": r.wall_time_s,
                  "runs": 1, "rate": None}
  if "spg_controller" in methods:
    stage = protocol.arm_stage_configs(config, seed)["spg_hpo"]
    stage.controller.enabled = True
    r = loop.train_and_evaluate(stage, run_dir("spg_controller", 0),
                                init_variables=base.best_variables)
    rates = final_rates(r.history)
    out["spg_controller"] = {"test": r.test_score, "steps": r.num_steps,
                             "wall": r.wall_time_s, "runs": 1,
                             "rate": float(np.mean(rates)) if rates else None,
                             "final_rates": rates}
  if "grid" in methods:
    out["grid"] = select([search_run(config, seed, rate, base.best_variables,
                                     run_dir("grid", i)) for i, rate in enumerate(grid)])
  if "grid_equal_steps" in methods:
    steps = max(int(config.protocol.retrain.num_steps) // n, 1)
    out["grid_equal_steps"] = select([
        search_run(config, seed, rate, base.best_variables, run_dir("grid_equal_steps", i),
                   num_steps=steps) for i, rate in enumerate(grid)])
  if "random" in methods:
    rng = np.random.default_rng(1000 + seed)
    rates = quantize(rng.uniform(min(grid), max(grid), n), args.resolution)
    out["random"] = select([search_run(config, seed, rate, base.best_variables,
                                       run_dir("random", i)) for i, rate in enumerate(rates)])
  if "optuna" in methods and optuna_module() is not None:
    optuna = optuna_module()
    runs = []

    def objective(trial):
      rate = float(quantize(trial.suggest_float(RATE_KWARG, min(grid), max(grid),
                                                step=args.resolution), args.resolution))
      runs.append(search_run(config, seed, rate, base.best_variables,
                             run_dir("optuna", len(runs))))
      return runs[-1]["val"]

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n)
    out["optuna"] = select(runs)
  if "spg" in out:  # equal wall-clock: the searches' first runs that fit in SPG-HPO's time
    for method in ("random", "optuna"):
      if method in out:
        out[f"{method}_equal_wall"] = within_wall(out[method], out["spg"]["wall"])
  return out


def optuna_module():
  """optuna if installed (optional: not in requirements.txt), else None."""
  try:
    import optuna  # pylint: disable=import-outside-toplevel
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
  except ImportError:
    return None


LABELS = {"base": "base (starting checkpoint, not retrained)", "spg": "SPG-HPO (1 run)",
          "spg_controller": "SPG-HPO with the online controller (1 run; rate: final mean)",
          "grid": "grid search over dropout (6x the runs)",
          "grid_equal_steps": "grid search, same total steps as SPG-HPO",
          "random": "random search over dropout",
          "random_equal_wall": "random search cut to SPG-HPO's wall time",
          "optuna": "Optuna TPE over dropout",
          "optuna_equal_wall": "Optuna TPE cut to SPG-HPO's wall time"}


def table(per_seed: list[dict], confidence: float = 0.95) -> str:
  header = ["method", "runs / seed (mean)", "test acc % (mean ± std)", "vs SPG-HPO pp (95% CI)",
            "train steps / seed", "wall s / seed", "selected rates"]
  rows = []
  for method in [m for m in LABELS if m in per_seed[0]]:
    tests = [s[method]["test"] for s in per_seed]
    mean, std, _ = report.summarize(tests)
    diff = "-"
    if method != "spg" and "spg" in per_seed[0] and len(per_seed) > 1:
      d, lo, hi = report.paired_difference_ci(tests, [s["spg"]["test"] for s in per_seed],
                                              confidence)
      diff = f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"
    rates = [s[method]["rate"] for s in per_seed]
    rows.append([LABELS[method], f"{np.mean([s[method]['runs'] for s in per_seed]):.3g}",
                 f"{100 * mean:.2f} ± {100 * std:.2f}", diff,
                 f"{np.mean([s[method]['steps'] for s in per_seed]):.0f}",
                 f"{np.mean([s[method]['wall'] for s in per_seed]):.1f}",
                 "-" if rates[0] is None else ", ".join(f"{r:.2f}" for r in rates)])
  return common.markdown_table(header, rows)


def verdicts(per_seed: list[dict], confidence: float = 0.95) -> str:
  """Plain paired verdicts: SPG-HPO against each search, the controller against SPG-HPO's
  fixed rate and the grid's best fixed rate."""
  pairs = [("spg", m) for m in ("grid", "grid_equal_steps", "random_equal_wall",
                                "optuna_equal_wall", "random", "optuna")]
  pairs += [("spg_controller", "spg"), ("spg_controller", "grid")]
  lines = []
  for arm, ref in pairs:
    if arm in per_seed[0] and ref in per_seed[0]:
      lines.append("- " + report.plain_verdict(
          arm, ref, [s[arm]["test"] for s in per_seed], [s[ref]["test"] for s in per_seed],
          confidence))
  return "\n".join(lines) + "\n"


def main(argv=None) -> str:
  args = parse_args(argv)
  config = mnist1d_protocol.get_config("quick" if args.quick else None)
  p = config.protocol
  if args.base_steps:
    p.base.num_steps = args.base_steps
  if args.retrain_steps:
    p.retrain.num_steps = args.retrain_steps
  grid = [float(g) for g in args.grid.split(",")]
  seeds = [int(s) for s in args.seeds.split(",")]
  workdir = args.workdir or tempfile.mkdtemp(prefix="spg_hpo_cost_")
  has_optuna = optuna_module() is not None
  device = jax.devices()[0]
  print(f"device: {device.platform} ({device.device_kind}); workdir {workdir}; optuna "
        f"{'available' if has_optuna else 'not installed'}", flush=True)
  start = time.time()
  per_seed = []
  for seed in seeds:
    per_seed.append(run_seed(config, seed, args, os.path.join(workdir, f"seed_{seed}"),
                             grid))
    print(f"seed {seed}: " + ", ".join(f"{m} {100 * r['test']:.2f}%"
                                       for m, r in per_seed[-1].items()), flush=True)
  where = "the registry model's `head_dropout`"
  optuna_line = ("Optuna TPE: available (optuna "
                 f"{optuna_module().__version__}), seeded per seed, same rate set."
                 if has_optuna and "optuna" in args.methods else
                 "Optuna TPE: not run (optuna not installed; it is optional).")
  return common.publish(SECTION, [
      "## 5. HPO cost: one SPG-HPO run vs searching the dropout rate",
      "",
      f"MNIST-1D, `{MODEL}`, {len(seeds)} seeds ({seeds}). Per seed one base model is "
      f"trained from scratch ({p.base.num_steps} steps; its cost is the `base` row and is "
      f"shared by every method); every retraining run then starts from it with the "
      f"protocol's retraining settings ({p.retrain.num_steps} steps, lr "
      f"{p.retrain.optimizer.learning_rate}, validation every "
      f"{p.retrain.eval_every_steps} steps). SPG-HPO: one run (T = "
      f"{config.spg.num_replicas}, replica dropout {config.spg.rate}). Searches: "
      f"{len(grid)} runs each without SPG, dropout on the head input via {where}; grid "
      f"{grid}; random: uniform in [{min(grid)}, {max(grid)}] rounded to multiples of "
      f"{args.resolution} (each distinct rate compiles once); each keeps the best run on "
      f"validation and reports its test accuracy. {optuna_line} Steps and wall time are "
      f"totals per seed (wall includes compilation: each new dropout rate is a new static "
      f"setting here; runs after the first seed reuse compiled steps). `vs SPG-HPO`: "
      f"paired by seed, percentage points, 95% t interval.",
      "",
      table(per_seed),
      f"Fair budgets: `grid search, same total steps` trains each of the {len(grid)} rates "
      f"{max(int(p.retrain.num_steps) // len(grid), 1)} steps (its steps equal SPG-HPO's; "
      f"an SPG step costs more than a plain one, so it gets less compute than SPG-HPO); the "
      f"`cut to SPG-HPO's wall time` rows keep the first runs of the random / TPE searches "
      f"whose summed wall time fits in SPG-HPO's (at least one run). The controller "
      f"(`config.controller`: every {config.controller.every_steps} steps, target survival "
      f"{config.controller.target_survival}, step {config.controller.step_size}, rates in "
      f"[{config.controller.min_rate}, {config.controller.max_rate}]) starts from the fixed "
      f"rate; its column is the mean of its final rates.",
      "",
      "Verdicts (paired by seed; names: `spg` SPG-HPO, `spg_controller` with the "
      "controller, the searches by method):",
      "",
      verdicts(per_seed),
      f"Total wall time {time.time() - start:.0f} s.",
  ], args.results)


if __name__ == "__main__":
  main()
