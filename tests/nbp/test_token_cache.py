import json

import numpy as np
import pytest
import torch

from nbp.errors import UserError
from nbp.token_cache import CacheMeta, TokenCache, TokenCacheWriter, read_meta, storage_dtype

GRID = (2, 3, 4)


def make_meta(num_items=7, shard_size=3, vocab_size=1000, sha="a" * 64, **kw):
    return CacheMeta(tokenizer_sha256=sha, tokenizer_config={"preset": "test"}, vocab_size=vocab_size,
                     grid=GRID, frames=5, fps=8, resolution=(16, 16), dataset={"kind": "synthetic"},
                     shard_size=shard_size, num_source_items=num_items, **kw)


def random_items(n, vocab_size, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab_size, size=(n, *GRID))
    labels = rng.integers(0, 5, size=n)
    return ids, labels, [f"video_{i}.mp4" for i in range(n)]


def write_all(writer, ids, labels, sources, only=None):
    for k in writer.pending_shards() if only is None else only:
        rows = writer.shard_range(k)
        writer.write_shard(k, ids[rows.start:rows.stop], labels[rows.start:rows.stop],
                           sources[rows.start:rows.stop])


def test_storage_dtype_uint16_when_vocab_fits_else_int32():
    assert storage_dtype(64_000) == np.uint16
    assert storage_dtype(65_536) == np.uint16
    assert storage_dtype(65_537) == np.int32


@pytest.mark.parametrize("vocab_size", [1000, 70_000])
def test_round_trip_returns_the_written_ids_and_labels(tmp_path, vocab_size):
    ids, labels, sources = random_items(7, vocab_size)
    writer = TokenCacheWriter(tmp_path, make_meta(vocab_size=vocab_size))
    assert writer.pending_shards() == [0, 1, 2]
    write_all(writer, ids, labels, sources)
    meta = writer.finalize()
    assert meta.complete and meta.num_items == 7 and meta.sources == sources
    stored = np.load(tmp_path / "shard_00000.ids.npy", mmap_mode="r")
    assert stored.dtype == storage_dtype(vocab_size)

    cache = TokenCache(tmp_path, tokenizer_sha256="a" * 64, grid=GRID, vocab_size=vocab_size)
    assert len(cache) == 7 and cache.grid == GRID
    for i in range(7):
        item = cache[i]
        assert item["tokens"].dtype == torch.int64
        assert torch.equal(item["tokens"], torch.from_numpy(ids[i]))
        assert item["label"] == labels[i]
    assert torch.equal(cache[-1]["tokens"], torch.from_numpy(ids[-1]))
    with pytest.raises(IndexError):
        cache[7]


def test_resume_skips_finished_shards_and_drops_partial_temp_file(tmp_path):
    ids, labels, sources = random_items(7, 1000)
    first = TokenCacheWriter(tmp_path, make_meta())
    write_all(first, ids, labels, sources, only=[0])
    # A run killed while writing shard 1 leaves only its temporary file behind.
    partial = tmp_path / ".shard_00001.ids.npy.x1y2.tmp"
    partial.write_bytes(b"\x93NUMPY half a header")
    with pytest.raises(UserError, match="unfinished"):
        TokenCache(tmp_path)

    before = (tmp_path / "shard_00000.ids.npy").stat().st_mtime_ns
    second = TokenCacheWriter(tmp_path, make_meta())
    assert not partial.exists()
    assert second.pending_shards() == [1, 2]
    write_all(second, ids, labels, sources)
    second.finalize()
    assert (tmp_path / "shard_00000.ids.npy").stat().st_mtime_ns == before  # not rewritten
    cache = TokenCache(tmp_path)
    assert [cache[i]["label"] for i in range(7)] == list(labels)
    assert all(torch.equal(cache[i]["tokens"], torch.from_numpy(ids[i])) for i in range(7))


def test_ids_file_without_marker_is_not_a_finished_shard(tmp_path):
    ids, labels, sources = random_items(7, 1000)
    writer = TokenCacheWriter(tmp_path, make_meta())
    write_all(writer, ids, labels, sources, only=[0, 1])
    (tmp_path / "shard_00001.json").unlink()  # killed between the ids file and its marker
    assert TokenCacheWriter(tmp_path, make_meta()).pending_shards() == [1, 2]


def test_resuming_with_different_settings_is_refused(tmp_path):
    TokenCacheWriter(tmp_path, make_meta())
    with pytest.raises(UserError, match="tokenizer_sha256"):
        TokenCacheWriter(tmp_path, make_meta(sha="b" * 64))
    with pytest.raises(UserError, match="shard_size"):
        TokenCacheWriter(tmp_path, make_meta(shard_size=4))


def test_reader_rejects_other_tokenizer_grid_or_vocab(tmp_path):
    ids, labels, sources = random_items(7, 1000)
    writer = TokenCacheWriter(tmp_path, make_meta())
    write_all(writer, ids, labels, sources)
    writer.finalize()
    with pytest.raises(UserError, match="different tokenizer"):
        TokenCache(tmp_path, tokenizer_sha256="c" * 64)
    with pytest.raises(UserError, match=r"latent grid \[2, 3, 4\].*\[5, 8, 8\]"):
        TokenCache(tmp_path, grid=(5, 8, 8))
    with pytest.raises(UserError, match="vocab_size 1000"):
        TokenCache(tmp_path, vocab_size=512)


def test_missing_or_corrupt_meta_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a token cache"):
        TokenCache(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(UserError, match="not a valid token cache"):
        read_meta(tmp_path)


def test_write_shard_rejects_out_of_vocab_ids(tmp_path):
    writer = TokenCacheWriter(tmp_path, make_meta(vocab_size=10))
    ids = np.full((3, *GRID), 10)
    with pytest.raises(ValueError, match="outside"):
        writer.write_shard(0, ids, [0, 0, 0], ["a", "b", "c"])
    assert not (tmp_path / "shard_00000.ids.npy").exists()


def test_meta_json_records_provenance(tmp_path):
    ids, labels, sources = random_items(7, 1000)
    writer = TokenCacheWriter(tmp_path, make_meta())
    write_all(writer, ids, labels, sources)
    writer.finalize()
    meta = json.loads((tmp_path / "meta.json").read_text())
    for key in ("tokenizer_sha256", "tokenizer_config", "grid", "frames", "fps", "resolution", "sources"):
        assert key in meta
    assert meta["dtype"] == "uint16" and meta["num_classes"] == int(labels.max()) + 1
