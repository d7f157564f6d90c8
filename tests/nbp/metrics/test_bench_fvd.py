import json

import torch

from nbp.bench.fvd import separation, shuffled_in_time
from nbp.cli import main
from nbp.metrics.fvd import FrechetVideoDistance
from tests.nbp.metrics.standins import FEATURE_DIM, PoolingDetector, save_scripted_pooling_detector


def test_shuffled_copy_keeps_frames_and_changes_order():
    videos = torch.arange(2 * 3 * 6 * 2 * 2, dtype=torch.float32).reshape(2, 3, 6, 2, 2)
    out = shuffled_in_time(videos, torch.Generator().manual_seed(0))
    for i in range(2):
        assert sorted(out[i, 0, :, 0, 0].tolist()) == sorted(videos[i, 0, :, 0, 0].tolist())
        # all channels and pixels of a frame move together
        assert torch.equal(out[i, :, :, 1, 1] - out[i, :, :, 0, 0], videos[i, :, :, 1, 1] - videos[i, :, :, 0, 0])
    assert not torch.equal(out, videos)


def test_bench_fvd_prints_speed_json(tmp_path, capsys):
    detector = tmp_path / "pooling_torchscript.pt"
    save_scripted_pooling_detector(detector)
    args = ["bench", "fvd", "--videos", "3", "--batch-size", "2", "--size", "32", "--detector", str(detector)]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["benchmark"] == "fvd" and result["videos_timed"] == 3 and result["videos_per_s"] > 0
    assert result["detector"]["random_init"] is False and result["detector"]["kind"] == "torchscript"
    assert set(result["seconds"]) == {"preprocess", "detector"} and "separation" not in result


class _TimeAverage(PoolingDetector):
    """Features blind to frame order: a shuffled copy must score exactly like the original."""

    def forward(self, x, rescale=False, resize=False):
        return torch.nn.functional.adaptive_avg_pool3d(x.float(), (1, 2, 2)).flatten(1)


def test_separation_scores_halves_and_a_time_shuffled_copy(synthetic_root):
    for detector, dim in ((_TimeAverage(), 12), (PoolingDetector(), FEATURE_DIM)):

        def factory():
            return FrechetVideoDistance("nbp", detector=detector, feature_dim=dim, batch_size=12)

        sep = separation(factory, str(synthetic_root / "TwoSquares"), frames=17, size=32, seed=0)
        assert sep["videos"] == 4 and sep["frame_size"] == 32 and sep["fvd_disjoint_halves"] > 1e-3
        if dim == 12:
            assert abs(sep["fvd_vs_time_shuffled_copy"]) < 1e-6
        else:
            assert sep["fvd_vs_time_shuffled_copy"] > 1e-3
