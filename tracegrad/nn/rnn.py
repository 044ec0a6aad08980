"""Recurrent layers (``torch.nn.RNN``, ``LSTM``, ``GRU`` and their cells).

Each layer is a composite over existing ops (``linear``, ``sigmoid``, ``tanh``, ``chunk``,
``stack``, ``cat``), so gradients come from the op table's VJP rules. The time loop of a
padded (not packed) sequence is a ``tracegrad.scan``: under ``tracegrad.compile`` it is
one ``scan`` equation, so the program does not grow with the sequence length. Parameter
names, shapes, gate order and the default initialisation (every parameter ~
U(-1/sqrt(hidden), 1/sqrt(hidden)) in registration order) are PyTorch's, so state_dicts
interchange with torch.

>>> import tracegrad as tg
>>> lstm = tg.nn.LSTM(4, 8, num_layers=2, batch_first=True)
>>> out, (h, c) = lstm(tg.randn(3, 5, 4))
>>> out.shape, h.shape, c.shape
(torch.Size([3, 5, 8]), torch.Size([2, 3, 8]), torch.Size([2, 3, 8]))
"""
from __future__ import annotations

import math
import numbers
import warnings

from .. import functions as T
from ..control_flow import scan
from ..tensor import Tensor
from . import functional as F, init
from .module import Module
from .parameter import Parameter
from .utils.rnn import PackedSequence

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]


# one time step of each cell; ``xw`` is the input's projection ``x @ w_ih.T + b_ih``
# (computed for the whole sequence at once in a layer, as ATen does on CPU)

def _rnn_step(xw, h, w_hh, b_hh, act):
    return act(T.add(F.linear(h, w_hh, b_hh), xw))


def _lstm_step(xw, h, c, w_hh, b_hh, w_hr):
    gates = T.add(F.linear(h, w_hh, b_hh), xw)
    i, f, g, o = T.chunk(gates, 4, 1)
    i, f, g, o = T.sigmoid(i), T.sigmoid(f), T.tanh(g), T.sigmoid(o)
    c = T.add(T.mul(f, c), T.mul(i, g))
    h = T.mul(o, T.tanh(c))
    if w_hr is not None:
        h = F.linear(h, w_hr)
    return h, c


def _gru_step(xw, h, w_hh, b_hh):
    ir, iz, in_ = T.chunk(xw, 3, 1)
    hr, hz, hn = T.chunk(F.linear(h, w_hh, b_hh), 3, 1)
    r = T.sigmoid(T.add(hr, ir))
    z = T.sigmoid(T.add(hz, iz))
    n = T.tanh(T.add(in_, T.mul(hn, r)))
    return T.add(T.mul(T.sub(h, n), z), n)


def _act(mode: str):
    return T.relu if mode == "RNN_RELU" else T.tanh


