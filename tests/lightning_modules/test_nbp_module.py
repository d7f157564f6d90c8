import copy
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch import nn

from lightning_modules.nbp_module import NBPModule
from nbp.optim import build_adamw, fused_available, split_decay_parameters, warmup_cosine
from lightning_modules.token_data import TokenDataModule
from nbp.config import NBPConfig
from nbp.errors import UserError
from nbp.model import NBPTransformer
from tests import token_caches

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "nbp"
GRID, VOCAB, CLASSES = (2, 4, 4), 16, 3
SMALL = dict(n_layer=2, n_head=2, n_embd=32, dropout=0.0)


def write_pattern_cache(root, n=48, seed=0):
    return token_caches.write_pattern_cache(root, n=n, seed=seed, grid=GRID, vocab=VOCAB, classes=CLASSES)


@pytest.fixture(scope="module")
def pattern_cache(tmp_path_factory):
    return write_pattern_cache(tmp_path_factory.mktemp("cache"))


def make_trainer(root, max_steps, **kw):
    return L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, default_root_dir=root,
                     logger=False, enable_progress_bar=False, enable_model_summary=False,
                     gradient_clip_val=1.0, num_sanity_val_steps=0, **kw)


# ---------------------------------------------------------------------- optimiser and schedule


def test_weight_decay_only_on_linear_weights():
    model = NBPTransformer(NBPConfig.from_preset("tiny", vocab_size=VOCAB, grid=GRID, block=(1, 1, 4),
                                                 num_classes=CLASSES, **SMALL))
    decay, no_decay = split_decay_parameters(model)
    assert len({id(p) for p in decay + no_decay}) == len(list(model.parameters()))
    linear = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    assert {id(p) for p in decay} == linear
    assert id(model.tok_emb.weight) in {id(p) for p in no_decay}
    assert id(model.pos_emb) in {id(p) for p in no_decay}
    assert all(p.ndim >= 2 for p in decay)
    opt = build_adamw(model, lr=1e-3, weight_decay=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.defaults["betas"] == (0.9, 0.95)


def test_fused_adamw_on_cpu_matches_the_reference_update():
    assert fused_available([torch.zeros(2)]) and not fused_available([])
    assert not fused_available([torch.zeros(2, dtype=torch.long)])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    reference = copy.deepcopy(model)
    fused = build_adamw(model, lr=1e-2, weight_decay=0.1)
    assert fused.defaults["fused"]
    plain = torch.optim.AdamW([{"params": [reference[0].weight, reference[2].weight], "weight_decay": 0.1},
                               {"params": [reference[0].bias, *reference[1].parameters(), reference[2].bias],
                                "weight_decay": 0.0}], lr=1e-2, betas=(0.9, 0.95), foreach=False)
    for _ in range(3):
        x = torch.randn(16, 4)
        for net, opt in ((model, fused), (reference, plain)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for got, want in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(got, want)


def test_tied_head_weight_is_not_decayed():
    model = NBPTransformer(NBPConfig.from_preset("tiny", vocab_size=VOCAB, grid=GRID, block=(1, 1, 4),
                                                 num_classes=CLASSES, tie_head=True, **SMALL))
    decay, _ = split_decay_parameters(model)
    assert id(model.tok_emb.weight) not in {id(p) for p in decay}


def test_warmup_then_cosine_to_min_ratio():
    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110) == pytest.approx(0.5)  # half way through the cosine
    assert warmup_cosine(110, 10, 110, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(500, 10, 110) == pytest.approx(0.0)
    values = [warmup_cosine(s, 10, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


# ---------------------------------------------------------------------- training


def test_training_steps_reduce_loss_and_checkpoints_rebuild_the_model(pattern_cache, tmp_path):
    torch.manual_seed(0)
    module = NBPModule(preset="tiny", overrides=dict(block=[1, 1, 4], first_block="hybrid",
                                                     condition="class", p_uncond=0.1, **SMALL),
                       lr=3e-3, warmup_steps=5)
    data = TokenDataModule(train_cache=str(pattern_cache), val_cache=str(pattern_cache), batch_size=16)
    before = make_trainer(tmp_path, 1).validate(module, datamodule=data, verbose=False)[0]
    # vocab_size, grid and num_classes came from the cache's meta.json
    assert module.nbp_config.grid == GRID and module.nbp_config.vocab_size == VOCAB
    assert module.nbp_config.num_classes == CLASSES
    assert before["val/bits_per_token"] == pytest.approx(before["val/loss"] / math.log(2), rel=1e-5)
    assert before["val/bits_per_token"] > 0.8 * math.log2(VOCAB)  # untrained: near uniform

    trainer = make_trainer(tmp_path, 60)
    trainer.fit(module, datamodule=data)
    logged = trainer.logged_metrics
    for key in ("train/loss", "train/top1", "train/top5", "train/tokens_per_s"):
        assert key in logged, key
    assert 0.0 <= float(logged["train/top1"]) <= float(logged["train/top5"]) <= 1.0
    after = make_trainer(tmp_path, 1).validate(module, datamodule=data, verbose=False)[0]
    assert after["val/loss"] < 0.6 * before["val/loss"]
    assert after["val/top1"] > before["val/top1"] + 0.3

    # The Lightning checkpoint and the exported model.pt rebuild the same network without any YAML.
    ckpt_dir = Path(trainer.checkpoint_callback.dirpath)
    ckpt = next(ckpt_dir.glob("*.ckpt"))
    exported = ckpt_dir / "model.pt"
    raw = torch.load(exported, weights_only=True)
    assert raw["config"]["grid"] == list(GRID)
    video = torch.randint(0, VOCAB, (2, module.nbp_config.num_tokens))
    cond = torch.tensor([0, 2])
    module.model.eval()
    with torch.no_grad():
        expected = module.model(video, cond)
        for path in (ckpt, exported):
            rebuilt = NBPModule.load_model(path)
            assert not rebuilt.training
            torch.testing.assert_close(rebuilt(video, cond), expected)


def test_frame_condition_splits_context_from_generated_tokens(pattern_cache):
    module = NBPModule(preset="tiny", overrides=dict(vocab_size=VOCAB, grid=list(GRID), block=[1, 2, 2],
                                                     condition="frames", context_frames=1, **SMALL))
    tokens = torch.arange(2 * 32).view(2, *GRID) % VOCAB
    video, context = module.split_batch({"tokens": tokens, "label": torch.tensor([-1, -1])})
    cfg = module.nbp_config
    assert torch.equal(cfg.context_layout.seq_to_grid(context), tokens[:, :1])
    assert torch.equal(cfg.layout.seq_to_grid(video), tokens[:, 1:])
    assert video.shape == (2, 16) and context.shape == (2, 16)


def test_cache_grid_different_from_model_grid_is_a_user_error(pattern_cache, tmp_path):
    module = NBPModule(preset="tiny", overrides=dict(vocab_size=VOCAB, grid=[2, 8, 8], block=[1, 1, 8],
                                                     num_classes=CLASSES, **SMALL))
    data = TokenDataModule(train_cache=str(pattern_cache), batch_size=8)
    with pytest.raises(UserError, match=r"latent grid \[2, 4, 4\].*\[2, 8, 8\]"):
        make_trainer(tmp_path, 1).fit(module, datamodule=data)


def test_data_module_needs_exactly_one_source(pattern_cache):
    with pytest.raises(UserError, match="exactly one source"):
        TokenDataModule()
    with pytest.raises(UserError, match="exactly one source"):
        TokenDataModule(train_cache=str(pattern_cache), tokenizer="tok.pt")


# ---------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", ["synthetic", "synthetic_ntp", "ucf101_base", "ucf101_3b", "ucf101_ntp",
                                  "k600_base", "k600_3b"])
def test_every_config_describes_a_valid_model(name):
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    args = cfg["model"]["init_args"]
    assert cfg["model"]["class_path"] == "lightning_modules.nbp_module.NBPModule"
    assert cfg["data"]["class_path"] == "lightning_modules.token_data.TokenDataModule"
    model_cfg = NBPConfig.from_preset(args["preset"], **args["overrides"])  # validates every field
    if name.startswith("ucf101"):
        assert model_cfg.condition == "class" and model_cfg.first_block == "hybrid"
        assert model_cfg.num_tokens == 1280 and args["lr"] == 6e-4 and args["warmup_steps"] == 5000
        assert cfg["trainer"]["precision"] == "bf16-mixed"
    if name.startswith("k600"):
        assert model_cfg.condition == "frames" and model_cfg.context_frames == 2
        assert model_cfg.num_tokens == 768 and args["warmup_steps"] == 10000
    trainer = cfg["trainer"]
    global_batch = cfg["data"]["init_args"]["batch_size"] * trainer["devices"] * trainer.get("accumulate_grad_batches", 1)
    if name.startswith("ucf101"):
        assert global_batch == 256
    if name.startswith("k600"):
        assert global_batch == 64
    expected_block = (1, 1, 1) if name.endswith("ntp") else (1, 1, model_cfg.grid[2])
    assert model_cfg.block == expected_block


def test_on_the_fly_batches_hold_the_same_tokens_as_the_cache(synthetic_root, tmp_path):
    from nbp.commands.tokenize import tokenize_dataset
    from nbp.data import DatasetConfig
    from nbp.token_cache import TokenCache
    from tokenizer import TokenizerConfig, VideoTokenizer

    tok_path = tmp_path / "tok.pt"
    VideoTokenizer(TokenizerConfig.from_preset("synthetic", base_channels=8, norm_groups=4)).save(tok_path)
    test_split = DatasetConfig(kind="ucf101", root=str(synthetic_root), split="test", size=32, frames=17)
    tokenize_dataset(tok_path, test_split, tmp_path / "cache", batch_size=4, progress=False)
    cache = TokenCache(tmp_path / "cache")

    data = TokenDataModule(tokenizer=str(tok_path), train_data=test_split, val_data=test_split, batch_size=4)
    # the same description from the tokenizer as from the cache, its compression included (for model.pt)
    assert data.describe() == {"grid": (5, 8, 8), "vocab_size": 1000, "num_classes": 6,
                               "tokenizer": {"temporal_downsample": 4, "spatial_downsample": 4}, "window": 0}
    assert TokenDataModule(train_cache=str(tmp_path / "cache")).describe() == data.describe()
    data.setup("fit")
    batch = data.on_after_batch_transfer(next(iter(data.val_dataloader())), 0)
    assert "video" not in batch and batch["tokens"].shape == (4, 5, 8, 8)
    for i in range(4):
        assert torch.equal(batch["tokens"][i], cache[i]["tokens"])
        assert int(batch["label"][i]) == cache[i]["label"]


def test_unlabelled_videos_are_refused_before_the_batch_moves_to_the_device():
    module = NBPModule(preset="tiny", overrides=dict(vocab_size=VOCAB, grid=list(GRID), block=[1, 2, 2],
                                                     condition="class", num_classes=CLASSES, **SMALL))
    batch = {"tokens": torch.zeros(2, *GRID, dtype=torch.long), "label": torch.tensor([1, 2])}
    assert module.on_before_batch_transfer(batch, 0) is batch
    with pytest.raises(UserError, match="unlabelled videos"):
        module.on_before_batch_transfer({**batch, "label": torch.tensor([1, -1])}, 0)
