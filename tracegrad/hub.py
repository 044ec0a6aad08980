"""``torch.hub``: loading models from the network is not supported (tracegrad needs no
network, and ships no pretrained weights). ``get_dir``/``set_dir`` work."""
from __future__ import annotations

import os

__all__ = ["load", "list", "help", "load_state_dict_from_url", "download_url_to_file",
           "get_dir", "set_dir"]

_dir = None


def _no_network(*args, **kwargs):
    raise RuntimeError("tracegrad.hub cannot download models: it has no network access and no "
                       "model zoo. Build the model in code and load saved weights with "
                       "model.load_state_dict(...)")


load = list = help = load_state_dict_from_url = download_url_to_file = _no_network  # noqa: A001


def get_dir() -> str:
    if _dir is not None:
        return _dir
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return os.path.join(home, "hub")


def set_dir(d) -> None:
    global _dir
    _dir = os.path.expanduser(str(d))