class RNNBase(Module):
    """What RNN, LSTM and GRU share: the parameters (``weight_ih_l{k}{_reverse}``, ...),
    their initialisation, argument checks, ``flatten_parameters`` (a no-op off cuDNN)."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        T._check_device(device)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        num_directions = 2 if bidirectional else 1
        if (not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1
                or isinstance(dropout, bool)):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=2)
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first should be of type bool, got: "
                            f"{type(batch_first).__name__}")
        if not isinstance(input_size, int):
            raise TypeError(f"input_size should be of type int, got: {type(input_size).__name__}")
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        if not isinstance(hidden_size, int):
            raise TypeError(f"hidden_size should be of type int, got: "
                            f"{type(hidden_size).__name__}")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable "
                             "projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        gate_size = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}.get(mode)
        if gate_size is None:
            raise ValueError("Unrecognized RNN mode: " + mode)
        gate_size *= hidden_size
        real_hidden = proj_size if proj_size > 0 else hidden_size
        self._flat_weights_names = []
        self._all_weights = []
        for layer in range(num_layers):
            for direction in range(num_directions):
                layer_in = input_size if layer == 0 else real_hidden * num_directions
                shapes = [(gate_size, layer_in), (gate_size, real_hidden)]
                names = ["weight_ih_l{}{}", "weight_hh_l{}{}"]
                if bias:
                    shapes += [(gate_size,), (gate_size,)]
                    names += ["bias_ih_l{}{}", "bias_hh_l{}{}"]
                if proj_size > 0:
                    shapes += [(proj_size, hidden_size)]
                    names += ["weight_hr_l{}{}"]
                suffix = "_reverse" if direction == 1 else ""
                names = [n.format(layer, suffix) for n in names]
                for name, shape in zip(names, shapes, strict=True):
                    setattr(self, name, Parameter(T.empty(*shape, dtype=dtype)))
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    @property
    def _flat_weights(self) -> list:
        return [getattr(self, n, None) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Parameter]]:
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """A no-op: PyTorch only repacks weights for cuDNN."""

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    # argument checks, with PyTorch's messages

    def check_input(self, input: Tensor, batch_sizes=None) -> None:
        wdtype = self._flat_weights[0].dtype
        if input.dtype != wdtype:
            raise ValueError(f"RNN input dtype ({input.dtype}) does not match weight dtype "
                             f"({wdtype}). Convert input: input.to({wdtype}), or convert "
                             f"model: model.to({input.dtype})")
        expected = 2 if batch_sizes is not None else 3
        if input.dim() != expected:
            raise RuntimeError(f"input must have {expected} dimensions, got {input.dim()}")
        if self.input_size != input.size(-1):
            raise RuntimeError("input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {input.size(-1)}")

    def get_expected_hidden_size(self, input: Tensor, batch_sizes=None) -> tuple[int, int, int]:
        mini_batch = self._mini_batch(input, batch_sizes)
        num_directions = 2 if self.bidirectional else 1
        size = self.proj_size if self.proj_size > 0 else self.hidden_size
        return (self.num_layers * num_directions, mini_batch, size)

    def _mini_batch(self, input: Tensor, batch_sizes) -> int:
        if batch_sizes is not None:
            return int(batch_sizes[0])
        return input.size(0) if self.batch_first else input.size(1)

    def check_hidden_size(self, hx: Tensor, expected: tuple,
                          msg: str = "Expected hidden size {}, got {}") -> None:
        if tuple(hx.size()) != tuple(expected):
            raise RuntimeError(msg.format(tuple(expected), list(hx.size())))

    def check_forward_args(self, input: Tensor, hidden: Tensor, batch_sizes=None) -> None:
        self.check_input(input, batch_sizes)
        self.check_hidden_size(hidden, self.get_expected_hidden_size(input, batch_sizes))

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.proj_size != 0:
            s += ", proj_size={proj_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        return s.format(**self.__dict__)

    # the layer stack

    def _weights(self, layer: int, direction: int):
        suffix = "_reverse" if direction == 1 else ""
        get = lambda n: getattr(self, f"{n}_l{layer}{suffix}", None)  # noqa: E731
        return (get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"),
                get("weight_hr"))

    def _run_direction(self, xs: Tensor, batch_sizes, hx: tuple, layer: int, direction: int):
        """One direction of one layer: (outputs, final state).

        ``xs`` is time-major (T, B, in) when ``batch_sizes`` is None, else a packed sequence's
        data (sum(batch_sizes), in); then the batch shrinks as sequences end, and each one's
        final state is taken at its own last step (ATen's PackedLayer / ReversedPackedLayer).
        """
        w_ih, w_hh, b_ih, b_hh, w_hr = self._weights(layer, direction)
        xw = F.linear(xs, w_ih, b_ih)  # the input projection of every step at once
        if batch_sizes is None:
            # one scan over time: eagerly the same steps and ops as a Python loop; compiled,
            # one ``scan`` equation whatever the length (NOTE: [Structured control flow])
            mode = self.mode

            def step(state, x):
                if mode == "LSTM":
                    state = _lstm_step(x, *state, w_hh, b_hh, w_hr)
                elif mode == "GRU":
                    state = (_gru_step(x, state[0], w_hh, b_hh),)
                else:
                    state = (_rnn_step(x, state[0], w_hh, b_hh, _act(mode)),)
                return state, state[0]

            state, out = scan(step, hx, xw, 0, reverse=direction == 1)
            return out, state
        if batch_sizes is None:
            steps, sizes = T.unbind(xw, 0), [xs.shape[1]] * xs.shape[0]
        else:
            steps, sizes = T.split(xw, batch_sizes, 0), batch_sizes
        order = range(len(steps)) if direction == 0 else range(len(steps) - 1, -1, -1)
        last = sizes[0] if direction == 0 else sizes[-1]
        state = hx if last == hx[0].shape[0] else tuple(s[:last] for s in hx)
        outs, done = [], []
        for t in order:
            bs = sizes[t]
            if bs < last:  # forward: sequences that ended keep their state
                done.append(tuple(s[bs:last] for s in state))
                state = tuple(s[:bs] for s in state)
            elif bs > last:  # reverse: sequences that start join with their initial state
                state = tuple(T.cat([s, s0[last:bs]], 0) for s, s0 in zip(state, hx,
                                                                          strict=True))
            last = bs
            if self.mode == "LSTM":
                state = _lstm_step(steps[t], *state, w_hh, b_hh, w_hr)
            elif self.mode == "GRU":
                state = (_gru_step(steps[t], state[0], w_hh, b_hh),)
            else:
                state = (_rnn_step(steps[t], state[0], w_hh, b_hh, _act(self.mode)),)
            outs.append(state[0])
        if done:
            parts = [state] + done[::-1]
            state = tuple(T.cat(list(p), 0) for p in zip(*parts, strict=True))
        if direction == 1:
            outs = outs[::-1]
        return (T.stack(outs, 0) if batch_sizes is None else T.cat(outs, 0)), state

    def _run(self, input: Tensor, hx: tuple, batch_sizes=None) -> tuple[Tensor, tuple]:
        """The stacked layers; ``hx`` holds (L*D, B, H) tensors; returns output and states."""
        packed = batch_sizes is not None
        x = T.transpose(input, 0, 1) if self.batch_first and not packed else input
        num_directions = 2 if self.bidirectional else 1
        finals = [[] for _ in hx]
        for layer in range(self.num_layers):
            outs = []
            for direction in range(num_directions):
                k = layer * num_directions + direction
                out, state = self._run_direction(x, batch_sizes, tuple(h[k] for h in hx),
                                                 layer, direction)
                outs.append(out)
                for acc, s in zip(finals, state, strict=True):
                    acc.append(s)
            x = outs[0] if num_directions == 1 else T.cat(outs, -1)
            if self.dropout != 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        if self.batch_first and not packed:  # ATen's LSTM and RNN/GRU transpose differently
            x = T.transpose(x, 0, 1, _name="TransposeBackward0" if self.mode == "LSTM"
                            else "TransposeBackward1")
        return x, tuple(T.stack(f, 0) for f in finals)

    def _packed(self, input: PackedSequence, hx, sizes: tuple):
        """A PackedSequence's data, batch sizes and initial states (in its sorted order)."""
        data, batch_sizes, sorted_indices, _ = input
        sizes_list = input._host_sizes()[0]
        num_directions = 2 if self.bidirectional else 1
        if hx is None:
            hx = tuple(T.zeros(self.num_layers * num_directions, sizes_list[0], n,
                               dtype=data.dtype) for n in sizes)
        else:
            hx = (hx,) if isinstance(hx, Tensor) else tuple(hx)
            if sorted_indices is not None:
                hx = tuple(T.index_select(h, 1, sorted_indices) for h in hx)
        return data, batch_sizes, sizes_list, hx

    @staticmethod
    def _repack(input: PackedSequence, output: Tensor) -> PackedSequence:
        out = PackedSequence(output, input.batch_sizes, input.sorted_indices,
                             input.unsorted_indices)
        out._host = input._host
        return out

    def _unsort(self, input: PackedSequence, states: tuple) -> tuple:
        if input.unsorted_indices is None:
            return states
        return tuple(T.index_select(s, 1, input.unsorted_indices) for s in states)

    def _batch_input(self, input: Tensor, name: str, word: str):
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected input to be a Tensor, got "
                            f"{type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D"
                             f"{word} instead")
        is_batched = input.dim() == 3
        batch_dim = 0 if self.batch_first else 1
        if not is_batched:
            input = T.unsqueeze(input, batch_dim)
        return input, is_batched, batch_dim

    def _zeros(self, input: Tensor, size: int) -> Tensor:
        batch = input.size(0) if self.batch_first else input.size(1)
        num_directions = 2 if self.bidirectional else 1
        return T.zeros(self.num_layers * num_directions, batch, size, dtype=input.dtype)


