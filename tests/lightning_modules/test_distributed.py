"""Real multi-process training on CPU (gloo): DDP ranks agree with each other and with one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lightning_modules.launch import (
    assert_same_weights,
    fit_in_process,
    free_port,
    load_weights,
    popen,
    run_subprocess,
    toy_config,
    torchrun_command,
    write_config,
)

STEPS = 5
GLOBAL_BATCH = 8


@pytest.fixture(scope="module")
def one_process_reference(tmp_path_factory) -> Path:
    """Weights after STEPS steps of one process with the whole global batch."""
    root = tmp_path_factory.mktemp("one_process")
    cfg = toy_config(root, max_steps=STEPS, batch_size=GLOBAL_BATCH)
    assert fit_in_process(write_config(root / "c.yaml", cfg)) == 0
    return root / "dump"


def test_two_process_ddp_matches_one_process(tmp_path, one_process_reference):
    cfg = toy_config(tmp_path, max_steps=STEPS, batch_size=GLOBAL_BATCH // 2, devices=2, strategy="ddp")
    out = run_subprocess(torchrun_command(write_config(tmp_path / "c.yaml", cfg), nproc=2))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    rank0, rank1 = load_weights(tmp_path / "dump", 0), load_weights(tmp_path / "dump", 1)
    assert_same_weights(rank0, rank1)  # DDP keeps replicas bit-identical
    # the same global batch of the same samples: equal to one process up to fp32 summation order
    assert_same_weights(rank0, load_weights(one_process_reference), atol=1e-5)


def test_two_node_run_on_one_machine(tmp_path, one_process_reference):
    """`torchrun --nnodes 2 --nproc-per-node 1` twice, rendezvous on 127.0.0.1, as on two hosts."""
    cfg = toy_config(tmp_path, max_steps=STEPS, batch_size=GLOBAL_BATCH // 2, num_nodes=2, strategy="ddp")
    config_path = write_config(tmp_path / "c.yaml", cfg)
    port = free_port()
    nodes = [popen(torchrun_command(config_path, nnodes=2, node_rank=rank, port=port)) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-4000:]
    rank0 = load_weights(tmp_path / "dump", 0)
    assert_same_weights(rank0, load_weights(tmp_path / "dump", 1))
    assert_same_weights(rank0, load_weights(one_process_reference), atol=1e-5)
    # one log stream: only global rank 0 reports the run
    assert sum(output.count("`Trainer.fit` stopped") for output in outputs) == 1
