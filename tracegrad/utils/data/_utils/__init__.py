"""The DataLoader's machinery (``torch.utils.data._utils``): collation, fetching, workers."""
from . import collate, fetch, worker  # noqa: F401

MP_STATUS_CHECK_INTERVAL = 5.0  # seconds between checks that the other side is alive
