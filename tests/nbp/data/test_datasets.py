"""Datasets on real files: UCF-101 split files, Kinetics layouts, folders, bad files, workers, errors."""

import pickle
import shutil
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nbp.data import DatasetConfig, build_dataset
from nbp.data.datasets import (
    Kinetics600Dataset,
    SkippedVideoWarning,
    UCF101Dataset,
    VideoFolderDataset,
    parse_ucf_split,
)
from nbp.data.synthetic import CLASS_NAMES, SyntheticVideoDataset
from nbp.errors import UserError
from nbp.video_io import write_mp4

SMALL = dict(frames=17, fps=8, size=32)


def test_ucf101_reads_the_synthetic_files_back(synthetic_root):
    for split, per_class in (("train", 3), ("test", 1)):
        ds = build_dataset(DatasetConfig(kind="ucf101", root=str(synthetic_root), split=split, **SMALL))
        assert isinstance(ds, UCF101Dataset) and len(ds) == 6 * per_class
        assert ds.class_names == list(CLASS_NAMES)
        reference = SyntheticVideoDataset(4, frames=17, size=32, seed=0, split=split)
        for i in (0, len(ds) - 1):
            item, expected = ds[i], reference[i]
            assert item["video"].dtype == torch.uint8 and item["video"].shape == (3, 17, 32, 32)
            assert item["label"] == expected["label"] and item["path"].endswith(expected["path"])
            assert (item["video"].int() - expected["video"].int()).abs().max() <= 1
        assert ds.skipped == 0


def test_ucf_split_parsing_ignores_case_and_blank_lines(tmp_path):
    split = tmp_path / "trainlist01.txt"
    split.write_text("HandstandPushups/v_HandStandPushups_g08_c01.avi 2\n\nApplyEyeMakeup/v_x.avi 1\n")
    assert parse_ucf_split(split, ["ApplyEyeMakeup", "HandStandPushups"]) == [
        ("HandstandPushups/v_HandStandPushups_g08_c01.avi", 1),
        ("ApplyEyeMakeup/v_x.avi", 0),
    ]
    split.write_text("NoSuchClass/v_y.avi 1\n")
    with pytest.raises(UserError, match="trainlist01.txt:1"):
        parse_ucf_split(split, ["ApplyEyeMakeup"])


def test_ucf_official_zip_layout_and_case_mismatch(tmp_path, synthetic_root):
    """Split files in ucfTrainTestlist/, videos in UCF-101/, list entries in another case than the folders."""
    shutil.copytree(synthetic_root, tmp_path / "UCF-101", ignore=shutil.ignore_patterns("*.txt"))
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    shutil.copy(synthetic_root / "classInd.txt", lists)
    lines = (synthetic_root / "testlist01.txt").read_text().splitlines()
    (lists / "testlist01.txt").write_text("\n".join(line.lower() for line in lines) + "\n")
    ds = UCF101Dataset(tmp_path, split="test", **SMALL)
    assert len(ds) == 6 and [ds[i]["label"] for i in range(6)] == list(range(6))


def _small_folder(root, synthetic_root, classes=(0, 1), per_class=2):
    """root/<Class>/<file>.mp4 copied from the synthetic dataset."""
    for c in classes:
        name = CLASS_NAMES[c]
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shutil.copy(synthetic_root / name / f"v_{name}_train{i:03d}.mp4", root / name)
    return root


def _add_bad_files(folder, synthetic_root):
    """A garbage file, a truncated file and a too-short (5-frame) video; returns their paths."""
    garbage = folder / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    truncated = folder / "truncated.mp4"
    good = (synthetic_root / "OneSquare" / "v_OneSquare_train000.mp4").read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    short = write_mp4(folder / "short.mp4", torch.zeros(3, 5, 32, 32, dtype=torch.uint8), fps=8)
    return {str(garbage), str(truncated), str(short)}


