import json
import shutil
from pathlib import Path

import pytest
import torch

from nbp.cli import main
from nbp.data import DatasetConfig, build_dataset
from nbp.errors import UserError
from nbp.files import sha256_file
from nbp.pixels import to_model
from nbp.token_cache import TokenCache
from tokenizer import TokenizerConfig, VideoTokenizer

SIZE, FRAMES = 32, 17


def tiny_tokenizer(path, seed=0):
    torch.manual_seed(seed)
    config = TokenizerConfig.from_preset("synthetic", base_channels=8, norm_groups=4)
    VideoTokenizer(config).save(path)
    return path


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.pt")


def tokenize(tokenizer, root, out, *extra):
    return main(["tokenize", "--tokenizer", str(tokenizer), "--data.kind", "ucf101", "--data.root", str(root),
                 "--data.size", str(SIZE), "--data.frames", str(FRAMES), "--out", str(out),
                 "--batch-size", "4", "--shard-size", "5", "--no-progress", *extra])


def test_tokenize_writes_the_ids_the_tokenizer_gives(synthetic_root, tokenizer_file, tmp_path, capsys):
    out = tmp_path / "cache"
    assert tokenize(tokenizer_file, synthetic_root, out) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    dataset = build_dataset(DatasetConfig(kind="ucf101", root=str(synthetic_root), size=SIZE, frames=FRAMES))
    assert summary["items"] == len(dataset) and summary["skipped"] == 0 and summary["grid"] == [5, 8, 8]

    cache = TokenCache(out, tokenizer_sha256=sha256_file(tokenizer_file), grid=(5, 8, 8))
    meta = cache.meta
    assert meta.dtype == "uint16" and meta.vocab_size == 1000 and meta.num_classes == 6
    assert meta.frames == FRAMES and meta.resolution == (SIZE, SIZE) and meta.dataset["root"] == str(synthetic_root)
    assert meta.num_shards == -(-len(dataset) // 5)

    # Independent check: encode a few clips here and compare with the cache.
    tok = VideoTokenizer.load(tokenizer_file).eval()
    for i in (0, 7, len(dataset) - 1):
        item = dataset[i]
        with torch.no_grad():
            expected = tok.encode(to_model(item["video"][None]))[0]
        assert torch.equal(cache[i]["tokens"], expected)
        assert cache[i]["label"] == item["label"] and meta.sources[i] == str(item["path"])


def test_rerun_resumes_only_missing_shards(synthetic_root, tokenizer_file, tmp_path):
    out = tmp_path / "cache"
    assert tokenize(tokenizer_file, synthetic_root, out) == 0
    first = TokenCache(out)
    reference = [first[i]["tokens"] for i in range(len(first))]
    # As if the run had been killed before shard 1 was finished.
    (out / "shard_00001.json").unlink()
    (out / "shard_00001.ids.npy").unlink()
    meta = json.loads((out / "meta.json").read_text())
    meta["complete"] = False
    (out / "meta.json").write_text(json.dumps(meta))
    untouched = {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*.ids.npy")}

    assert tokenize(tokenizer_file, synthetic_root, out) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*.ids.npy") if p.name in untouched} == untouched
    resumed = TokenCache(out)
    assert all(torch.equal(resumed[i]["tokens"], reference[i]) for i in range(len(resumed)))


def test_corrupt_video_is_skipped_and_listed(synthetic_root, tokenizer_file, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    config = DatasetConfig(kind="ucf101", root=str(root), size=SIZE, frames=FRAMES)
    victim = Path(build_dataset(config).videos[3][0])
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated file
    with pytest.warns(UserWarning, match="skipped video"):
        assert tokenize(tokenizer_file, root, tmp_path / "cache") == 0
    cache = TokenCache(tmp_path / "cache")
    assert cache.meta.num_skipped == 1 and len(cache) == len(build_dataset(config)) - 1
    assert victim.name in cache.meta.skipped[0]
    assert not any(victim.name in s for s in cache.meta.sources)


def test_other_tokenizer_into_the_same_cache_is_refused(synthetic_root, tokenizer_file, tmp_path, capsys):
    out = tmp_path / "cache"
    assert tokenize(tokenizer_file, synthetic_root, out, "--data.split", "test") == 0
    other = tiny_tokenizer(tmp_path / "other.pt", seed=1)
    assert tokenize(other, synthetic_root, out, "--data.split", "test") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tokenizer_sha256" in err[0] and "new --out" in err[0]
    with pytest.raises(UserError, match="different tokenizer"):
        TokenCache(out, tokenizer_sha256=sha256_file(other))


def test_missing_tokenizer_file_is_one_line_exit_2(synthetic_root, tmp_path, capsys):
    assert tokenize(tmp_path / "nope.pt", synthetic_root, tmp_path / "cache") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.pt" in err[0] and "no such file" in err[0]
    assert not (tmp_path / "cache").exists()