class _SingleStateRNN(RNNBase):
    """RNN and GRU: one hidden state ``hx`` of shape (L*D, B, H)."""

    _word = ""

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | None = None):
        if isinstance(input, PackedSequence):
            data, batch_sizes, sizes, (hx,) = self._packed(input, hx, (self.hidden_size,))
            self.check_forward_args(data, hx, sizes)
            output, hidden = self._run(data, (hx,), sizes)
            return self._repack(input, output), self._unsort(input, hidden)[0]
        name = "RNN" if self.mode.startswith("RNN") else self.mode
        input, is_batched, batch_dim = self._batch_input(input, name, self._word)
        if hx is not None:
            if not is_batched:
                if hx.dim() != 2:
                    raise RuntimeError("For unbatched 2-D input, hx should also be 2-D but got "
                                       f"{hx.dim()}-D tensor")
                hx = T.unsqueeze(hx, 1)
            elif hx.dim() != 3:
                raise RuntimeError("For batched 3-D input, hx should also be 3-D but got "
                                   f"{hx.dim()}-D tensor")
        else:
            hx = self._zeros(input, self.hidden_size)
        self.check_forward_args(input, hx)
        output, (hidden,) = self._run(input, (hx,))
        if not is_batched:
            output = T.squeeze(output, batch_dim)
            hidden = T.squeeze(hidden, 1)
        return output, hidden


