"""A user's mistakes end in one line and exit 2 (Ctrl-C: exit 130), run as real `nbp` processes.

The cases live in one table, `tests/user_error_cases.py` (run it as a module for all of them);
this file runs one or two of every class: bad values, config files, broken or mismatched files,
devices, outputs, late checks, answers that used to be wrong with exit 0, and Ctrl-C.
"""

import pytest

from tests.user_error_cases import CASES, make_fixtures, run_case

SUBSET = [
    "cli/unknown command",
    "data synthetic/fps 0",
    "data synthetic/config typo key",
    "data synthetic/config bad yaml",
    "data synthetic/out under a file",
    "tokenize/tokenizer empty",
    "tokenize/num-workers -1",
    "tokenize/device gpu7",
    "tokenize/out is a file",
    "sample/model text .ckpt",
    "sample/class-index malformed",
    "sample/classes and class-names",
    "sample/temporal compression mismatch",
    "sample/fps 0",
    "sample/context not a video",
    "sample/device cuda",
    "sample/frames 18",
    "sample/frames beyond a whole-clip model",
    "bench/rolling frames",
    "eval fvd/out is a folder",
    "eval ucf101/no detector",
    "eval ucf101/cache meta corrupt",
    "eval recon/fvd_protocol bogus",
    "train/batch_size 0",
    "train/lr nan",
    "train/model option typo",
    "train/train_cache shard corrupt",
    "train/default_root_dir unwritable",
    "train/config empty",
    "train/window longer than the clips",
    "demo/device tpu",
    "interrupt/tokenize with workers",
]
BY_NAME = {case.name: case for case in CASES}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return make_fixtures(tmp_path_factory.mktemp("user_errors"))


def test_subset_names_exist():
    assert set(SUBSET) <= set(BY_NAME)
    assert len(CASES) >= 150 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBSET)
def test_user_mistake_is_one_line(fixtures, name):
    result = run_case(BY_NAME[name], fixtures)
    assert result.problems(fixtures) == [], result.stderr


@pytest.mark.slow
def test_debug_shows_the_traceback(fixtures, monkeypatch):
    monkeypatch.setenv("NBP_DEBUG", "1")
    result = run_case(BY_NAME["sample/fps 0"], fixtures, env={"NBP_DEBUG": "1"})
    assert result.code == 2
    assert "Traceback" in result.stderr and result.error_lines[-1].startswith("nbp: error: --fps 0")


def test_bug_keeps_its_traceback(capsys, monkeypatch):
    from nbp import cli

    def broken(argv, prog):
        raise ZeroDivisionError("an internal mistake")

    monkeypatch.setitem(cli.COMMANDS, "broken", "tests.test_user_errors")
    monkeypatch.setattr("tests.test_user_errors.main", broken, raising=False)
    assert cli.main(["broken"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "bug" in err.splitlines()[-1]


def test_output_checks_create_nothing(tmp_path):
    from nbp.errors import UserError
    from nbp.files import check_output_file, check_output_folder

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_output_folder(a_file)
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_folder(a_file / "sub" / "deeper")
    with pytest.raises(UserError, match="is a folder"):
        check_output_file(tmp_path, "--out")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert check_output_file(tmp_path / "new" / "r.json").name == "r.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # the probes left nothing behind


@pytest.mark.parametrize("name", ["gpu7", "tpu", "cuda:x", "meta", ""])
def test_device_names_outside_the_list_are_refused(name):
    from nbp.devices import pick_device
    from nbp.errors import UserError

    with pytest.raises(UserError, match="valid: auto, cpu, cuda, cuda:N"):
        pick_device(name)


def test_parse_errors_fold_into_one_line():
    import argparse

    from nbp.errors import user_message

    nested = ValueError("Does not validate against any of the Union subtypes\nSubtypes: [A, NoneType]\nErrors:\n"
                        "  - Problem with given class_path 'lightning_modules.nbp_module.NBPModule':\n"
                        "      Parser key \"lr\":\n        Expected a <class 'float'>. Got value: nan\n"
                        "  - Expected a <class 'NoneType'>\nGiven value type: <class 'Namespace'>")
    message = user_message(argparse.ArgumentError(None, str(nested)))
    assert message == "NBPModule: --lr: got 'nan', expected a finite number"
    assert user_message(ZeroDivisionError()) is None  # a bug, not a mistake
    full = OSError(28, "No space left on device", "/data/out/shard_00003.ids.npy")
    assert "no space left" in user_message(full) and "shard_00003" in user_message(full)


def test_split_list_keeps_file_names_with_spaces(tmp_path):
    from nbp.data.datasets import parse_ucf_split

    split = tmp_path / "trainlist01.txt"
    split.write_text("OneSquare/v_OneSquare_g01_c01.avi 1\nOneSquare/my clip (copy).avi 1\nTwoSquares/last one.mp4\n")
    assert parse_ucf_split(split, ["OneSquare", "TwoSquares"]) == [
        ("OneSquare/v_OneSquare_g01_c01.avi", 0), ("OneSquare/my clip (copy).avi", 0), ("TwoSquares/last one.mp4", 1)]


def test_model_file_records_the_tokenizer_compression(tmp_path):
    import torch

    from nbp.config import NBPConfig
    from nbp.errors import UserError
    from nbp.model import NBPTransformer
    from nbp.model_file import load_model_file, save_model_file
    from nbp.sampling import check_compatible
    from tokenizer import TokenizerConfig, VideoTokenizer

    tiny = dict(base_channels=8, norm_groups=4, num_res_blocks=1)
    torch.manual_seed(0)
    four, two = (VideoTokenizer(TokenizerConfig.from_preset("synthetic", temporal_downsample=t, **tiny)) for t in (4, 2))
    config = NBPConfig(vocab_size=four.vocab_size, grid=(5, 8, 8), block=(1, 1, 8), n_layer=1, n_head=2, n_embd=32)
    path = save_model_file(NBPTransformer(config), config, tmp_path / "m.pt",
                           tokenizer={"temporal_downsample": 4, "spatial_downsample": 4, "unrelated": 1})
    model = load_model_file(path)
    assert model.tokenizer_record == {"temporal_downsample": 4, "spatial_downsample": 4}
    check_compatible(model, four)
    with pytest.raises(UserError, match="temporal_downsample 2 .*: 4"):
        check_compatible(model, two)
