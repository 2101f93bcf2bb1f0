"""Reading finished runs: metric tables, run comparison, training-curve and modulation pictures."""