class RNN(_SingleStateRNN):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu.

    Arguments as ``torch.nn.RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh',
    bias=True, batch_first=False, dropout=0.0, bidirectional=False)``.
    """

    _word = " tensor"

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self.nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if self.nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif self.nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' "
                             "or 'relu'.")
        super().__init__(mode, *args, **kwargs)


class GRU(_SingleStateRNN):
    """Gated recurrent unit; gates r, z, n in that order along the weights' first dim, with
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) and h' = (1 - z) * n + z * h."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)


class LSTM(RNNBase):
    """Long short-term memory; gates i, f, g, o in that order along the weights' first dim.

    With ``proj_size > 0`` the hidden state is projected by ``weight_hr_l{k}`` (proj_size,
    hidden_size) after each step. ``forward(input, (h0, c0))`` returns
    ``output, (h_n, c_n)``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)

    def get_expected_cell_size(self, input: Tensor, batch_sizes=None) -> tuple[int, int, int]:
        mini_batch = self._mini_batch(input, batch_sizes)
        num_directions = 2 if self.bidirectional else 1
        return (self.num_layers * num_directions, mini_batch, self.hidden_size)

    def check_forward_args(self, input: Tensor, hidden: tuple, batch_sizes=None) -> None:
        self.check_input(input, batch_sizes)
        self.check_hidden_size(hidden[0], self.get_expected_hidden_size(input, batch_sizes),
                               "Expected hidden[0] size {}, got {}")
        self.check_hidden_size(hidden[1], self.get_expected_cell_size(input, batch_sizes),
                               "Expected hidden[1] size {}, got {}")

    def forward(self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None):
        if isinstance(input, PackedSequence):
            real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
            data, batch_sizes, sizes, hx = self._packed(input, hx,
                                                        (real_hidden, self.hidden_size))
            self.check_forward_args(data, hx, sizes)
            output, states = self._run(data, hx, sizes)
            return self._repack(input, output), self._unsort(input, states)
        input, is_batched, batch_dim = self._batch_input(input, "LSTM", "")
        if hx is None:
            real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
            hx = (self._zeros(input, real_hidden), self._zeros(input, self.hidden_size))
        else:
            if is_batched:
                if hx[0].dim() != 3 or hx[1].dim() != 3:
                    raise RuntimeError("For batched 3-D input, hx and cx should also be 3-D but "
                                       f"got ({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
            else:
                if hx[0].dim() != 2 or hx[1].dim() != 2:
                    raise RuntimeError("For unbatched 2-D input, hx and cx should also be 2-D "
                                       f"but got ({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
                hx = (T.unsqueeze(hx[0], 1), T.unsqueeze(hx[1], 1))
        self.check_forward_args(input, hx)
        output, (h, c) = self._run(input, tuple(hx))
        if not is_batched:
            output = T.squeeze(output, batch_dim)
            h, c = T.squeeze(h, 1), T.squeeze(c, 1)
        return output, (h, c)


class RNNCellBase(Module):
    """What the cells share: ``weight_ih`` (chunks*H, in), ``weight_hh`` (chunks*H, H),
    ``bias_ih``/``bias_hh`` (chunks*H), all ~ U(-1/sqrt(H), 1/sqrt(H))."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device=None, dtype=None):
        super().__init__()
        T._check_device(device)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(T.empty(num_chunks * hidden_size, input_size, dtype=dtype))
        self.weight_hh = Parameter(T.empty(num_chunks * hidden_size, hidden_size, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(T.empty(num_chunks * hidden_size, dtype=dtype))
            self.bias_hh = Parameter(T.empty(num_chunks * hidden_size, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if "bias" in self.__dict__ and self.bias is not True:
            s += ", bias={bias}"
        if "nonlinearity" in self.__dict__ and self.nonlinearity != "tanh":
            s += ", nonlinearity={nonlinearity}"
        return s.format(**self.__dict__)

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def _prepare(self, input: Tensor, hx, name: str):
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D "
                             "instead")
        if isinstance(hx, Tensor) and hx.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        is_batched = input.dim() == 2
        if not is_batched:
            input = T.unsqueeze(input, 0)
        return input, is_batched

    def _check(self, input: Tensor, hiddens: tuple) -> None:
        """ATen's check_rnn_cell_forward_input/_hidden, then its matmul dtype check."""
        if input.size(1) != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.size(1)} "
                               f"expected {self.input_size}")
        for k, hx in enumerate(hiddens):
            if input.size(0) != hx.size(0):
                raise RuntimeError(f"Input batch size {input.size(0)} doesn't match hidden{k} "
                                   f"batch size {hx.size(0)}")
            if hx.size(1) != self.hidden_size:
                raise RuntimeError(f"hidden{k} has inconsistent hidden_size: got {hx.size(1)}, "
                                   f"expected {self.hidden_size}")
        wdtype = self.weight_ih.dtype
        for t in (hiddens[0], input):  # ATen computes the hidden projection first
            if t.dtype != wdtype:
                raise RuntimeError("mat1 and mat2 must have the same dtype, but got "
                                   f"{T._TYPE_WORD[t.dtype.name]} and "
                                   f"{T._TYPE_WORD[wdtype.name]}")

    def _xw(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight_ih, self.bias_ih)

    def _zeros(self, input: Tensor) -> Tensor:
        return T.zeros(input.size(0), self.hidden_size, dtype=input.dtype)


class RNNCell(RNNCellBase):
    """One Elman step: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device,
                         dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        input, is_batched = self._prepare(input, hx, "RNNCell")
        hx = self._zeros(input) if hx is None else (hx if is_batched else T.unsqueeze(hx, 0))
        if self.nonlinearity == "tanh":
            act = T.tanh
        elif self.nonlinearity == "relu":
            act = T.relu
        else:
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        self._check(input, (hx,))
        ret = _rnn_step(self._xw(input), hx, self.weight_hh, self.bias_hh, act)
        return ret if is_batched else T.squeeze(ret, 0)


class LSTMCell(RNNCellBase):
    """One LSTM step; ``forward(input, (h, c))`` returns ``(h', c')``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device,
                         dtype=dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D "
                             "instead")
        if hx is not None:
            for idx, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got "
                                     f"{value.dim()}D instead")
        input, is_batched = self._prepare(input, hx, "LSTMCell")
        if hx is None:
            zeros = self._zeros(input)
            hx = (zeros, zeros)
        elif not is_batched:
            hx = (T.unsqueeze(hx[0], 0), T.unsqueeze(hx[1], 0))
        self._check(input, tuple(hx))
        h, c = _lstm_step(self._xw(input), hx[0], hx[1], self.weight_hh, self.bias_hh, None)
        return (h, c) if is_batched else (T.squeeze(h, 0), T.squeeze(c, 0))


class GRUCell(RNNCellBase):
    """One GRU step (gates r, z, n; n = tanh(W_in x + b_in + r * (W_hn h + b_hn)))."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device,
                         dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        input, is_batched = self._prepare(input, hx, "GRUCell")
        hx = self._zeros(input) if hx is None else (hx if is_batched else T.unsqueeze(hx, 0))
        self._check(input, (hx,))
        ret = _gru_step(self._xw(input), hx, self.weight_hh, self.bias_hh)
        return ret if is_batched else T.squeeze(ret, 0)
