"""Seeded ablations: the harness that trains each variant per seed, the statistics, the report and plot."""
