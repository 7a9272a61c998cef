"""Training: strategies (end-to-end, checkpointed, invertible, greedy), loop, checkpoints."""
