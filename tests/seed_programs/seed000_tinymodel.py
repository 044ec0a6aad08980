# Seed 000, "Autograd in Training": a TinyModel trained one step with SGD.
# Needs tracegrad.nn and tracegrad.optim. torch.randn inputs come from a fixed numpy
# RandomState; the model's initial weights are overwritten from the same RandomState
# (the two libraries' RNGs cannot match).
import torch

import numpy as np

rs = np.random.RandomState(0)

BATCH_SIZE = 16
DIM_IN = 1000
HIDDEN_SIZE = 100
DIM_OUT = 10

class TinyModel(torch.nn.Module):

    def __init__(self):
        super(TinyModel, self).__init__()

        self.layer1 = torch.nn.Linear(1000, 100)
        self.relu = torch.nn.ReLU()
        self.layer2 = torch.nn.Linear(100, 10)

    def forward(self, x):
        x = self.layer1(x)
        x = self.relu(x)
        x = self.layer2(x)
        return x

some_input = torch.tensor(rs.randn(BATCH_SIZE, DIM_IN).astype(np.float32), requires_grad=False)
ideal_output = torch.tensor(rs.randn(BATCH_SIZE, DIM_OUT).astype(np.float32), requires_grad=False)

model = TinyModel()
with torch.no_grad():
    for p in model.parameters():
        bound = 1.0 / np.sqrt(p.shape[-1] if p.ndim > 1 else 100)
        p.copy_(torch.tensor(rs.uniform(-bound, bound, tuple(p.shape)).astype(np.float32)))

print(model.layer2.weight[0][0:10]) # just a small slice
print(model.layer2.weight.grad)

optimizer = torch.optim.SGD(model.parameters(), lr=0.001)

prediction = model(some_input)

loss = (ideal_output - prediction).pow(2).sum()
print(loss)

loss.backward()
print(model.layer2.weight[0][0:10])
print(model.layer2.weight.grad[0][0:10])

optimizer.step()
print(model.layer2.weight[0][0:10])
print(model.layer2.weight.grad[0][0:10])

print(model.layer2.weight.grad[0][0:10])

for i in range(0, 5):
    prediction = model(some_input)
    loss = (ideal_output - prediction).pow(2).sum()
    loss.backward()

print(model.layer2.weight.grad[0][0:10])

optimizer.zero_grad(set_to_none=False)

print(model.layer2.weight.grad[0][0:10])
