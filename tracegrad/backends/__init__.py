"""``torch.backends``: the flags scripts set at the top (``cudnn.benchmark = True``,
``cuda.matmul.allow_tf32 = True``), settable, with a CPU-only PyTorch's defaults. They
change nothing in tracegrad's results: there is no cuDNN, MPS or oneDNN here (NumPy on the
host, XLA in compiled functions); ``is_available()`` answers as a CPU-only PyTorch would.
"""
from . import cuda, cudnn, mkl, mkldnn, mps, openmp, opt_einsum

__all__ = ["cuda", "cudnn", "mkl", "mkldnn", "mps", "openmp", "opt_einsum"]
