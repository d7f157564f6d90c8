"""Two real processes (gloo) each see half the features; the synced score equals one process's."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nbp.metrics.fvd import FrechetVideoDistance

pytestmark = pytest.mark.slow  # spawns processes

DIM = 12


def _features():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(64, DIM, generator=g, dtype=torch.float64)
    fake = torch.randn(48, DIM, generator=g, dtype=torch.float64) * 1.3 + 0.2
    return real, fake


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        real, fake = _features()
        metric = FrechetVideoDistance("nbp", feature_dim=DIM)
        # real interleaved, fake split unevenly (30 / 18)
        metric.update_features(real[rank::world], True)
        metric.update_features(_fake_share(rank, fake), False)
        score = metric.compute()
        torch.save({"score": score, "counts": metric.counts()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _fake_share(rank: int, fake: torch.Tensor) -> torch.Tensor:
    return fake[:30] if rank == 0 else fake[30:]


@pytest.mark.timeout(120)
def test_two_process_sync_equals_one_process(tmp_path):
    real, fake = _features()
    assert torch.equal(torch.cat([_fake_share(0, fake), _fake_share(1, fake)]), fake)

    single = FrechetVideoDistance("nbp", feature_dim=DIM)
    single.update_features(real, True)
    single.update_features(fake, False)
    expected = single.compute().item()

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["score"].item() == pytest.approx(expected, rel=1e-10)
    # the local counts stay the per-rank shares (sync restores them after compute)
    assert torch.load(tmp_path / "rank0.pt", weights_only=True)["counts"]["real"] == 32
