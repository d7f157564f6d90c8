"""Mistakes a user can make with every `nbp` subcommand, run as real processes.

Each case runs `python -m nbp ...` and must end in exactly one stderr line `nbp: error: ...` with
exit code 2 (or `nbp: interrupted` with 130 for Ctrl-C), never a traceback, and must leave its
output path unwritten.

    python3 -m tests.user_error_cases            # every case; prints a summary, exit 1 on a failure
    python3 -m tests.user_error_cases -k sample  # the cases whose name contains "sample"

`tests/test_user_errors.py` runs a representative subset under pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    name: str
    argv: list[str]                 # after `nbp`; "{key}" is replaced by the fixture path of that name
    expect: str = "error"           # "error": one line, exit 2; "interrupt": Ctrl-C, exit 130
    must_not_exist: list[str] = field(default_factory=list)  # paths (with {key}) the command must not write
    interrupt_when: str | None = None  # for "interrupt": a path (with {key}) whose appearance means the work started
    contains: str | None = None     # a word the error line must contain


@dataclass
class Result:
    case: Case
    code: int
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def problems(self, fixtures: dict[str, Path]) -> list[str]:
        found = []
        wanted_code, prefix = (130, "nbp: interrupted") if self.case.expect == "interrupt" else (2, "nbp: error: ")
        if "Traceback" in self.stderr:
            found.append("traceback")
        if self.code != wanted_code:
            found.append(f"exit {self.code}, expected {wanted_code}")
        lines = self.error_lines if self.case.expect == "error" else self.error_lines[-1:]
        if len(lines) != 1 or not lines[0].startswith(prefix):
            found.append(f"{len(self.error_lines)} stderr lines, expected one '{prefix}...'")
        if self.case.contains and self.case.contains.lower() not in self.stderr.lower():
            found.append(f"no {self.case.contains!r} in the message")
        for path in self.case.must_not_exist:
            if holds_a_file(Path(fill(path, fixtures, self.case))):
                found.append(f"{fill(path, fixtures, self.case)} was written")
        return found


# tokenizer files that are no tokenizer: missing, empty, text, cut short, a model file
BAD_TOKENIZERS = {"tokenizer missing": "{missing}.pt", "tokenizer empty": "{empty_pt}", "tokenizer text": "{text_pt}",
                  "tokenizer truncated": "{truncated_pt}", "tokenizer is a model": "{model_class}"}


def holds_a_file(path: Path) -> bool:
    """A file at `path` or anywhere below it (an empty folder left behind writes nothing)."""
    if path.is_dir():
        return any(p.is_file() for p in path.rglob("*"))
    return path.exists()


def fill(text: str, fixtures: dict[str, Path], case: Case | None = None) -> str:
    if case is not None:  # every case writes (or rather must not write) into its own folder
        slug = re.sub(r"[^A-Za-z0-9]+", "_", case.name).strip("_")
        text = text.replace("{case}", str(fixtures["root"] / "cases" / slug))
    for key, value in fixtures.items():
        text = text.replace("{" + key + "}", str(value))
    return text


# ------------------------------------------------------------------------------------------------ fixtures


def make_fixtures(root: Path) -> dict[str, Path]:
    """Real inputs (videos, tokenizer, model files, token cache) and broken copies of them."""
    import torch

    from nbp.commands.tokenize import tokenize_dataset
    from nbp.config import NBPConfig
    from nbp.data import DatasetConfig
    from nbp.data.synthetic import write_synthetic_dataset
    from nbp.metrics.sample_shards import SampleShards
    from nbp.model import NBPTransformer
    from nbp.model_file import save_model_file
    from tokenizer import TokenizerConfig, VideoTokenizer

    root.mkdir(parents=True, exist_ok=True)
    f: dict[str, Path] = {"root": root}
    f["data"] = write_synthetic_dataset(root / "data", videos_per_class=2, frames=17, size=32, fps=8, seed=0)
    f["video"] = sorted(f["data"].glob("*/*.mp4"))[0]
    # enough videos that tokenizing them outlasts the delay before an interrupt on a busy machine
    f["data_many"] = write_synthetic_dataset(root / "data_many", videos_per_class=16, frames=17, size=32, fps=8, seed=1)
    torch.manual_seed(0)
    tiny = dict(base_channels=8, norm_groups=4, num_res_blocks=1)
    tokenizer = VideoTokenizer(TokenizerConfig.from_preset("synthetic", **tiny))
    f["tokenizer"] = root / "tokenizer.pt"
    tokenizer.save(f["tokenizer"])
    # Same vocabulary, half the temporal compression: 17 frames -> 9 latent frames instead of 5.
    f["tokenizer_t2"] = root / "tokenizer_t2.pt"
    VideoTokenizer(TokenizerConfig.from_preset("synthetic", temporal_downsample=2, **tiny)).save(f["tokenizer_t2"])
    common = dict(vocab_size=tokenizer.vocab_size, grid=(5, 8, 8), block=(1, 1, 8), first_block="hybrid",
                  n_layer=1, n_head=2, n_embd=32, dropout=0.0)
    compression = {"temporal_downsample": 4, "spatial_downsample": tokenizer.config.spatial_downsample}
    for name, extra in {"class": dict(condition="class", num_classes=6),
                        "frames": dict(condition="frames", context_frames=2),
                        "uncond": dict(condition="none"),
                        "wrong_vocab": dict(condition="class", num_classes=6, vocab_size=512)}.items():
        config = NBPConfig(**{**common, **extra})
        f[f"model_{name}"] = save_model_file(NBPTransformer(config), config, root / f"model_{name}.pt",
                                             tokenizer=compression)
    # A real I3D with random weights: the eval commands get past the detector to the checks behind it.
    from nbp.metrics.i3d import InceptionI3d

    f["detector"] = root / "i3d_random.pt"
    torch.save(InceptionI3d().state_dict(), f["detector"])
    f["cache"] = root / "cache"
    data_cfg = DatasetConfig(kind="ucf101", root=str(f["data"]), split="train", frames=17, size=32)
    tokenize_dataset(f["tokenizer"], data_cfg, f["cache"], batch_size=4, shard_size=4, device="cpu", progress=False)

    def broken(name: str, content: bytes) -> Path:
        path = root / name
        path.write_bytes(content)
        return path

    f["empty_pt"] = broken("empty.pt", b"")
    f["text_pt"] = broken("notes.pt", b"these are my notes\n")
    f["text_ckpt"] = broken("notes.ckpt", b"not a checkpoint\n")
    f["truncated_ckpt"] = broken("truncated.ckpt", f["model_class"].read_bytes()[:1000])
    f["truncated_pt"] = broken("truncated.pt", f["tokenizer"].read_bytes()[:2000])
    f["not_video"] = broken("notes.mp4", b"plain text, not a video\n")
    f["bad_yaml"] = broken("bad.yaml", b"out: [unclosed\n")
    f["empty_yaml"] = broken("empty.yaml", b"")
    f["typo_yaml"] = broken("typo.yaml", b"videos_per_clas: 3\n")
    f["type_yaml"] = broken("type.yaml", b"frames: many\n")
    f["list_yaml"] = broken("list.yaml", b"- 1\n- 2\n")
    f["class_index_bad"] = broken("classInd_bad.txt", b"1 OneSquare\nTwoSquares\n")
    f["class_index_short"] = broken("classInd_short.txt", b"1 OneSquare\n2 TwoSquares\n")
    f["a_file"] = broken("a_file.txt", b"a file, not a folder\n")
    f["a_folder"] = root / "a_folder"
    f["a_folder"].mkdir(exist_ok=True)
    f["missing"] = root / "does_not_exist"

    # A token cache whose first shard is cut short, and one whose meta.json is not JSON.
    f["cache_bad_shard"] = root / "cache_bad_shard"
    shutil.copytree(f["cache"], f["cache_bad_shard"])
    shard = sorted(p for p in f["cache_bad_shard"].iterdir() if p.suffix in (".npy", ".bin", ".pt"))[0]
    shard.write_bytes(shard.read_bytes()[:7])
    f["cache_bad_meta"] = root / "cache_bad_meta"
    shutil.copytree(f["cache"], f["cache_bad_meta"])
    (f["cache_bad_meta"] / "meta.json").write_text("{ not json")

    # A sample cache of `nbp eval` whose meta.json is corrupt.
    f["sample_cache_bad"] = root / "samples_bad"
    SampleShards(f["sample_cache_bad"], 4, 2, {"task": "ucf101"}).open()
    (f["sample_cache_bad"] / "meta.json").write_text("{ half")

    f["train_yaml"] = root / "train.yaml"
    f["train_yaml"].write_text(train_config(f))
    (root / "cases").mkdir(exist_ok=True)
    return f


def train_config(f: dict[str, Path]) -> str:
    return f"""seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 2
  logger: false
  enable_progress_bar: false
  default_root_dir: runs/train
