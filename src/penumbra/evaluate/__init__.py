"""Fidelity metrics and empirical privacy audits."""
