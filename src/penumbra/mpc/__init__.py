"""Several data holders, one synthetic dataset: Prio3 secure aggregation of PE votes."""
