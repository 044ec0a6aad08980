# Seed 000: "The fundamentals of autograd" (torch tutorial, Chinese notes).
# Plotting lines are removed; torch.rand/randn inputs are replaced by values from a
# fixed numpy RandomState so torch and tracegrad see the same data. The TinyModel
# section is in seed000_tinymodel.py (needs tracegrad.nn/optim). Left out for a later
# issue: the autograd profiler section and the torch.autograd.functional section
# (jacobian/vjp).
import torch

import math
import numpy as np

rs = np.random.RandomState(0)

# ## A Simple Example
a = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
print(a)

b = torch.sin(a)
print(b)

c = 2 * b
print(c)

d = c + 1
print(d)

out = d.sum()
print(out)

print('d:')
print(d.grad_fn)
print(d.grad_fn.next_functions)
print(d.grad_fn.next_functions[0][0].next_functions)
print(d.grad_fn.next_functions[0][0].next_functions[0][0].next_functions)
print(d.grad_fn.next_functions[0][0].next_functions[0][0].next_functions[0][0].next_functions)
print('\nc:')
print(c.grad_fn)
print('\nb:')
print(b.grad_fn)
print('\na:')
print(a.grad_fn)

out.backward()
print(a.grad)

# ## Turning Autograd Off and On
a = torch.ones(2, 3, requires_grad=True)
print(a)

b1 = 2 * a
print(b1)

a.requires_grad = False
b2 = 2 * a
print(b2)

a = torch.ones(2, 3, requires_grad=True) * 2
b = torch.ones(2, 3, requires_grad=True) * 3

c1 = a + b
print(c1)

with torch.no_grad():
    c2 = a + b

print(c2)

c3 = a * b
print(c3)


def add_tensors1(x, y):
    return x + y

@torch.no_grad()
def add_tensors2(x, y):
    return x + y


a = torch.ones(2, 3, requires_grad=True) * 2
b = torch.ones(2, 3, requires_grad=True) * 3

c1 = add_tensors1(a, b)
print(c1)

c2 = add_tensors2(a, b)
print(c2)

x = torch.tensor(rs.rand(5).astype(np.float32), requires_grad=True)  # torch.rand(5, requires_grad=True)
y = x.detach()

print(x)
print(y)

# ### Autograd and In-place Operations (the tutorial expects this to raise)
a = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
try:
    torch.sin_(a)
except RuntimeError as e:
    print(type(e).__name__, "leaf Variable" in str(e))

# ## Advanced Topic: More Autograd Detail
x = torch.tensor(rs.randn(3).astype(np.float32), requires_grad=True)  # torch.randn(3, requires_grad=True)

y = x * 2
while y.data.norm() < 1000:
    y = y * 2

print(y)

try:
    y.backward()
except RuntimeError as e:
    print(type(e).__name__, "implicitly created only for scalar outputs" in str(e))

v = torch.tensor([0.1, 1.0, 0.0001], dtype=torch.float) # stand-in for gradients
y.backward(v)

print(x.grad)
