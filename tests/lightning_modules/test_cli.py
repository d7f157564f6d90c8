"""`nbp train` start-up: the Lightning warnings we silence, and only those."""

import warnings

from lightning_modules.cli import quiet_known_warnings


def test_quiet_known_warnings_silences_only_the_known_ones():
    known = [
        "LightningCLI's args parameter is intended to run from within Python",
        "Using ModelCheckpoint with manual optimization and every_n_train_steps, the checkpoint ...",
        "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead.",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_warnings()
        for message in known:
            warnings.warn(message, UserWarning)
        warnings.warn("a warning a user should see", UserWarning)
    assert [str(w.message) for w in caught] == ["a warning a user should see"]