@pytest.mark.parametrize("cache", [False, True])
def test_bad_files_are_skipped_counted_and_reported_once(tmp_path, synthetic_root, cache):
    root = _small_folder(tmp_path / "videos", synthetic_root)
    bad = _add_bad_files(root / CLASS_NAMES[1], synthetic_root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = VideoFolderDataset(root, **SMALL, cache=cache)
        for _ in range(2):  # two epochs: each bad file is reported only the first time
            items = [ds[i] for i in range(len(ds))]
    assert len(ds) == 7 and ds.skipped == 3 and ds.skipped_paths == bad
    reported = [str(w.message) for w in caught if issubclass(w.category, SkippedVideoWarning)]
    assert len(reported) == 3 and all(any(p in msg for msg in reported) for p in bad)
    assert all(item["path"] not in bad and item["video"].shape == (3, 17, 32, 32) for item in items)
    assert ds.class_names == sorted([CLASS_NAMES[0], CLASS_NAMES[1]])


@pytest.mark.parametrize("settings", [dict(frames=17, fps=8, size=32, clip="center"),
                                      dict(frames=5, fps=4, size=16, clip="random"),
                                      dict(frames=9, fps=None, size=24, clip="start", resize="squash")])
def test_cached_dataset_gives_the_clips_of_the_uncached_one(synthetic_root, settings):
    """Cutting clips from the cached, resized frames equals decoding each clip from the file."""
    plain = UCF101Dataset(synthetic_root, split="train", **settings)
    cached = build_dataset(DatasetConfig(kind="ucf101", root=str(synthetic_root), split="train", cache=True,
                                         **settings))
    for epoch in range(2):  # the second epoch is served from the cache
        for index in range(0, len(plain), 4):
            torch.manual_seed(epoch * 100 + index)
            want = plain[index]
            torch.manual_seed(epoch * 100 + index)
            got = cached[index]
            assert torch.equal(got["video"], want["video"]) and got["label"] == want["label"]
    assert len(cached.cache) == len(range(0, len(plain), 4))


def test_dataloader_with_two_workers_runs_a_whole_epoch(synthetic_root, tmp_path):
    root = tmp_path / "ucf"
    shutil.copytree(synthetic_root, root)
    bad = root / "TwoCircles" / "v_TwoCircles_train001.mp4"
    bad.write_bytes(b"not a video at all")
    ds = UCF101Dataset(root, split="train", frames=17, fps=8, size=32, clip="random")
    ds = pickle.loads(pickle.dumps(ds))  # what spawn-started workers do
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=True, persistent_workers=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedVideoWarning)
        batches = list(loader)
    assert sum(len(b["path"]) for b in batches) == len(ds) == 18
    videos = torch.cat([b["video"] for b in batches])
    assert videos.shape == (18, 3, 17, 32, 32) and videos.dtype == torch.uint8
    assert str(bad) not in {p for b in batches for p in b["path"]}
    # The substitute for the bad file is the next one in the list, of the same class here.
    labels = sorted(torch.cat([b["label"] for b in batches]).tolist())
    assert labels == sorted(label for _, label in ds.videos)


def test_kinetics_folder_layout(tmp_path, synthetic_root):
    _small_folder(tmp_path / "k600" / "train", synthetic_root, classes=(2, 0))
    ds = build_dataset(DatasetConfig(kind="k600", root=str(tmp_path / "k600"), split="train", **SMALL))
    assert isinstance(ds, Kinetics600Dataset) and len(ds) == 4
    assert ds.class_names == sorted([CLASS_NAMES[0], CLASS_NAMES[2]])
    assert [ds[i]["label"] for i in range(4)] == [0, 0, 1, 1]
    with pytest.raises(UserError, match="split folder not found"):
        Kinetics600Dataset(tmp_path / "k600", split="val")


def test_kinetics_csv(tmp_path, synthetic_root):
    split_dir = tmp_path / "k600" / "val"
    split_dir.mkdir(parents=True)
    source = synthetic_root / "OneSquare" / "v_OneSquare_train000.mp4"
    shutil.copy(source, split_dir / "abc_000010_000020.mp4")
    shutil.copy(source, split_dir / "xyz_000003_000013.mp4")
    csv_path = tmp_path / "validate.csv"
    csv_path.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "riding a bike,abc,10,20,validate\n"
        "abseiling,xyz,3,13,validate\n"
        "abseiling,gone,0,10,validate\n"
    )
    with pytest.warns(SkippedVideoWarning, match="1 of 3 videos"):
        ds = Kinetics600Dataset(tmp_path / "k600", split="val", csv=str(csv_path), **SMALL)
    assert ds.class_names == ["abseiling", "riding a bike"]
    assert ds[0]["path"].endswith("abc_000010_000020.mp4") and ds[0]["label"] == 1
    assert ds[1]["path"].endswith("xyz_000003_000013.mp4") and ds[1]["label"] == 0
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("id,label\n")
    with pytest.raises(UserError, match="youtube_id"):
        Kinetics600Dataset(tmp_path / "k600", split="val", csv=str(bad_csv))


