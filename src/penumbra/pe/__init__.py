"""Private Evolution, modality-agnostic: voting, mechanism, population table, loop."""
