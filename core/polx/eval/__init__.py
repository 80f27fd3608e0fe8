"""Evaluation: rollouts over N env processes, paper metrics, trajectory PNGs."""
