"""Examples: user training functions (`training: {function: ...}` in a space file) and a
strategy (`hillclimb`, the smallest complete one)."""
