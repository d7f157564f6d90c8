"""One tokenizer loader and one classInd.txt reader serve every command."""

from pathlib import Path

import pytest

from nbp.cli import main


def test_every_command_loads_tokenizers_the_same_way():
    from lightning_modules import token_data  # noqa: F401  (imports it lazily; the name is checked below)
    from nbp.commands import eval_recon, sample, tokenize
    from nbp.sampling import load_tokenizer

    assert sample.load_tokenizer is tokenize.load_tokenizer is eval_recon.load_tokenizer is load_tokenizer
    assert "from nbp.sampling import load_tokenizer" in Path(token_data.__file__).read_text()


def test_a_missing_tokenizer_is_one_error_line(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert main(["tokenize", "--data.kind", "synthetic", "--tokenizer", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == f"nbp: error: --tokenizer {missing}: no such file; pass a file written by the tokenizer " \
                  "(e.g. runs/tokenizer_synthetic/tokenizer.pt)\n"


def test_nbp_sample_reads_class_index_files_strictly(tmp_path, capsys):
    from nbp.commands.sample import class_names_for
    from nbp.config import NBPConfig

    config = NBPConfig(vocab_size=16, grid=(1, 2, 2), block=(1, 1, 2), num_classes=2, n_layer=1, n_head=1, n_embd=8)
    good = tmp_path / "classInd.txt"
    good.write_text("2 Beta\n1 Alpha\n")
    assert class_names_for(config, str(good)) == ["Alpha", "Beta"]
    bad = tmp_path / "bad.txt"
    bad.write_text("1 Alpha\n3 Gamma\n")  # a gap: the dataset reader refuses it, so must nbp sample
    with pytest.raises(Exception, match="without gaps"):
        class_names_for(config, str(bad))
