# Seed 003: "PyTorch's autograd" (Chinese blog): computation graphs, is_leaf, grad_fn,
# gradient weights, autograd.grad with create_graph, and two-layer nets trained by
# hand-written backprop and by autograd. The blog's code lines were run together;
# here they are one statement a line. torch.randn data come from a fixed numpy
# RandomState. Lines the blog would crash on are wrapped in try/except.
import torch

import numpy as np

rs = np.random.RandomState(3)

w = torch.tensor([1.], requires_grad=True)
x = torch.tensor([2.], requires_grad=True)
a = torch.add(w, x)
b = torch.add(w, 1)
y = torch.mul(a, b)
y.backward()
print(w.grad)

print("is_leaf:\n", w.is_leaf, x.is_leaf, a.is_leaf, b.is_leaf, y.is_leaf)
print("gradient:\n", w.grad, x.grad, a.grad, b.grad, y.grad)
print("grad_fn:\n", w.grad_fn, x.grad_fn, a.grad_fn, b.grad_fn, y.grad_fn)

w = torch.tensor([1.], requires_grad=True)
x = torch.tensor([2.], requires_grad=True)
a = torch.add(w, x)
b = torch.add(w, 1)
y = torch.mul(a ,b)
y1 = torch.add(a, b) # dy1/dw = 2
loss = torch.cat([y, y1], dim=0)
grad_tensors = torch.tensor([1, 1])
loss.backward(gradient=grad_tensors)
print(w.grad)

grad_tensors = torch.tensor([1, 2])
try:
    loss.backward(gradient=grad_tensors)
except RuntimeError as e:
    print(type(e).__name__, "second time" in str(e))
print(w.grad)

# x需要设置requires_grad=True才可以后续求导
x = torch.tensor([3.], requires_grad=True)
y = torch.pow(x, 2)
# 创建导数计算图,用于高阶求导,即后续可以求二阶导数
grad_1 = torch.autograd.grad(y, x, create_graph=True)
print(grad_1)
# 求2阶导数
grad_2 = torch.autograd.grad(grad_1[0], x)
print(grad_2)

w.grad.zero_()
print(w.grad)

x = torch.ones(2, 2, requires_grad=True)
print(x)
y = x + 2
print(y)
print(x.grad_fn) # None
print(y.grad_fn) # y 作为操作的结果被创建,所以它有 grad_fn None

z = y*y*3
out = z.mean()
print(z)
print(out)
print(out.backward()) # 这里是没有返回值的
print(x.grad) # 需要先backward,才能得到x的grad

# Two-layer net, backprop by hand
dtype = torch.float
device = torch.device("cpu")
# N是批量大小,D_in是输入维度,H是隐藏层维度,D_out是输出维度
N, D_in, H, D_out = 64, 1000, 100, 10
# 创建随机输入和输出数据
x = torch.tensor(rs.randn(N, D_in).astype(np.float32), device=device, dtype=dtype)
y = torch.tensor(rs.randn(N, D_out).astype(np.float32), device=device, dtype=dtype)
# 随机初始化权重
w1 = torch.tensor(rs.randn(D_in, H).astype(np.float32), device=device, dtype=dtype)
w2 = torch.tensor(rs.randn(H, D_out).astype(np.float32), device=device, dtype=dtype)
learning_rate = 1e-6
for t in range(500):
    # 前向传递:计算预测y
    h = x.mm(w1) # mm表示tensor相乘
    # 将输入input张量的每个元素夹紧到区间[min, max]
    h_relu = h.clamp(min=0)
    y_pred = h_relu.mm(w2)
    # 计算和打印损失
    loss = (y_pred - y).pow(2).sum().item() # 求平方和
    print(t, loss)
    # Backprop计算w1和w2相对于损耗的梯度
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.t().mm(grad_y_pred)
    grad_h_relu = grad_y_pred.mm(w2.t())
    grad_h = grad_h_relu.clone()
    grad_h[h < 0] = 0
    grad_w1 = x.t().mm(grad_h)
    # 使用梯度下降更新权重
    w1 -= learning_rate * grad_w1
    w2 -= learning_rate * grad_w2

# The same net with autograd
x = torch.tensor(rs.randn(N, D_in).astype(np.float32), device=device, dtype=dtype)
y = torch.tensor(rs.randn(N, D_out).astype(np.float32), device=device, dtype=dtype)
w1 = torch.tensor(rs.randn(D_in, H).astype(np.float32), device=device, dtype=dtype, requires_grad=True)
w2 = torch.tensor(rs.randn(H, D_out).astype(np.float32), device=device, dtype=dtype, requires_grad=True)
learning_rate = 1e-6
for t in range(500):
    # 前向传播:使用tensors上的操作计算预测值y
    y_pred = x.mm(w1).clamp(min=0).mm(w2)
    # loss.item() 得到这个张量对应的python数值
    loss = (y_pred - y).pow(2).sum()
    print(t, loss.item())
    # 使用autograd计算反向传播
    loss.backward()
    # 使用梯度下降更新权重
    with torch.no_grad():
        w1 -= learning_rate * w1.grad
        w2 -= learning_rate * w2.grad
        # 反向传播后手动将梯度设置为零
        w1.grad.zero_()
        w2.grad.zero_()
