"""The fidelity benchmark's set-up without running it (fast): the arms are the control and
the 2 x 2 SPG-HPO variants, every protocol stage validates, and the contrasts are paired
differences of the right arms."""
import types

import numpy as np
import pytest

from experiments.benchmarks import fidelity
from spg_jax import protocol
from spg_jax import report


@pytest.mark.parametrize("name", sorted(fidelity.CONFIGS))
def test_arms_are_the_control_and_the_four_variants(name):
  args = fidelity.parse_args(["--quick", "--seeds=0,1", "--retrain_steps=8"])
  config = fidelity.dataset_config(name, args)
  arms = config.protocol.arms
  assert sorted(arms) == sorted(["control", *fidelity.VARIANTS])
  assert config.protocol.seeds == (0, 1) and config.protocol.retrain.num_steps == 8
  stages = protocol.arm_stage_configs(config, 0)
  for arm, (use_relu, normalize) in fidelity.VARIANTS.items():
    assert (stages[arm].spg.enabled, stages[arm].spg.use_relu, stages[arm].spg.normalize) \
        == (True, use_relu, normalize)
  assert not stages["control"].spg.enabled
  protocol.validate_protocol(config)


def test_contrasts_are_paired_differences():
  scores = {"control": [0.5, 0.5, 0.5], "hpo_relu_none": [0.90, 0.92, 0.91],
            "hpo_relu_loss": [0.89, 0.90, 0.91], "hpo_plain_none": [0.90, 0.92, 0.91],
            "hpo_plain_loss": [0.88, 0.90, 0.92]}
  result = types.SimpleNamespace(scores=scores, confidence=0.95, metric=report.ACCURACY)
  table = fidelity.contrast_table(result, {arm: 1.0 for arm in fidelity.VARIANTS})
  # relu none - loss: differences (0.01, 0.02, 0.00): mean +1.00 pp.
  mean, lo, hi = report.paired_difference_ci(scores["hpo_relu_none"], scores["hpo_relu_loss"])
  np.testing.assert_allclose(mean, 0.01, atol=1e-12)
  assert f"| +1.00 | [{100 * lo:+.2f}, {100 * hi:+.2f}] |" in table
  assert "| +0.00 | [+0.00, +0.00] |" in table  # plain - relu with normalisation off
