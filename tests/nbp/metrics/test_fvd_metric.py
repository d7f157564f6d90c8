import numpy as np
import pytest
import torch

from nbp.errors import UserError
from nbp.metrics.frechet import frechet_distance
from nbp.metrics.fvd import FrechetVideoDistance
from tests.nbp.metrics.standins import FEATURE_DIM, PoolingDetector

DIM = 16


def _features(n, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(DIM, DIM, generator=g) / 4
    return torch.randn(n, DIM, generator=g, dtype=torch.float64) @ mix.double() + shift


def _numpy_fvd(real, fake, ddof):
    r, f = real.numpy(), fake.numpy()
    return frechet_distance(r.mean(0), np.cov(r, rowvar=False, ddof=ddof), f.mean(0), np.cov(f, rowvar=False, ddof=ddof))


def test_set_with_itself_is_zero_and_order_invariant():
    x = _features(300)
    metric = FrechetVideoDistance("nbp", feature_dim=DIM)
    metric.update_features(x, real=True)
    metric.update_features(x[torch.randperm(300)], real=False)
    assert abs(metric.compute().item()) < 1e-8


def test_order_of_updates_does_not_change_the_score():
    real, fake = _features(200), _features(150, shift=0.3, seed=1)
    forward = FrechetVideoDistance("nbp", feature_dim=DIM)
    forward.update_features(real, True)
    forward.update_features(fake, False)
    backward = FrechetVideoDistance("nbp", feature_dim=DIM)
    for chunk in reversed(fake.split(40)):
        backward.update_features(chunk, False)
    backward.update_features(real.flip(0), True)
    assert forward.compute().item() > 0.1
    assert backward.compute().item() == pytest.approx(forward.compute().item(), rel=1e-10)


@pytest.mark.parametrize("protocol,ddof", [("styleganv", 0), ("nbp", 1), ("tats", 1)])
def test_streaming_equals_batch_for_random_splits(protocol, ddof):
    real, fake = _features(120, seed=2), _features(90, shift=0.5, seed=3)
    expected = _numpy_fvd(real, fake, ddof)
    rng = np.random.default_rng(0)
    for _ in range(4):
        metric = FrechetVideoDistance(protocol, feature_dim=DIM)
        for side, feats in ((True, real), (False, fake)):
            cuts = np.sort(rng.integers(0, len(feats) + 1, size=rng.integers(0, 6)))
            for chunk in np.split(np.arange(len(feats)), cuts):  # may include empty chunks
                metric.update_features(feats[torch.from_numpy(chunk)], side)
        assert metric.counts() == {"real": 120, "fake": 90}
        assert metric.compute().item() == pytest.approx(expected, rel=1e-9)


def test_protocol_normalisation_differs_between_n_and_n_minus_1():
    real, fake = _features(20, seed=4), _features(20, shift=1.0, seed=5)
    scores = {}
    for name in ("styleganv", "nbp"):
        m = FrechetVideoDistance(name, feature_dim=DIM)
        m.update_features(real, True)
        m.update_features(fake, False)
        scores[name] = m.compute().item()
    assert scores["styleganv"] == pytest.approx(_numpy_fvd(real, fake, 0), rel=1e-9)
    assert scores["nbp"] == pytest.approx(_numpy_fvd(real, fake, 1), rel=1e-9)
    assert scores["styleganv"] != pytest.approx(scores["nbp"], rel=1e-6)


def test_videos_are_batched_through_the_protocol_and_detector():
    g = torch.Generator().manual_seed(0)
    videos = torch.randint(0, 256, (7, 3, 17, 32, 40), generator=g, dtype=torch.uint8)
    detector = PoolingDetector()
    metric = FrechetVideoDistance("nbp", detector=detector, feature_dim=FEATURE_DIM, batch_size=3)
    feats = metric.extract_features(videos)
    assert [c[0][0] for c in detector.calls] == [3, 3, 1]
    assert all(c[0][1:] == (3, 16, 224, 224) and c[1:] == (False, False) for c in detector.calls)
    # float [0, 1] input is the same video for the nbp protocol (no uint8 step)
    torch.testing.assert_close(metric.extract_features(videos.float() / 255), feats, rtol=1e-5, atol=1e-6)
    one_batch = FrechetVideoDistance("nbp", detector=PoolingDetector(), feature_dim=FEATURE_DIM, batch_size=16)
    torch.testing.assert_close(one_batch.extract_features(videos), feats, rtol=1e-6, atol=1e-6)

    styleganv = FrechetVideoDistance("styleganv", detector=PoolingDetector(), feature_dim=FEATURE_DIM)
    styleganv.extract_features(videos[:2])
    assert styleganv.detector.calls == [((2, 3, 16, 32, 40), True, True)]


def test_update_with_videos_matches_update_features():
    g = torch.Generator().manual_seed(1)
    real = torch.randint(0, 256, (6, 3, 16, 24, 24), generator=g, dtype=torch.uint8)
    fake = torch.randint(0, 128, (5, 3, 16, 24, 24), generator=g, dtype=torch.uint8)
    by_video = FrechetVideoDistance("tats", detector=PoolingDetector(), feature_dim=FEATURE_DIM, batch_size=4)
    by_video.update(real, real=True)
    by_video.update(fake, real=False)
    by_feature = FrechetVideoDistance("tats", detector=PoolingDetector(), feature_dim=FEATURE_DIM)
    by_feature.update_features(by_video.extract_features(real), True)
    by_feature.update_features(by_video.extract_features(fake), False)
    assert by_video.compute().item() == pytest.approx(by_feature.compute().item(), rel=1e-9)
    assert by_video.compute().item() > 0


def test_too_few_videos_and_bad_shapes_are_user_errors():
    metric = FrechetVideoDistance("nbp", feature_dim=DIM)
    metric.update_features(_features(5), True)
    metric.update_features(_features(1), False)
    with pytest.raises(UserError, match="at least 2 fake videos, got 1"):
        metric.compute()
    with pytest.raises(UserError, match=r"\(N, 16\)"):
        metric.update_features(torch.zeros(4, 3), True)
    with pytest.raises(UserError, match="16 frames"):
        FrechetVideoDistance("nbp", detector=PoolingDetector()).extract_features(torch.zeros(1, 3, 8, 8, 8))


def test_missing_detector_is_loaded_lazily_and_reports_what_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("NBP_CACHE", str(tmp_path))
    monkeypatch.setenv("NBP_OFFLINE", "1")
    monkeypatch.delenv("NBP_FVD_DETECTOR", raising=False)
    metric = FrechetVideoDistance("tats", feature_dim=DIM)  # no weights needed yet
    metric.update_features(_features(4), True)
    with pytest.raises(UserError, match="i3d_pretrained_400.pt"):
        metric.update(torch.zeros(1, 3, 16, 8, 8, dtype=torch.uint8), real=False)
