"""The benchmark's networks, written here from their papers and configs, loading the released checkpoints."""
