"""Where each part's weights and configs come from: a config value that may be a hub name, a URL or a local
path, turned into files or a clear error naming the config key and the fix.

LAVIS hard-codes hub names and a weight URL inside Blip2Base (blip2.py:32,48,54-56,72) and create_eva_vit_g
(eva_vit.py:429-431); without network they fail deep inside transformers or torch.hub after long retries.
"""

import contextlib
import os
import socket
from urllib.parse import urlparse

import torch

from lavis_gated.checkpoint_io import load_checkpoint, local_checkpoint_path

PACKAGE_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


class SourceUnavailableError(OSError):
    """A weights/config source (hub name, URL or path) could not be loaded."""


@contextlib.contextmanager
def loading_source(key, value):
    """Re-raise a failure to load config value `key` (= `value`) as an error that says how to fix it.

    Without network, hub names and URLs fail deep inside transformers or torch.hub; the user needs to
    know which config value it was and how to point it at local files instead.
    """
    try:
        yield
    except SourceUnavailableError:
        raise
    except OSError as error:
        value = str(value)
        if value.startswith(("http://", "https://")):
            cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(value).path))
            fix = (
                f"download it where there is network and set {key} to the local file's path, "
                f"or place it at {cached} (LAVIS's download cache)"
            )
        elif os.path.isabs(value) or value.startswith("."):
            fix = f"{value} must be an existing local path"
        else:
            fix = (
                f"set {key} to a local directory holding a copy of that Hugging Face repository "
                "(save_pretrained or a snapshot), or fill the Hugging Face cache and set HF_HUB_OFFLINE=1"
            )
        raise SourceUnavailableError(
            f"{key}: could not load {value!r} ({type(error).__name__}: {error}). "
            f"It is not a local path, and fetching it failed; {fix}."
        ) from error


def from_pretrained(load, source, **kwargs):
    """`load(source, **kwargs)` for a transformers from_pretrained: a local folder as it is; a hub name
    from the local Hugging Face cache if it is there, else fetched, but only once the hub is known to
    answer (unreachable, huggingface_hub retries every file for about 25 s before failing)."""
    if os.path.isdir(source):
        return load(source, **kwargs)
    try:
        return load(source, local_files_only=True, **kwargs)
    except OSError:
        pass
    _require_hub()
    return load(source, **kwargs)


def hub_offline():
    """Whether transformers or huggingface_hub is in offline mode: their own reading of TRANSFORMERS_OFFLINE
    and HF_HUB_OFFLINE (1, on, yes, true in any case; "0" or "false" is online), taken as they were
    imported, so exactly when the loaders themselves will not fetch."""
    from huggingface_hub import constants
    from transformers.utils import is_offline_mode

    return is_offline_mode() or constants.HF_HUB_OFFLINE


def _require_hub(timeout=5.0):
    """Raise OSError at once if the Hugging Face hub cannot be reached (no probe behind a proxy)."""
    if hub_offline():
        raise OSError("offline mode is set (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE) and it is not in the cache")
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise OSError(f"{endpoint.hostname} is unreachable ({error})") from error


def resolve_source(value):
    """A local path if `value` names one (as given, or relative to the package's configs folder);
    otherwise `value` unchanged (a hub name or URL)."""
    if value is None:
        return None
    value = str(value)
    if os.path.exists(value):
        return os.path.abspath(value)
    packaged = os.path.join(PACKAGE_CONFIG_DIR, value)
    if os.path.exists(packaged):
        return packaged
    return value


@contextlib.contextmanager
def seeded(seed):
    """Draw random initialisations from `seed`, leaving the global RNG as it was.

    Frozen parts built with random weights are not saved in checkpoints (LAVIS drops frozen parameters),
    so they must come out identical in every process that rebuilds the model.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def load_weights_file(url_or_path):
    """Tensors from a local file or a URL (downloaded through LAVIS's cache), never executing code."""
    source = local_checkpoint_path(resolve_source(url_or_path))
    if not os.path.isfile(source):
        raise SourceUnavailableError(
            f"weights file not found: {url_or_path!r} (give a URL or an existing local path)"
        )
    return load_checkpoint(source)
