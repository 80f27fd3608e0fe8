"""Training: the loop, optimizer and LR schedule, EMA, atomic checkpoints, multi-process sync."""
