"""spg_jax.report: statistics checked against hand-computed numbers, tables, the plot."""
import math

import numpy as np
import pytest

from spg_jax import report


def test_summarize_hand_numbers():
  # mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5; var = 5 / 3.
  mean, std, n = report.summarize([1.0, 2.0, 3.0, 4.0])
  assert (mean, n) == (2.5, 4)
  assert std == pytest.approx(math.sqrt(5.0 / 3.0))


def test_summarize_single_value_has_no_spread():
  mean, std, n = report.summarize([0.9])
  assert (mean, n) == (0.9, 1) and math.isnan(std)


@pytest.mark.parametrize("p,df,expected", [
    (0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776), (0.975, 9, 2.262),
    (0.975, 30, 2.042), (0.95, 5, 2.015), (0.995, 10, 3.169)])
def test_exact_t_quantile_matches_printed_tables(p, df, expected):
  assert report.t_quantile_exact(p, df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_agrees_with_exact():
  for df in (1, 2, 3, 7, 12, 29):
    assert report.t_quantile(0.975, df) == pytest.approx(report.t_quantile_exact(0.975, df),
                                                         rel=1e-9)


def test_paired_difference_ci_hand_numbers():
  # differences a - b = [1, 2, 3, 4, 5]: mean 3, sd sqrt(2.5), n 5, t(0.975, 4) = 2.7764451.
  a = [11.0, 12.0, 13.0, 14.0, 15.0]
  b = [10.0, 10.0, 10.0, 10.0, 10.0]
  d, lo, hi = report.paired_difference_ci(a, b)
  half = 2.7764451052 * math.sqrt(2.5) / math.sqrt(5)
  assert d == pytest.approx(3.0)
  assert (lo, hi) == pytest.approx((3.0 - half, 3.0 + half), rel=1e-7)
  assert report.verdict(lo, hi) == "significantly higher"


def test_paired_difference_is_paired_not_pooled():
  # Large spread between seeds, identical offset within each seed: the paired interval is a
  # point (sd of differences 0), far from 0.
  base = np.array([0.5, 0.7, 0.9])
  d, lo, hi = report.paired_difference_ci(base + 0.01, base)
  assert d == pytest.approx(0.01) and lo == pytest.approx(0.01) and hi == pytest.approx(0.01)


def test_paired_difference_needs_equal_lengths_and_two_seeds():
  with pytest.raises(ValueError, match="same length"):
    report.paired_difference_ci([1.0, 2.0], [1.0])
  d, lo, hi = report.paired_difference_ci([1.0], [0.5])
  assert d == 0.5 and math.isnan(lo) and math.isnan(hi)
  assert report.verdict(lo, hi).startswith("n/a")


def test_table_says_no_significant_difference_when_ci_covers_zero():
  acc = {"base": [0.80, 0.81, 0.79], "control": [0.90, 0.91, 0.89],
         "spg_hpo": [0.91, 0.90, 0.89]}  # differences vs control: +1, -1, 0 pp
  table = report.results_table_markdown(acc, reference="control")
  rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
  assert set(rows) == {"base", "control", "spg_hpo"}
  assert report.NO_DIFFERENCE in rows["spg_hpo"]
  assert "significantly lower" in rows["base"]  # -10 pp every seed
  assert "(reference)" in rows["control"]
  assert "90.00 ± 1.00" in rows["control"] and "| 3 |" in rows["control"]
  assert "+0.00" in rows["spg_hpo"]
  assert report.NO_DIFFERENCE in report.summary_sentence(acc, "control")


def test_per_seed_table_has_raw_numbers():
  table = report.per_seed_table_markdown([0, 1], {"control": [0.9, 0.925], "spg": [0.5, 1.0]})
  assert table.splitlines()[2] == "| 0 | 90.00 | 50.00 |"
  assert table.splitlines()[3] == "| 1 | 92.50 | 100.00 |"


def test_plot_results_writes_png(tmp_path):
  path = tmp_path / "results.png"
  steps = [0, 10, 20]
  report.plot_results(
      str(path), {"base": [0.8, 0.82], "control": [0.85, 0.86], "spg_hpo": [0.86, 0.85]},
      val_curves={"control": [(steps, [0.8, 0.84, 0.85]), (steps, [0.8, 0.83, 0.86])]},
      survival={"spg_hpo": [[(steps, [0.7, 0.8, 0.9])], [(steps, [0.5, 0.6, 0.7])]]},
      title="test")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_environment_names_versions_and_missing_packages():
  env = report.environment(["numpy", "surely-not-installed-pkg"])
  assert set(env) == {"hardware", "devices", "python", "libraries", "load"}
  assert f"numpy {np.__version__}" in env["libraries"]
  assert "surely-not-installed-pkg (not installed)" in env["libraries"]
