"""Example user training functions (`training: {function: ...}` in a space file)."""
