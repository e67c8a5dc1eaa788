"""A workdir remembers the config that made it: `<workdir>/config.json`.

The first run in a workdir stores its full config there. A later run in the same workdir
(which resumes the checkpoint there) must have the same config: otherwise it is refused
with one line listing the differing fields, since resuming silently with another learning
rate or dropout rate mixes two experiments into one result. `allow_change=True` (the
command line's `--allow_config_change`) continues with the new config, stores it and
appends the change to `<workdir>/config_changes.json`, so the record says what happened.

Fields that do not change the experiment (`IGNORED_FIELDS`, e.g. the progress bar) are not
compared.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any, Iterator, Mapping

CONFIG_FILE = "config.json"
CHANGES_FILE = "config_changes.json"
IGNORED_FIELDS = frozenset({"progress_bar"})
_SHOWN_DIFFERENCES = 6


def config_as_json(config: Any) -> dict:
  """`config` (an ml_collections ConfigDict or a mapping) as plain JSON values (tuples
  become lists), so a stored and a given config compare equal when they are equal."""
  text = (config.to_json_best_effort(sort_keys=True) if hasattr(config, "to_json_best_effort")
          else json.dumps(config, sort_keys=True, default=str))
  return json.loads(text)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, Mapping) and tree:
    out: dict[str, Any] = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def differences(stored: Mapping[str, Any], given: Mapping[str, Any],
                defaults: Mapping[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
  """`field -> (stored value, given value)` of every leaf field that differs (a field
  missing on one side has the value `"<absent>"` there), `IGNORED_FIELDS` left out.

  `defaults` (a config as JSON, e.g. the library's `base_config()`): a field the stored
  config lacks but whose given value is its default there is no difference: a field a later
  version of the library added, which leaves the experiment as it was."""
  a, b = _flatten(stored), _flatten(given)
  d = _flatten(defaults) if defaults else {}
  absent = "<absent>"
  added_at_default = {k for k in set(b) - set(a) if k in d and d[k] == b[k]}
  return {k: (a.get(k, absent), b.get(k, absent)) for k in sorted((set(a) | set(b))
                                                                  - added_at_default)
          if k.split(".", 1)[0] not in IGNORED_FIELDS and a.get(k, absent) != b.get(k, absent)}


def _write_json(path: str, value: Any) -> None:
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)  # whole or not at all


def check_and_record(config: Any, workdir: str, *, allow_change: bool = False) -> dict:
  """Stores `config` in `workdir/config.json` on the first run; on a later run, compares.

  Call it after the config is validated and before anything else is written, so a bad
  config leaves the workdir untouched.

  Returns:
    The differences found (`{}` on a first run or an unchanged config).
  Raises:
    ValueError (one line) if the stored config differs and not `allow_change`, or if the
    stored file is not readable JSON.
  """
  given = config_as_json(config)
  path = os.path.join(workdir, CONFIG_FILE)
  from spg_jax.train import loop  # pylint: disable=g-import-not-at-top  (no import cycle)
  loop._check_workdir(workdir)  # pylint: disable=protected-access  (the trainer's message)
  if not os.path.exists(path):
    os.makedirs(workdir, exist_ok=True)
    _write_json(path, given)
    return {}
  try:
    with open(path) as f:
      stored = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"workdir={workdir}: its {CONFIG_FILE} is not readable JSON ({e}); "
                     f"move it aside to start afresh") from None
  from spg_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  diff = differences(stored, given, config_as_json(config_lib.base_config()))
  if not diff:
    return {}
  if not allow_change:
    shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(diff.items())
                      [:_SHOWN_DIFFERENCES])
    more = (f" and {len(diff) - _SHOWN_DIFFERENCES} more" if len(diff) > _SHOWN_DIFFERENCES
            else "")
    count = f"{len(diff)} fields differ" if len(diff) > 1 else "1 field differs"
    raise ValueError(
        f"workdir={workdir}: holds a run of another config ({count}: "
        f"{shown}{more}); use another workdir, or --allow_config_change to continue this "
        f"run with the new config (recorded in {CHANGES_FILE})")
  changes_path = os.path.join(workdir, CHANGES_FILE)
  changes = []
  if os.path.exists(changes_path):
    with open(changes_path) as f:
      changes = json.load(f)
  changes.append({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "changed": {k: {"from": a, "to": b} for k, (a, b) in diff.items()}})
  _write_json(changes_path, changes)
  _write_json(path, given)
  return diff


@contextlib.contextmanager
def recorded(config: Any, workdir: str, *, allow_change: bool = False) -> Iterator[dict]:
  """`check_and_record`, undone on a fresh workdir if the run inside raises ValueError
  (bad input found at start-up: data not prepared, a batch larger than the split), so
  such a run leaves no workdir behind. Yields the differences."""
  path = os.path.join(workdir, CONFIG_FILE)
  fresh_dir, fresh_file = not os.path.exists(workdir), not os.path.exists(path)
  diff = check_and_record(config, workdir, allow_change=allow_change)
  try:
    yield diff
  except ValueError:
    if fresh_file and os.path.exists(path):
      os.remove(path)
      if fresh_dir and not os.listdir(workdir):
        os.rmdir(workdir)
    raise
