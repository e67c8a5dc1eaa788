"""Statistics, tables and plots for the retraining protocol (pure functions, no JAX).

* `summarize(values) -> (mean, std, n)`: sample mean and standard deviation (ddof=1).
* `paired_difference_ci(a, b, confidence) -> (mean_diff, lo, hi)`: the paired t interval of
  `a - b` over seeds (both arms were trained from the same base with the same seed, so the
  differences are paired, which removes the seed-to-seed spread of the base).
* `t_quantile(p, df)`: Student-t quantile; `scipy.stats.t.ppf` when scipy is installed,
  otherwise the exact closed-form CDF for integer df inverted by bisection.
* `results_table_markdown`, `per_seed_table_markdown`: the tables of `results.md`.
* `plot_results`: `results.png` (a bare matplotlib Figure: no pyplot, no backend switch).

Every number these functions print comes from their arguments: nothing is hard-coded.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import platform
from typing import Mapping, Sequence

import numpy as np

# (steps [K], values [K]) of one seed's curve.
Curve = tuple[Sequence[float], Sequence[float]]
NO_DIFFERENCE = "no significant difference"


# ----------------------------------------------------------------------------- statistics
def summarize(values: Sequence[float]) -> tuple[float, float, int]:
  """Mean, sample standard deviation (ddof=1; NaN when n < 2) and count of `values` [n]."""
  x = np.asarray(values, dtype=np.float64).reshape(-1)
  n = int(x.size)
  if n == 0:
    raise ValueError("summarize: needs at least one value")
  std = float(np.std(x, ddof=1)) if n > 1 else math.nan
  return float(np.mean(x)), std, n


def _t_two_sided_mass(t: float, df: int) -> float:
  """P(|T| <= t) for Student's t with integer `df` >= 1 (Abramowitz & Stegun 26.7.3-4)."""
  theta = math.atan(t / math.sqrt(df))
  s, c2 = math.sin(theta), math.cos(theta) ** 2
  if df % 2 == 1:
    # odd df: (2/pi) [theta + sin(theta) (c + 2/3 c^3 + 2*4/(3*5) c^5 + ... + c^(df-2))]
    total, term = 0.0, math.cos(theta)
    for k in range(1, (df - 1) // 2 + 1):
      total += term
      term *= c2 * (2 * k) / (2 * k + 1)
    return (2.0 / math.pi) * (theta + s * total)
  # even df: sin(theta) [1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... + c^(df-2)]
  total, term = 0.0, 1.0
  for k in range(df // 2):
    total += term
    term *= c2 * (2 * k + 1) / (2 * k + 2)
  return s * total


def t_quantile_exact(p: float, df: int) -> float:
  """The `p` quantile (0.5 < p < 1) of Student's t with integer `df`, without scipy.

  Inverts the closed-form CDF by bisection to double precision, e.g.
  `t_quantile_exact(0.975, 4) = 2.7764...`.
  """
  if isinstance(df, bool) or int(df) != df or df < 1:
    raise ValueError(f"df={df!r}: must be an integer >= 1")
  if not 0.5 < p < 1.0:
    raise ValueError(f"p={p!r}: must be in (0.5, 1)")
  df, mass = int(df), 2.0 * p - 1.0  # two-sided mass inside [-t, t]
  lo, hi = 0.0, 1.0
  while _t_two_sided_mass(hi, df) < mass:
    lo, hi = hi, 2.0 * hi
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    if _t_two_sided_mass(mid, df) < mass:
      lo = mid
    else:
      hi = mid
    if hi - lo <= 1e-13 * hi:
      break
  return 0.5 * (lo + hi)


def t_quantile(p: float, df: int) -> float:
  """Student-t quantile: `scipy.stats.t.ppf(p, df)` if scipy is installed, else exact."""
  try:
    from scipy import stats  # pylint: disable=g-import-not-at-top  (optional dependency)
  except ImportError:
    return t_quantile_exact(p, df)
  return float(stats.t.ppf(p, df))


def paired_difference_ci(a: Sequence[float], b: Sequence[float], confidence: float = 0.95
                         ) -> tuple[float, float, float]:
  """Mean of the paired differences `a - b` and its t confidence interval.

  Args:
    a, b: `[n]` values paired by position (here: the same seed).
    confidence: two-sided coverage in (0, 1).

  Returns:
    `(mean_diff, lo, hi)`; `lo`, `hi` are NaN when n < 2 (no spread to estimate).
  """
  a = np.asarray(a, dtype=np.float64).reshape(-1)
  b = np.asarray(b, dtype=np.float64).reshape(-1)
  if a.shape != b.shape:
    raise ValueError(f"paired_difference_ci: a and b need the same length, got {a.size} "
                     f"and {b.size}")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence={confidence!r}: must be in (0, 1)")
  mean, std, n = summarize(a - b)
  if n < 2:
    return mean, math.nan, math.nan
  half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
  return mean, mean - half, mean + half


def verdict(lo: float, hi: float, higher_is_better: bool | None = None) -> str:
  """Plain words for a difference interval: significant only if it excludes 0. With
  `higher_is_better` given, the words say whether the difference is better or worse."""
  if math.isnan(lo) or math.isnan(hi):
    return "n/a (needs >= 2 seeds)"
  if lo <= 0.0 <= hi:
    return NO_DIFFERENCE
  higher = lo > 0.0
  words = "significantly higher" if higher else "significantly lower"
  if higher_is_better is None:
    return words
  return f"{words} ({'better' if higher == higher_is_better else 'worse'})"


def plain_verdict(arm: str, reference: str, values: Sequence[float],
                  reference_values: Sequence[float], confidence: float = 0.95,
                  metric: "Metric | None" = None) -> str:
  """One line a reader can act on: `arm` against `reference` (paired by seed), e.g.
  "spg_hpo vs dropout: no difference detectable (+0.12 pp, 95% CI [-0.30, +0.54], n=10);
  SPG is no better than dropout here". "better" / "worse" only when the interval excludes
  0 (the metric's direction; "higher" / "lower" when it has none)."""
  metric = metric or ACCURACY
  d, lo, hi = paired_difference_ci(values, reference_values, confidence)
  numbers = (f"{_signed_pct(d, percent=metric.percent)} {metric.diff_unit}, "
             f"{100 * confidence:g}% CI [{_signed_pct(lo, percent=metric.percent)}, "
             f"{_signed_pct(hi, percent=metric.percent)}], n={len(values)}")
  if math.isnan(lo) or math.isnan(hi):
    words = "not decidable (needs >= 2 seeds)"
  elif lo <= 0.0 <= hi:
    words = "no difference detectable"
  elif metric.higher_is_better is None:
    words = "higher" if lo > 0.0 else "lower"
  else:
    words = "better" if (lo > 0.0) == metric.higher_is_better else "worse"
  line = f"{arm} vs {reference}: {words} ({numbers})"
  if arm.startswith("spg") and reference.startswith("dropout") and words != "better":
    line += "; SPG is no better than dropout here"
  return line


def verdict_lines(scores: Mapping[str, Sequence[float]], references: Sequence[str],
                  confidence: float = 0.95, metric: "Metric | None" = None,
                  skip: Sequence[str] = ("base",)) -> str:
  """`plain_verdict` of every arm (but `skip` and the reference itself) against each of
  `references`, as a markdown list, grouped by reference."""
  lines = []
  for ref in references:
    if ref not in scores:
      raise ValueError(f"reference={ref!r}: not among the arms {list(scores)}")
    for arm, values in scores.items():
      if arm == ref or arm in skip:
        continue
      lines.append("- " + plain_verdict(arm, ref, values, scores[ref], confidence, metric))
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- tables
@dataclasses.dataclass(frozen=True)
class Metric:
  """How a score is shown: `name` (e.g. "accuracy", "mIoU", "wer"), as a percentage
  (`percent`: values in [0, 1] shown x100, differences in percentage points) or raw, and
  which direction is better (`higher_is_better`; None: the verdict says only higher/lower)."""
  name: str = "accuracy"
  percent: bool = True
  higher_is_better: bool | None = None

  @property
  def unit(self) -> str:
    return " %" if self.percent else ""

  @property
  def diff_unit(self) -> str:
    return "pp" if self.percent else "abs."


ACCURACY = Metric()


def format_score(value: float, metric: Metric = ACCURACY) -> str:
  """One score as the tables show it (x100 with 2 decimals for percent metrics)."""
  return _pct(value, percent=metric.percent)


def _pct(x: float, digits: int = 2, percent: bool = True) -> str:
  if math.isnan(x):
    return "n/a"
  return f"{100.0 * x:.{digits}f}" if percent else f"{x:.{digits + 2}f}"


def _signed_pct(x: float, digits: int = 2, percent: bool = True) -> str:
  if math.isnan(x):
    return "n/a"
  return f"{100.0 * x:+.{digits}f}" if percent else f"{x:+.{digits + 2}f}"


def results_table_markdown(scores: Mapping[str, Sequence[float]], reference: str,
                           confidence: float = 0.95, metric: Metric = ACCURACY) -> str:
  """Markdown table: per arm mean ± std of the test `metric`, n, and the paired
  difference against `reference` with its `confidence` t interval and a verdict.

  Args:
    scores: arm name -> `[n]` test scores (in [0, 1] for percent metrics), paired across
      arms by seed.
    reference: the arm every other arm is compared with (e.g. "control").
    confidence: coverage of the interval.
    metric: the score's name, unit and better direction.
  """
  if reference not in scores:
    raise ValueError(f"reference={reference!r}: not among the arms {list(scores)}")
  level = f"{100 * confidence:g}%"
  pct = metric.percent
  lines = [f"| arm | test {metric.name}{metric.unit} (mean ± std) | n | Δ vs {reference} "
           f"({metric.diff_unit}) | {level} CI ({metric.diff_unit}) | verdict |",
           "|---|---|---|---|---|---|"]
  for arm, values in scores.items():
    mean, std, n = summarize(values)
    if arm == reference:
      diff_cells = "— | — | (reference)"
    else:
      d, lo, hi = paired_difference_ci(values, scores[reference], confidence)
      diff_cells = (f"{_signed_pct(d, percent=pct)} | [{_signed_pct(lo, percent=pct)}, "
                    f"{_signed_pct(hi, percent=pct)}] | "
                    f"{verdict(lo, hi, metric.higher_is_better)}")
    lines.append(f"| {arm} | {_pct(mean, percent=pct)} ± {_pct(std, percent=pct)} | {n} | "
                 f"{diff_cells} |")
  return "\n".join(lines) + "\n"


def per_seed_table_markdown(seeds: Sequence[int], scores: Mapping[str, Sequence[float]],
                            digits: int = 2, metric: Metric = ACCURACY) -> str:
  """Markdown table of the raw test scores (% for percent metrics): one row per seed, one
  column per arm."""
  arms = list(scores)
  for arm in arms:
    if len(scores[arm]) != len(seeds):
      raise ValueError(f"arm {arm!r}: {len(scores[arm])} values for {len(seeds)} seeds")
  lines = ["| seed | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
  for i, seed in enumerate(seeds):
    cells = " | ".join(_pct(float(scores[arm][i]), digits, metric.percent) for arm in arms)
    lines.append(f"| {seed} | {cells} |")
  return "\n".join(lines) + "\n"


def summary_sentence(scores: Mapping[str, Sequence[float]], reference: str,
                     confidence: float = 0.95, metric: Metric = ACCURACY) -> str:
  """One honest sentence per non-reference arm: its difference, interval and verdict."""
  parts = []
  pct = metric.percent
  for arm, values in scores.items():
    if arm == reference:
      continue
    d, lo, hi = paired_difference_ci(values, scores[reference], confidence)
    what = "" if metric.name == "accuracy" else f"{metric.name} "
    parts.append(f"{arm} vs {reference}: {what}{_signed_pct(d, percent=pct)} "
                 f"{metric.diff_unit} ({100 * confidence:g}% CI "
                 f"[{_signed_pct(lo, percent=pct)}, {_signed_pct(hi, percent=pct)}], "
                 f"n={len(values)}): {verdict(lo, hi, metric.higher_is_better)}.")
  return "\n".join(f"- {p}" for p in parts) + "\n"


def environment(libraries: Sequence[str]) -> dict[str, str]:
  """Hardware, JAX devices, Python and the versions of `libraries` (pip names), as text."""
  import jax  # pylint: disable=g-import-not-at-top  (keeps this module importable without it)
  devices = jax.devices()
  versions = []
  for name in libraries:
    try:
      versions.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
      versions.append(f"{name} (not installed)")
  return {
      "hardware": f"{platform.machine()} {platform.processor() or ''}".strip()
                  + f", {os.cpu_count()} CPU cores",
      "devices": f"{len(devices)} x {devices[0].platform} ({devices[0].device_kind})",
      "python": platform.python_version(),
      "libraries": ", ".join(versions),
      # Other work on the machine slows timings down: record how busy it was.
      "load": (f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"),
  }


# ----------------------------------------------------------------------------- plots
def _mean_curve(curves: Sequence[Curve]) -> Curve | None:
  """Pointwise mean over seeds when every seed logged the same steps, else None."""
  if not curves:
    return None
  steps = [np.asarray(s, dtype=np.float64) for s, _ in curves]
  if any(s.shape != steps[0].shape or not np.array_equal(s, steps[0]) for s in steps):
    return None
  values = np.stack([np.asarray(v, dtype=np.float64) for _, v in curves])
  return steps[0], values.mean(axis=0)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
  """Mean of `values [n]` and the half-width of its t interval (NaN when n < 2)."""
  mean, std, n = summarize(values)
  if n < 2:
    return mean, math.nan
  return mean, t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)


def score_axis_limits(values: Sequence[float], percent: bool) -> tuple[float, float]:
  """Y limits for scores `values` (already x100 for percent metrics) that do not magnify
  small differences: percent axes start at a multiple of 5 at least 1 point below the
  lowest value and span at least 5 points (capped at 100); others pad by the range."""
  v = np.asarray(values, dtype=np.float64).reshape(-1)
  lo, hi = float(v.min()), float(v.max())
  if percent:
    bottom = max(0.0, 5.0 * math.floor((lo - 1.0) / 5.0))
    top = min(100.0, max(hi + 1.0, bottom + 5.0))
    return bottom, top
  span = max(hi - lo, 1e-3 * max(abs(hi), 1.0))
  return lo - span, hi + 0.5 * span


def plot_results(path: str, accuracies: Mapping[str, Sequence[float]],
                 val_curves: Mapping[str, Sequence[Curve]],
                 survival: Mapping[str, Sequence[Sequence[Curve]]], title: str = "",
                 metric: Metric = ACCURACY, confidence: float = 0.95) -> None:
  """Writes a three-panel figure to `path` (PNG).

  Args:
    path: output file.
    accuracies: arm -> `[n]` test scores of `metric` (left: per-seed points, the mean with
      its `confidence` t interval; the axis is not cut close to the points, see
      `score_axis_limits`).
    val_curves: arm -> per-seed `(steps [K], validation score [K])` (middle; thin lines
      per seed, thick the mean over seeds).
    survival: SPG arm -> per replica t -> per-seed `(steps [K], fraction of training
      samples still alive after replica t [K])` (right).
    title: figure title.
    metric: the score's name and unit.
    confidence: coverage of the intervals of the left panel.
  """
  # A bare Figure (no pyplot) renders with Agg without switching the process's backend,
  # so notebooks that call this keep their inline plots. Imported here: heavy.
  import matplotlib  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(17, 4.8))
  axes = fig.subplots(1, 3)
  colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
  arm_color = {arm: colors[i % len(colors)] for i, arm in enumerate(accuracies)}

  scale = 100.0 if metric.percent else 1.0
  ax = axes[0]
  for i, (arm, values) in enumerate(accuracies.items()):
    v = scale * np.asarray(values, dtype=np.float64)
    jitter = np.linspace(-0.2, 0.2, len(v)) if len(v) > 1 else np.zeros(1)
    ax.scatter(i + jitter, v, color=arm_color[arm], s=14, alpha=0.6, zorder=3)
    mean, half = mean_interval(v, confidence)
    ax.errorbar(i, mean, yerr=None if math.isnan(half) else half, fmt="_", ms=22, mew=2,
                color="black", capsize=6, elinewidth=1.5, zorder=4)
  ax.set_ylim(*score_axis_limits(
      scale * np.concatenate([np.asarray(v, np.float64) for v in accuracies.values()]),
      metric.percent))
  ax.set_xticks(range(len(accuracies)), list(accuracies), rotation=25, ha="right")
  ax.grid(axis="y", alpha=0.3)
  ax.set_ylabel(f"test {metric.name}{' (%)' if metric.percent else ''}")
  ax.set_title(f"test {metric.name} per arm (points: seeds; black: mean, "
               f"{100 * confidence:g}% t interval)", fontsize=9)

  ax = axes[1]
  for arm, curves in val_curves.items():
    color = arm_color.get(arm, None)
    for steps, values in curves:
      ax.plot(steps, scale * np.asarray(values), color=color, alpha=0.25, lw=0.8)
    mean = _mean_curve(curves)
    if mean is not None:
      ax.plot(mean[0], scale * mean[1], color=color, lw=2, label=arm)
  ax.set_xlabel("step")
  ax.set_ylabel(f"validation {metric.name}{' (%)' if metric.percent else ''}")
  ax.set_title("training curves (validation split; thick: mean over seeds)")
  ax.legend(fontsize=7)

  ax = axes[2]
  styles = ["-", "--", ":", "-."]
  for arm, per_replica in survival.items():
    for t, curves in enumerate(per_replica):
      mean = _mean_curve(curves)
      if mean is None and curves:
        mean = curves[0]
      if mean is not None:
        ax.plot(mean[0], 100.0 * np.asarray(mean[1]), color=arm_color.get(arm, None),
                ls=styles[t % len(styles)], label=f"{arm}: after replica {t + 1}")
  ax.set_xlabel("step")
  ax.set_ylabel("alive training samples (%)")
  ax.set_title("SPG survival after each replica")
  if survival:
    ax.legend(fontsize=7)

  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
