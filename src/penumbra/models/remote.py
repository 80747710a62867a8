"""Which models would send private data off this machine, and refusing them unless allowed.

A captioner, image embedder or text embedder that reads private data runs inside the data
holder's boundary (DESIGN.md invariant 1). builtin: and hf: models run in this process; an
openai: model runs wherever its base URL points. Only a loopback URL (127.0.0.0/8, ::1 or the
name `localhost`) counts as this machine: nothing is resolved over the network, so any other
host name, and any other address, is remote. Sending private data to a remote endpoint needs
`privacy.allow_remote_private: true`, which the caller records in the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping

from penumbra.config import RunConfig
from penumbra.errors import ConfigError
from penumbra.models.loopback import is_loopback_host, is_loopback_url

OPT_IN = "privacy.allow_remote_private: true"

# what each role receives when it reads private data
RECEIVES = {
    "captioner": "private images",
    "image_embedder": "private images",
    "text_embedder": "private texts or the captions of private images",
}


def private_roles(config: RunConfig) -> list[str]:
    """The model roles (fields of `models`) that receive private data under `config`."""
    if config.modality == "text":
        return ["text_embedder"]
    if config.voting == "image":
        return ["image_embedder"]
    return ["captioner", "text_embedder"]


def base_url(uri: str) -> str | None:
    """The base URL an openai: model URI sends requests to; None for in-process models."""
    if not uri.startswith("openai:"):
        return None
    from penumbra.models.openai_api import parse_openai_uri

    return parse_openai_uri(uri.removeprefix("openai:"))[1]


def remote_endpoints(uris: Mapping[str, str]) -> list[str]:
    """`FIELD: URI` for each of {field: uri} whose model is not on this machine."""
    found = []
    for field, uri in uris.items():
        url = base_url(uri)
        if url is not None and not is_loopback_url(url):
            found.append(f"{field}: {uri}")
    return found


def require_local(
    uris: Mapping[str, str],
    *,
    allow: bool,
    opt_in: str = OPT_IN,
    receives: str | None = None,
) -> list[str]:
    """Refuse (ConfigError, one line per model) the models of {field: uri} that would receive
    private data at a remote URL, unless `allow`; returns `FIELD: URI` of the remote ones
    (empty when all are local). `field` names where the user set it (`models.captioner`,
    `--embedder`); `opt_in` is how to allow it."""
    remote = remote_endpoints(uris)
    if remote and not allow:
        lines = []
        for field, uri in uris.items():
            url = base_url(uri)
            if url is None or is_loopback_url(url):
                continue
            what = receives or RECEIVES.get(field.rpartition(".")[2], "private data")
            lines.append(
                f"{field}: {uri} would send {what} to {url}, which is not this machine "
                f"(only loopback URLs are); use a local model, or set {opt_in} to allow it"
            )
        raise ConfigError(*lines)
    return remote


def _private_models(config: RunConfig) -> dict[str, str]:
    return {f"models.{role}": getattr(config.models, role) for role in private_roles(config)}


def check_private_endpoints(config: RunConfig) -> list[str]:
    """`models.ROLE: URI` for each model that would receive private data off this machine."""
    return remote_endpoints(_private_models(config))


def remote_cluster(config: RunConfig) -> str | None:
    """The Ray address a run would send private data to, unless it is provably this machine:
    `local` (a private instance penumbra starts) or a loopback HOST:PORT. `auto` may find any
    cluster, so it counts as remote."""
    compute = config.compute
    if compute.engine != "ray" or cluster_is_local(compute.address):
        return None
    return compute.address


def cluster_is_local(address: str) -> bool:
    """A Ray address provably on this machine: `local`, or a loopback HOST:PORT."""
    if address == "local":
        return True
    if address == "auto":
        return False
    return is_loopback_host(address.removeprefix("ray://").rpartition(":")[0])


def require_local_private(config: RunConfig) -> list[str]:
    """Raise ConfigError when a model receiving private data is remote, or the run would ship
    private data to a Ray cluster off this machine, and the config does not opt in
    (`privacy.allow_remote_private: true`); otherwise return those endpoints (empty when all
    are local) for the caller to record in the ledger."""
    opt_in = f"{OPT_IN} (recorded in the ledger)"
    allow = config.privacy.allow_remote_private
    remote = require_local(_private_models(config), allow=allow, opt_in=opt_in)
    cluster = remote_cluster(config)
    if cluster is None:
        return remote
    if not allow:
        what = RECEIVES.get(private_roles(config)[0], "private data")
        raise ConfigError(
            f"compute.address: {cluster} would send {what} and their embeddings to a Ray "
            "cluster that is not provably this machine (only local and loopback HOST:PORT "
            f"are); use --ray local or --ray 127.0.0.1:PORT, or set {opt_in} to allow it"
        )
    return [*remote, f"compute.address: {cluster}"]
