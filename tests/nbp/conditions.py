"""Model conditions for the tiny random transformers of the sampling tests."""

import torch


def condition_for(model, batch=2):
    """What the model's prefix takes: class ids, random context tokens (fixed seed) or None."""
    config = model.config
    if config.condition == "class":
        return torch.arange(batch) % config.num_classes
    if config.condition == "frames":
        return torch.randint(0, config.vocab_size, (batch, config.prefix_len), generator=torch.Generator().manual_seed(5))
    return None
