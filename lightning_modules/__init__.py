"""Lightning glue: LightningModules, DataModules, callbacks and the `nbp train` CLI.

The only package that imports Lightning; `nbp` and `tokenizer` stay plain PyTorch.
"""
