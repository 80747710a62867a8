"""Kept only for the scripts under bench/ that import `dgauss_sigma` from here.

The accountant of secure aggregation is penumbra.privacy.zcdp, below every room that uses it
(the aggregators, the coordinator and `penumbra verify`); everything else imports it there."""

from penumbra.privacy.zcdp import dgauss_sigma

__all__ = ["dgauss_sigma"]
