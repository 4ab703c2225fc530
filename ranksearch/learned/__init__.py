"""Ranks learned in one training run: gates on rank slices, pruning, and the training recipe."""
