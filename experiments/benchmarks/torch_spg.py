"""SPG-HPO in PyTorch, as the paper's code formulates it: a peer for timing spg_jax against.

An optional benchmark tool (never a test or runtime dependency): torch is imported only
when a model, step or parity check is built, and `require_torch()` says in one line what is
missing otherwise. Written from the method's description:

* replicas: `h'_t = Dropout(h_{t-1}; p)`, `h_t = h'_t + F_t(h'_t)`, `F_t` a width-preserving
  Linear whose weight and bias start at zero (`use_relu=True`: the authors' code follows it
  with a ReLU), chained after the pooled features `h_0`; every `h_t` goes through the
  model's own head (shared parameters), so one forward gives `[B, T+1, C]` logits;
* the masked loss: `mean_i CE_0^i + sum_t lambda_t sum_i m_t^i CE_t^i / (sum_i m_t^i +
  1e-6)` with the alive masks `m_0 = 1`, `m_{t+1} = m_t * [argmax_t == y]`, no gradient
  through the masks; no loss normalisation (spg_jax's default, what the authors' runs did).

Models: torchvision's ResNet-18 with the CIFAR stem (conv1 3x3 stride 1, no max-pool: the
shapes of spg_jax's `resnet18` with `stem="cifar"`) and the MNIST-1D CNN of
`spg_jax.models.small.CNN1D`. Inputs are NCHW / NCL (torch's layout).
"""
from __future__ import annotations

from typing import Any, Sequence

MASKED_EPS = 1e-6  # the masked form's denominator guard (spg_jax.losses.MASKED_EPS)


def require_torch() -> Any:
  """The `torch` module, or a one-line RuntimeError saying how to get it."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise RuntimeError("torch_spg needs PyTorch (an optional benchmark tool, not a "
                       "dependency of spg_jax): pip install torch torchvision") from None
  return torch


def resnet18_cifar(num_classes: int = 10) -> tuple[Any, Any]:
  """(features [B, 3, 32, 32] -> [B, 512], head Linear(512, num_classes)) of torchvision's
  ResNet-18 with the CIFAR stem."""
  torch = require_torch()
  import torchvision  # pylint: disable=import-outside-toplevel
  net = torchvision.models.resnet18(num_classes=num_classes)
  net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
  net.maxpool = torch.nn.Identity()
  head, net.fc = net.fc, torch.nn.Identity()
  return net, head


def cnn1d(num_classes: int = 10, channels: int = 25, length: int = 40) -> tuple[Any, Any]:
  """(features [B, 1, L] -> [B, channels * L/8], head) of the MNIST-1D CNN: three convs
  (kernel, stride, padding) = (5, 2, 1), (3, 2, 1), (3, 2, 1) with bias and ReLU, flatten."""
  nn = require_torch().nn
  layers, width = [], 1
  for kernel in (5, 3, 3):
    layers += [nn.Conv1d(width, channels, kernel, 2, 1), nn.ReLU()]
    width = channels
    length = (length + 2 - kernel) // 2 + 1
  return nn.Sequential(*layers, nn.Flatten()), nn.Linear(channels * length, num_classes)


def make_spg_net(features: Any, head: Any, width: int, num_replicas: int, rate: float = 0.2,
                 use_relu: bool = False) -> Any:
  """An `nn.Module`: `x -> logits [B, T+1, C]` in train mode (step 0 the base's), `[B, 1, C]`
  in eval mode; T = 0 is the plain model. `width`: the features' size (head input)."""
  nn = require_torch().nn
  torch = require_torch()

  class Replica(nn.Module):
    """Dropout, then `h + F(h)` with a zero-initialised Linear `F` (+ ReLU if use_relu)."""

    def __init__(self):
      super().__init__()
      self.dropout = nn.Dropout(rate)
      self.linear = nn.Linear(width, width)
      nn.init.zeros_(self.linear.weight)
      nn.init.zeros_(self.linear.bias)

    def forward(self, h):
      h = self.dropout(h)
      branch = self.linear(h)
      return h + (torch.relu(branch) if use_relu else branch)

  class SPGNet(nn.Module):
    """Base features + shared head + T chained replicas."""

    def __init__(self):
      super().__init__()
      self.features, self.head = features, head
      self.replicas = nn.ModuleList(Replica() for _ in range(num_replicas))

    def forward(self, x):
      h = self.features(x)
      steps = [self.head(h)]
      if self.training:
        for replica in self.replicas:
          h = replica(h)
          steps.append(self.head(h))
      return torch.stack(steps, dim=1)

  return SPGNet()


def masked_loss(step_logits: Any, labels: Any, lambdas: Sequence[float]) -> tuple[Any, Any, Any]:
  """The masked SPG loss of `step_logits [B, T+1, C]` and int labels `[B]`.

  Returns (total, base, replica losses `[T]`); with T = 0 the total is the plain mean CE.
  """
  torch = require_torch()
  num_steps = step_logits.shape[1]
  if len(lambdas) != num_steps - 1:
    raise ValueError(f"lambdas={tuple(lambdas)!r}: need {num_steps - 1} values (T)")
  ce = torch.nn.functional.cross_entropy(
      step_logits.transpose(1, 2), labels[:, None].expand(-1, num_steps), reduction="none")
  base = ce[:, 0].mean()
  if num_steps == 1:
    return base, base, ce.new_zeros((0,))
  with torch.no_grad():
    correct = (step_logits.argmax(-1) == labels[:, None]).float()
    masks = torch.cat([torch.ones_like(correct[:, :1]),
                       torch.cumprod(correct[:, :-1], dim=1)], dim=1)
  replica = (masks * ce).sum(0)[1:] / (masks.sum(0)[1:] + MASKED_EPS)
  lam = torch.as_tensor(list(lambdas), dtype=replica.dtype)
  return base + (lam * replica).sum(), base, replica


def loss_parity(batch: int = 64, num_replicas: int = 3, num_classes: int = 10,
                seed: int = 0) -> float:
  """Largest absolute difference between this module's masked loss (total, base and each
  replica's) and `spg_jax.losses.spg_loss` on the same random logits `[B, T+1, C]` (scaled
  so that some episodes survive and some end at every step)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from spg_jax import losses  # pylint: disable=import-outside-toplevel
  torch = require_torch()
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, batch)
  logits = rng.standard_normal((batch, num_replicas + 1, num_classes)).astype(np.float32)
  # Make the label likely (not certain) to win, so the masks take both values.
  logits[np.arange(batch), :, labels] += 2.0 * rng.random((batch, num_replicas + 1))
  lambdas = tuple(0.4 * 0.5 ** t for t in range(num_replicas))
  total, base, replica = masked_loss(torch.from_numpy(logits), torch.from_numpy(labels),
                                     lambdas)
  ref_total, metrics = losses.spg_loss(
      losses.classification_terms(logits, labels.astype(np.int32)), lambdas, "masked")
  ours = np.concatenate([[total.item(), base.item()], replica.numpy()])
  ref = np.concatenate([[float(ref_total), float(metrics["loss_base"])],
                        np.asarray(metrics["loss_replicas"])])
  return float(np.max(np.abs(ours - ref)))