def test_folder_without_class_folders_has_no_labels(tmp_path, synthetic_root):
    for i, name in enumerate(("a.mp4", "b.mp4")):
        shutil.copy(synthetic_root / "OneCircle" / f"v_OneCircle_train{i:03d}.mp4", tmp_path / name)
    ds = VideoFolderDataset(tmp_path, **SMALL)
    assert len(ds) == 2 and {ds[i]["label"] for i in range(2)} == {-1}


def test_clear_errors_at_construction(tmp_path):
    with pytest.raises(UserError, match="UCF-101 root not found"):
        UCF101Dataset(tmp_path / "missing")
    with pytest.raises(UserError, match=r"trainlist01.txt not found; searched .*ucfTrainTestlist"):
        UCF101Dataset(tmp_path)
    with pytest.raises(UserError, match="no videos found; searched"):
        VideoFolderDataset(tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.warns(SkippedVideoWarning), pytest.raises(UserError, match="none of the 1 videos"):
        VideoFolderDataset(tmp_path)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(kind="imagenet"), "kind"),
        (dict(kind="ucf101"), "root"),
        (dict(kind="ucf101", root="x", split="val"), "split"),
        (dict(kind="synthetic", fold=4), "fold"),
        (dict(kind="folder", root="x", clip="middle"), "clip"),
        (dict(kind="folder", root="x", resize="stretch"), "resize"),
        (dict(kind="folder", root="x", fps=0), "fps"),
        (dict(kind="folder", root="x", csv="a.csv"), "csv"),
        (dict(kind="synthetic", videos_per_class=1), "videos_per_class"),
    ],
)
def test_dataset_config_validates(kwargs, field):
    with pytest.raises(UserError, match=f"DatasetConfig.{field}"):
        DatasetConfig(**kwargs)


def test_synthetic_config_builds_the_on_the_fly_dataset():
    ds = build_dataset(DatasetConfig(kind="synthetic", videos_per_class=5, frames=9, size=32, split="test", seed=3))
    assert isinstance(ds, SyntheticVideoDataset) and len(ds) == 6
    assert ds[0]["video"].shape == (3, 9, 32, 32)


def test_synthetic_config_with_root_reads_the_written_files(synthetic_root):
    ds = build_dataset(DatasetConfig(kind="synthetic", root=str(synthetic_root), split="test", **SMALL))
    assert isinstance(ds, UCF101Dataset) and len(ds) == 6


class _RecordingFolder(VideoFolderDataset):
    """Returns, with each item, the skip warnings raised while reading it (inside the worker)."""

    def __getitem__(self, index):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            item = super().__getitem__(index)
        item["warnings"] = [str(w.message) for w in caught if issubclass(w.category, SkippedVideoWarning)]
        return item


def _keep_items(items):
    return items


def test_workers_count_and_name_themselves_in_skip_warnings(tmp_path, synthetic_root):
    root = _small_folder(tmp_path / "videos", synthetic_root, classes=(0,), per_class=3)
    for name in ("z1.mp4", "z2.mp4"):  # sorted last, so construction (first file good) does not meet them
        (root / CLASS_NAMES[0] / name).write_bytes(b"garbage")
    ds = _RecordingFolder(root, **SMALL)
    assert ds.skipped == 0
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=_keep_items)
    items = [item for batch in loader for item in batch]
    messages = [m for item in items for m in item["warnings"]]
    assert len(items) == 5 and all(not item["path"].endswith(("z1.mp4", "z2.mp4")) for item in items)
    # Each worker reports each bad file it meets once, naming itself and its running count.
    assert 2 <= len(messages) <= 4
    assert all(m.startswith("skipped video (worker ") and " skipped so far)" in m for m in messages)
    assert {m.split(":")[0] for m in messages} <= {"skipped video (worker 0", "skipped video (worker 1"}
    assert ds.skipped == 0  # the main process's copy read nothing
