"""A first look at boltgrad: build a lazy graph, then ask for its value.

Run it after setup with ``.venv/bin/python examples/quickstart.py``; ``DEBUG=2`` shows each kernel as it runs.
"""

import boltgrad
from boltgrad import Tensor

a = Tensor.rand(1024, 1024)
b = Tensor([[1.0, 2.0], [3.0, 4.0]])

y = ((a * 2 + 1).relu().exp()).sum(dim=1)  # builds a graph; nothing runs yet

# .numpy() realizes y: the graph is scheduled into fused kernels, compiled for the device and run.
print(y.numpy()[:4], b.tolist(), y.shape, y.dtype, y.device)
print("kernels run:", boltgrad.stats.kernels)
