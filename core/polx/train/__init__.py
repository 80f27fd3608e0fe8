"""Training: the loop, optimizer and LR schedule, EMA, multi-process sync (checkpoints and run directories: polx.base)."""