model:
  class_path: lightning_modules.nbp_module.NBPModule
  init_args:
    preset: tiny
    overrides: {{block: [1, 1, 8], first_block: hybrid, condition: class, n_layer: 1, n_head: 2, n_embd: 32}}
    lr: 1.0e-3
    warmup_steps: 1
data:
  class_path: lightning_modules.token_data.TokenDataModule
  init_args:
    train_cache: {f['cache']}
    batch_size: 2
"""


# ------------------------------------------------------------------------------------------------ the cases


def _cases() -> list[Case]:
    cases: list[Case] = []

    def add(name, argv, **kw):
        cases.append(Case(name, argv.split() if isinstance(argv, str) else argv, **kw))

    # -- the dispatcher
    add("cli/unknown command", "nonsense")
    add("cli/unknown group member", "eval nonsense")
    add("cli/bench unknown", "bench nope")

    # -- nbp data synthetic
    out = "{case}/synth_out"
    synth = "data synthetic --out " + out
    for name, extra in {
        "videos-per-class 0": "--videos-per-class 0", "videos-per-class text": "--videos-per-class many",
        "frames 0": "--frames 0", "frames negative": "--frames -3", "frames float": "--frames 2.5",
        "size 2": "--size 2", "fps 0": "--fps 0", "fps negative": "--fps -8", "seed text": "--seed x",
        "unknown option": "--colour red", "config missing": "--config {missing}.yaml",
        "config bad yaml": "--config {bad_yaml}", "config empty": "--config {empty_yaml}",
        "config typo key": "--config {typo_yaml}", "config wrong type": "--config {type_yaml}",
        "config a list": "--config {list_yaml}",
    }.items():
        add(f"data synthetic/{name}", f"{synth} {extra}", must_not_exist=[out])
    add("data synthetic/no --out", "data synthetic")
    add("data synthetic/out is a file", "data synthetic --out {a_file}")
    add("data synthetic/out under a file", "data synthetic --out {a_file}/sub", must_not_exist=["{a_file}/sub"])
    add("data synthetic/out unwritable", "data synthetic --out /proc/nbp_synth")

    # -- nbp tokenize
    tok_out = "{case}/tok_out"
    data = "--data.kind ucf101 --data.root {data} --data.size 32"
    tok = f"tokenize --tokenizer {{tokenizer}} {data} --out {tok_out} --device cpu"
    for name, extra in {
        "batch-size 0": "--batch-size 0", "shard-size 0": "--shard-size 0", "num-workers -1": "--num-workers -1",
        "device gpu7": "--device gpu7", "device tpu": "--device tpu", "device cuda": "--device cuda",
        "device cuda:9": "--device cuda:9", "data.kind bogus": "--data.kind bogus", "data.split val": "--data.split val",
        "data.fold 4": "--data.fold 4", "data.frames 0": "--data.frames 0", "data.size -1": "--data.size -1",
        "data.fps 0": "--data.fps 0", "data.clip sideways": "--data.clip sideways",
        "data.resize stretch": "--data.resize stretch", "data.fps nan": "--data.fps nan",
        "data.bogus": "--data.bogus 1",
    }.items():
        add(f"tokenize/{name}", f"{tok} {extra}", must_not_exist=[tok_out])
    for name, path in {**BAD_TOKENIZERS, "tokenizer is a folder": "{a_folder}"}.items():
        add(f"tokenize/{name}", f"tokenize --tokenizer {path} {data} --out {tok_out}", must_not_exist=[tok_out])
    add("tokenize/data root missing", f"tokenize --tokenizer {{tokenizer}} --data.kind ucf101 --data.root {{missing}} "
        f"--out {tok_out}", must_not_exist=[tok_out])
    add("tokenize/data root is a file", f"tokenize --tokenizer {{tokenizer}} --data.kind ucf101 --data.root {{a_file}} "
        f"--out {tok_out}", must_not_exist=[tok_out])
    add("tokenize/out is a file", f"tokenize --tokenizer {{tokenizer}} {data} --out {{a_file}}")
    add("tokenize/out unwritable", f"tokenize --tokenizer {{tokenizer}} {data} --out /proc/nbp_tok")
    add("tokenize/out is another cache", f"tokenize --tokenizer {{tokenizer_t2}} {data} --out {{cache}}")
    add("tokenize/no --tokenizer", f"tokenize {data} --out {tok_out}", must_not_exist=[tok_out])

    # -- nbp sample
    s_out = "{case}/sample_out"
    sample = f"sample --model {{model_class}} --tokenizer {{tokenizer}} --out {s_out} --device cpu"
    for name, extra in {
        "num 0": "--num 0", "batch-size 0": "--batch-size 0", "batch-size text": "--batch-size big",
        "fps 0": "--fps 0", "fps negative": "--fps -2", "temperature negative": "--temperature -1",
        "temperature nan": "--temperature nan", "top-k negative": "--top-k -5",
        "top-p 0": "--top-p 0", "top-p 1.5": "--top-p 1.5", "cfg negative": "--cfg -1", "cfg inf": "--cfg inf",
        "classes out of range": "--classes 6", "classes negative": "--classes -1",
        "classes and class-names": "--classes 1 --class-names OneSquare",
        "class name unknown": "--class-names Triangle", "class-index missing": "--class-index {missing}.txt",
        "class-index malformed": "--class-names OneSquare --class-index {class_index_bad}",
        "class-index wrong count": "--class-index {class_index_short}",
        "context on a class model": "--context {video}", "device gpu7": "--device gpu7",
        "device tpu": "--device tpu", "device cuda": "--device cuda", "device cuda:3": "--device cuda:3",
        "compile text": "--compile maybe", "seed text": "--seed abc", "unknown option": "--steps 3",
        "frames 0": "--frames 0", "frames 18": "--frames 18", "frames text": "--frames long",
        "frames beyond a whole-clip model": "--frames 65",
        "stream text": "--stream maybe", "stream with frames 18": "--stream true --frames 18",
        "stream beyond a whole-clip model": "--stream true --frames 65",
    }.items():
        add(f"sample/{name}", f"{sample} {extra}", must_not_exist=[s_out])
    for name, (model, tokenizer) in {
        "model missing": ("{missing}.pt", "{tokenizer}"), "model empty": ("{empty_pt}", "{tokenizer}"),
        "model text": ("{text_pt}", "{tokenizer}"), "model text .ckpt": ("{text_ckpt}", "{tokenizer}"),
        "model truncated .ckpt": ("{truncated_ckpt}", "{tokenizer}"), "model is a tokenizer": ("{tokenizer}", "{tokenizer}"),
        "model is a folder": ("{a_folder}", "{tokenizer}"),
        **{name: ("{model_class}", path) for name, path in BAD_TOKENIZERS.items()},
        "vocab mismatch": ("{model_wrong_vocab}", "{tokenizer}"),
        "temporal compression mismatch": ("{model_class}", "{tokenizer_t2}"),
    }.items():
        add(f"sample/{name}", f"sample --model {model} --tokenizer {tokenizer} --out {s_out} --device cpu",
            must_not_exist=[s_out])
    frames = f"sample --model {{model_frames}} --tokenizer {{tokenizer}} --out {s_out} --device cpu"
    add("sample/frames model without context", frames, must_not_exist=[s_out])
    add("sample/context missing", f"{frames} --context {{missing}}.mp4", must_not_exist=[s_out])
    add("sample/context not a video", f"{frames} --context {{not_video}}", must_not_exist=[s_out])
    add("sample/context is a folder", f"{frames} --context {{a_folder}}", must_not_exist=[s_out])
    add("sample/classes on a frames model", f"{frames} --context {{video}} --classes 1", must_not_exist=[s_out])
    add("sample/context on unconditional", f"sample --model {{model_uncond}} --tokenizer {{tokenizer}} --out {s_out} "
        f"--context {{video}}", must_not_exist=[s_out])
    add("sample/out is a file", f"sample --model {{model_class}} --tokenizer {{tokenizer}} --out {{a_file}}")
    add("sample/out unwritable", f"sample --model {{model_class}} --tokenizer {{tokenizer}} --out /proc/nbp_samples")
    add("sample/no --model", f"sample --tokenizer {{tokenizer}} --out {s_out}", must_not_exist=[s_out])

    # -- nbp eval fvd
    report = "{case}/fvd.json"
    fvd = f"eval fvd --real {{data}} --fake {{data}} --size 32 --device cpu --workers 0 --out {report}"
    for name, extra in {
        "protocol bogus": "--protocol bogus", "batch-size 0": "--batch-size 0", "workers -1": "--workers -1",
        "device gpu7": "--device gpu7", "device cuda": "--device cuda", "num-real 1": "--num-real 1",
        "num-fake too many": "--num-fake 100000", "clip sideways": "--clip sideways", "size 0": "--size 0",
        "fps 0": "--fps 0", "pre-resize 0": "--pre-resize 0", "detector missing": "--detector {missing}.pt",
        "detector text": "--detector {text_pt}", "detector empty": "--detector {empty_pt}",
        "detector is a tokenizer": "--detector {tokenizer}",
    }.items():
        add(f"eval fvd/{name}", f"{fvd} {extra}", must_not_exist=[report])
    add("eval fvd/real missing", f"eval fvd --real {{missing}} --fake {{data}} --device cpu --out {report}",
        must_not_exist=[report])
    add("eval fvd/fake is a file", f"eval fvd --real {{data}} --fake {{a_file}} --device cpu --out {report}",
        must_not_exist=[report])
    add("eval fvd/fake has no videos", f"eval fvd --real {{data}} --fake {{a_folder}} --device cpu --out {report}",
        must_not_exist=[report])
    add("eval fvd/out is a folder", f"eval fvd --real {{data}} --fake {{data}} --size 32 --device cpu --out {{a_folder}}")
    add("eval fvd/out unwritable", f"eval fvd --real {{data}} --fake {{data}} --size 32 --device cpu --out /proc/x.json")

    # -- nbp eval ucf101 / k600 (the detector is never present in tests: that check must come first)
    ucf_out = "{case}/ucf.json"
    ucf = f"eval ucf101 --data {{data}} --model {{model_class}} --tokenizer {{tokenizer}} --device cpu --num-samples 4 " \
          f"--out {ucf_out} --detector {{detector}}"
    add("eval ucf101/no detector", ucf.replace("--detector {detector}", ""), contains="detector",
        must_not_exist=[ucf_out, "{case}/ucf_samples"])
    for name, extra in {
        "detector missing": "--detector {missing}.pt", "num-samples 1": "--num-samples 1",
        "batch-size 0": "--batch-size 0", "shard-size 0": "--shard-size 0", "workers -1": "--workers -1",
        "fold 4": "--fold 4", "protocol bogus": "--protocol bogus", "device tpu": "--device tpu",
        "temperature negative": "--temperature -1", "top-p 2": "--top-p 2", "fps 0": "--fps 0",
        "model is frames-conditioned": "--model {model_frames}",
        "tokenizer mismatch": "--tokenizer {tokenizer_t2}", "cache meta corrupt": "--cache {sample_cache_bad}",
    }.items():
        add(f"eval ucf101/{name}", f"{ucf} {extra}", must_not_exist=[ucf_out, "{case}/ucf_samples"])
    add("eval ucf101/out is a folder", f"eval ucf101 --data {{data}} --model {{model_class}} --tokenizer {{tokenizer}} "
        f"--device cpu --num-samples 4 --out {{a_folder}}")
    add("eval ucf101/data missing", f"eval ucf101 --data {{missing}} --model {{model_class}} --tokenizer {{tokenizer}} "
        f"--device cpu --out {ucf_out}", must_not_exist=[ucf_out])
    k_out = "{case}/k600.json"
    k600 = f"eval k600 --data {{data}} --kind ucf101 --split train --model {{model_frames}} --tokenizer {{tokenizer}} " \
           f"--device cpu --num-samples 4 --out {k_out} --detector {{detector}}"
    add("eval k600/no detector", k600.replace("--detector {detector}", ""), contains="detector",
        must_not_exist=[k_out, "{case}/k600_samples"])
    for name, extra in {
        "kind bogus": "--kind bogus", "split bogus": "--split bogus", "fvd-size 0": "--fvd-size 0",
        "model is class-conditional": "--model {model_class}", "num-samples 0": "--num-samples 0",
        "device gpu7": "--device gpu7", "top-k -1": "--top-k -1",
    }.items():
        add(f"eval k600/{name}", f"{k600} {extra}", must_not_exist=[k_out, "{case}/k600_samples"])
    add("eval k600/out unwritable", f"eval k600 --data {{data}} --kind ucf101 --split train --model {{model_frames}} "
        f"--tokenizer {{tokenizer}} --device cpu --num-samples 4 --out /proc/k.json")

    # -- nbp eval recon
    r_out = "{case}/recon.json"
    recon = f"eval recon --tokenizer {{tokenizer}} {data} --device cpu --fvd false --out {r_out}"
    for name, extra in {
        "batch_size 0": "--batch_size 0", "limit 0": "--limit 0", "num_workers -1": "--num_workers -1",
        "device gpu7": "--device gpu7", "fvd_protocol bogus": "--fvd true --fvd_protocol bogus",
        "fvd text": "--fvd perhaps", "data.kind bogus": "--data.kind bogus",
    }.items():
        add(f"eval recon/{name}", f"{recon} {extra}", must_not_exist=[r_out])
    add("eval recon/tokenizer text", f"eval recon --tokenizer {{text_pt}} {data} --device cpu --out {r_out}",
        must_not_exist=[r_out])
    add("eval recon/tokenizer text .ckpt", f"eval recon --tokenizer {{text_ckpt}} {data} --device cpu --out {r_out}",
        must_not_exist=[r_out])
    add("eval recon/out is a folder", f"eval recon --tokenizer {{tokenizer}} {data} --device cpu --fvd false "
        f"--out {{a_folder}}")
    add("eval recon/out under a file", f"eval recon --tokenizer {{tokenizer}} {data} --device cpu --fvd false "
        f"--out {{a_file}}/r.json")

    # -- nbp train (LightningCLI)
    train = "train fit --config {train_yaml}"
    runs = "{case}/runs/train"
    for name, extra in {
        "batch_size 0": "--data.init_args.batch_size 0", "num_workers -1": "--data.init_args.num_workers -1",
        "lr -1": "--model.init_args.lr -1", "lr nan": "--model.init_args.lr nan", "lr text": "--model.init_args.lr fast",
        "preset gigantic": "--model.init_args.preset gigantic", "model option typo": "--model.init_args.lrate 1",
        "model class typo": "--model lightning_modules.nbp_module.NBPModul",
        "overrides unknown field": "--model.init_args.overrides {\"n_layers\":3}",
        "max_steps -5": "--trainer.max_steps -5", "trainer option typo": "--trainer.max_stepz 5",
        "precision bogus": "--trainer.precision 13", "accelerator tpu": "--trainer.accelerator tpu",
        "accelerator gpu": "--trainer.accelerator gpu", "strategy bogus": "--trainer.strategy nonsense",
        "devices 0": "--trainer.devices 0", "train_cache missing": "--data.init_args.train_cache {missing}",
        "train_cache is a file": "--data.init_args.train_cache {a_file}",
        "train_cache shard corrupt": "--data.init_args.train_cache {cache_bad_shard}",
        "train_cache meta corrupt": "--data.init_args.train_cache {cache_bad_meta}",
        "default_root_dir is a file": "--trainer.default_root_dir {a_file}",
        "default_root_dir unwritable": "--trainer.default_root_dir /proc/nbp_runs",
        "ckpt_path missing": "--ckpt_path {missing}.ckpt", "ckpt_path text": "--ckpt_path {text_ckpt}",
        "ckpt_path truncated": "--ckpt_path {truncated_ckpt}", "ckpt_path model.pt": "--ckpt_path {model_class}",
        "ckpt_path best without one": "--ckpt_path best", "grid mismatch": "--model.init_args.overrides.grid [4,8,8]",
        "checkpoint.every_n_train_steps -1": "--checkpoint.every_n_train_steps -1",
        "seed text": "--seed_everything abc",
        "window 1": "--data.init_args.window 1", "window longer than the clips": "--data.init_args.window 9",
        "window model on whole clips": "--model.init_args.overrides.window 5",
    }.items():
        add(f"train/{name}", f"{train} {extra}", must_not_exist=[runs])
    add("train/config missing", "train fit --config {missing}.yaml")
    add("train/config bad yaml", "train fit --config {bad_yaml}")
    add("train/config empty", "train fit --config {empty_yaml}")
    add("train/config typo key", "train fit --config {typo_yaml}")
    add("train/no subcommand argument", "train fitt")

    # -- nbp demo
    demo_out = "{case}/demo_out"
    for name, extra in {"minutes 0": "--minutes 0", "minutes negative": "--minutes -3", "minutes nan": "--minutes nan",
                        "device tpu": "--device tpu", "device cuda": "--device cuda", "threads -1": "--threads -1"}.items():
        add(f"demo/{name}", f"demo --out {demo_out} {extra}", must_not_exist=[demo_out])
    add("demo/out is a file", "demo --out {a_file}")
    add("demo/out unwritable", "demo --out /proc/nbp_demo")
    add("demo/long text", "demo --out {case}/demo_long --long maybe", must_not_exist=["{case}/demo_long"])

    # -- nbp bench (measurement tools still refuse bad input in one line)
    for name, argv in {"sampling preset": "bench sampling --preset huge", "sampling dtype": "bench sampling --dtype fp8",
                       "sampling device": "bench sampling --device gpu7", "train device": "bench train --device tpu",
                       "train steps": "bench train --steps 0", "tokenizer frames": "bench tokenizer --frames 0",
                       "tokenizer device": "bench tokenizer --device cuda", "fvd device": "bench fvd --device gpu7",
                       "data root missing": "bench data --root {missing}",
                       "rolling frames": "bench rolling --frames 17 18", "rolling preset": "bench rolling --preset huge",
                       "rolling batch 0": "bench rolling --batch-size 0",
                       "streaming frames": "bench streaming --frames 17 18",
                       "streaming model without tokenizer": "bench streaming --model {model_class}",
                       "streaming rounds 0": "bench streaming --rounds 0"}.items():
        add(f"bench/{name}", argv)

    # -- Ctrl-C while the work runs: exit 130, one line, no worker tracebacks
    add("interrupt/data synthetic", "data synthetic --out {case}/int_synth --videos-per-class 200 --size 64",
        expect="interrupt", interrupt_when="{case}/int_synth/OneSquare")
    add("interrupt/tokenize with workers", "tokenize --tokenizer {tokenizer} --data.kind ucf101 --data.root "
        "{data_many} --data.size 32 --out {case}/int_tok "
        "--num-workers 2 --batch-size 1 --shard-size 1 --device cpu", expect="interrupt",
        interrupt_when="{case}/int_tok/meta.json")
    add("interrupt/sample", f"sample --model {{model_class}} --tokenizer {{tokenizer}} --out {{case}}/int_sample "
        f"--num 50 --batch-size 1 --device cpu", expect="interrupt", interrupt_when="{case}/int_sample")
    add("interrupt/sample stream", f"sample --model {{model_class}} --tokenizer {{tokenizer}} --out {{case}}/int_stream "
        f"--num 50 --batch-size 1 --device cpu --stream true", expect="interrupt", interrupt_when="{case}/int_stream")
    return cases


CASES = _cases()


# ------------------------------------------------------------------------------------------------ running


def run_case(case: Case, fixtures: dict[str, Path], timeout: float = 300, env: dict | None = None) -> Result:
    argv = [fill(arg, fixtures, case) for arg in case.argv]
    folder = Path(fill("{case}", fixtures, case))  # the working directory: relative outputs land here too
    folder.mkdir(parents=True, exist_ok=True)
    env = {**{k: v for k, v in os.environ.items() if k != "NBP_DEBUG"}, "PYTHONPATH": str(REPO), "NBP_OFFLINE": "1",
           **(env or {})}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nbp", *argv], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_interrupt)
    if case.expect == "interrupt":
        marker = Path(fill(case.interrupt_when, fixtures, case))
        deadline = time.time() + timeout
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # into the work, past the first files
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole process group
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
    # tqdm redraws with carriage returns; only what stays on screen counts
    stderr = "\n".join(line.rsplit("\r", 1)[-1] for line in stderr.splitlines())
    stderr = "\n".join(line for line in stderr.splitlines() if not _is_progress(line))
    return Result(case, proc.returncode, stderr, time.perf_counter() - started)


def _default_interrupt() -> None:
    # A runner started in the background (`cmd &`) inherits SIGINT ignored, and so would the command;
    # like a terminal, give it the default so that Ctrl-C reaches Python.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _is_progress(line: str) -> bool:
    """A tqdm bar line (the work that ran before the interrupt), not an error message."""
    return "it/s]" in line or "video/s]" in line or "batch/s]" in line or ("|" in line and "%" in line)


def run_all(cases: list[Case], fixtures: dict[str, Path], jobs: int = 2, report=None) -> list[Result]:
    """Every case's Result; `report(result)` is called as each one finishes."""
    report = report or (lambda result: None)
    ordinary = [c for c in cases if c.expect != "interrupt"]
    results = []
    with ThreadPoolExecutor(jobs) as pool:
        for result in pool.map(lambda c: run_case(c, fixtures), ordinary):
            report(result)
            results.append(result)
    # Interrupt cases run alone: their timing must not depend on the other processes.
    for case in cases:
        if case.expect == "interrupt":
            results.append(run_case(case, fixtures))
            report(results[-1])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="run only the cases whose name contains this (or, comma-separated, any of these)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--fixtures", type=Path, default=None, help="folder for the fixtures (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    args = parser.parse_args(argv)
    import tempfile

    folder = args.fixtures or Path(tempfile.mkdtemp(prefix="nbp-user-errors-"))
    fixtures = make_fixtures(folder)
    cases = [c for c in CASES if any(part in c.name for part in args.k.split(","))]

    def report(result: Result) -> None:
        problems = result.problems(fixtures)
        last = result.error_lines[-1] if result.error_lines else ""
        print(f"{'FAIL' if problems else 'ok  '} {result.case.name:50s} exit {result.code:3d} {result.seconds:5.1f}s  "
              f"{last[:160]}", flush=True)
        for problem in problems:
            print(f"       - {problem}", flush=True)

    results = run_all(cases, fixtures, args.jobs, report)
    failed = sum(bool(r.problems(fixtures)) for r in results)
    one_line = sum(1 for r in results if not r.problems(fixtures))
    tracebacks = sum("Traceback" in r.stderr for r in results)
    summary = {"cases": len(results), "one_line_right_exit": one_line, "failed": failed, "tracebacks": tracebacks}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps([{"name": r.case.name, "exit": r.code, "stderr": r.stderr,
                                          "problems": r.problems(fixtures)} for r in results], indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
