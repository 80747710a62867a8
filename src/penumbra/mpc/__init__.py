"""Several data holders, one synthetic dataset: Prio3 secure aggregation of PE votes."""

# Defaults of `penumbra mpc init` (here, so that the CLI needs no heavy import to show them).
DEFAULT_MAX_EPSILON = 10.0  # the deployment's budget: ε of all releases, every run together
DEFAULT_MAX_CANDIDATES = 10_000  # most candidates one round may have
