# Seed 004: "Learning PyTorch with Examples" - Tensors and autograd, and a custom
# autograd Function (MyReLU). torch.randn data come from a fixed numpy RandomState.
# The TensorFlow section is not PyTorch code and is left out.
import torch

import numpy as np

rs = np.random.RandomState(4)

dtype = torch.float
device = torch.device("cpu")
# device = torch.device("cuda:0") # Uncomment this to run on GPU

# N is batch size; D_in is input dimension;
# H is hidden dimension; D_out is output dimension.
N, D_in, H, D_out = 64, 1000, 100, 10

# Create random Tensors to hold input and outputs.
x = torch.tensor(rs.randn(N, D_in).astype(np.float32), device=device, dtype=dtype)
y = torch.tensor(rs.randn(N, D_out).astype(np.float32), device=device, dtype=dtype)

# Create random Tensors for weights.
w1 = torch.tensor(rs.randn(D_in, H).astype(np.float32), device=device, dtype=dtype, requires_grad=True)
w2 = torch.tensor(rs.randn(H, D_out).astype(np.float32), device=device, dtype=dtype, requires_grad=True)

learning_rate = 1e-6
for t in range(500):
    y_pred = x.mm(w1).clamp(min=0).mm(w2)
    loss = (y_pred - y).pow(2).sum()
    print(t, loss.item())
    loss.backward()
    with torch.no_grad():
        w1 -= learning_rate * w1.grad
        w2 -= learning_rate * w2.grad

        # Manually zero the gradients after updating weights
        w1.grad.zero_()
        w2.grad.zero_()


class MyReLU(torch.autograd.Function):
    """
    We can implement our own custom autograd Functions by subclassing
    torch.autograd.Function and implementing the forward and backward passes
    which operate on Tensors.
    """

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input < 0] = 0
        return grad_input


# Create random Tensors to hold input and outputs.
x = torch.tensor(rs.randn(N, D_in).astype(np.float32), device=device, dtype=dtype)
y = torch.tensor(rs.randn(N, D_out).astype(np.float32), device=device, dtype=dtype)

# Create random Tensors for weights.
w1 = torch.tensor(rs.randn(D_in, H).astype(np.float32), device=device, dtype=dtype, requires_grad=True)
w2 = torch.tensor(rs.randn(H, D_out).astype(np.float32), device=device, dtype=dtype, requires_grad=True)

learning_rate = 1e-6
for t in range(500):
    # To apply our Function, we use Function.apply method. We alias this as 'relu'.
    relu = MyReLU.apply

    # Forward pass: compute predicted y using operations; we compute
    # ReLU using our custom autograd operation.
    y_pred = relu(x.mm(w1)).mm(w2)

    # Compute and print loss
    loss = (y_pred - y).pow(2).sum()
    print(t, loss.item())

    # Use autograd to compute the backward pass.
    loss.backward()

    # Update weights using gradient descent
    with torch.no_grad():
        w1 -= learning_rate * w1.grad
        w2 -= learning_rate * w2.grad

        # Manually zero the gradients after updating weights
        w1.grad.zero_()
        w2.grad.zero_()
