"""The bottom layer: errors, atomic writes, configs, run folders, splits, registries.
No torch here."""
