"""`nbp eval ucf101|k600` write their reports and sample caches under runs/eval/, never into the folder they run in."""

from pathlib import Path

import pytest

from nbp.commands import eval_k600, eval_ucf101


@pytest.mark.parametrize("module, name", [(eval_ucf101, "ucf101"), (eval_k600, "k600")])
def test_outputs_default_under_runs_eval(module, name):
    defaults = module.build_parser("nbp eval").get_defaults()
    assert Path(defaults.out) == Path("runs/eval") / f"{name}.json"
    assert defaults.cache is None  # then <out>_samples: runs/eval/<name>_samples
