# Seed 002 (first half): "Automatic differentiation with torch.autograd" - a one-layer
# net with binary_cross_entropy_with_logits and one SGD step. Needs tracegrad.nn and
# tracegrad.optim. torch.randn weights come from a fixed numpy RandomState.
import torch

import numpy as np

rs = np.random.RandomState(2)

x = torch.ones(5)  # input tensor
y = torch.zeros(3)  # expected output
print(f"x: {x},\ny: {y}")

w = torch.tensor(rs.randn(5, 3).astype(np.float32), requires_grad=True)  # torch.randn(5, 3, requires_grad=True)
b = torch.tensor(rs.randn(3).astype(np.float32), requires_grad=True)  # torch.randn(3, requires_grad=True)
print(f"w: {w},\nb: {b}")

# 前向传播
z = torch.matmul(x, w)+b
print(f"z: {z}")
# 计算损失
loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
print(f"loss: {loss}")

# 反向传播，计算梯度
loss.backward()
print(f"w.grad: {w.grad}")
print(f"b.grad: {b.grad}")

optimizer = torch.optim.SGD((w, b), lr=0.01)
# 更新参数
optimizer.step()
print(f"w: {w}")
print(f"b: {b}")

w.grad.zero_()
print(b.grad.zero_())
