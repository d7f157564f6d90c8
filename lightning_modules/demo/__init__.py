"""`nbp demo`: the whole pipeline on the synthetic dataset, in one place.

cli (the command and its stages), runner (stage folders, reuse, budgets), train (time-budgeted
training runs), lanes (side-by-side training processes), evaluate (samples, frame prediction and
their scores), judges (what a synthetic frame shows: objects, colours, centres).
"""
