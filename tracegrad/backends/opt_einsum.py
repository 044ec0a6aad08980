"""``torch.backends.opt_einsum``: the flags, settable (tracegrad's einsum plans are its own)."""

enabled = True
strategy = "auto"


def is_available() -> bool:
    return True

