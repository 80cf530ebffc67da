"""Makes the PyTorch exports tests/onnx_torch.rs checks kiln against (run once; the outputs
are committed). Needs torch, onnx and numpy (a scratch venv outside the repository):

    python3 tests/data/onnx/export_torch.py tests/data/onnx

For each model: NAME.onnx (torch.onnx.export, TorchScript exporter, opset 17, a dynamic batch
axis), NAME_input.npy (a batch of 3 examples) and NAME_torch.npy (PyTorch's own output for it).
"""

import os
import sys

import numpy as np
import torch
from torch import nn


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.avg_pool2d(torch.tanh(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = nn.functional.gelu(self.fc1(x))
        x = torch.sigmoid(self.fc2(x))
        return torch.log_softmax(self.fc3(x), dim=1)


def export(name, model, shape, out):
    torch.manual_seed(0)
    model.eval()
    x = torch.rand(*shape)
    torch.onnx.export(
        model,
        (x,),
        os.path.join(out, f"{name}.onnx"),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    with torch.no_grad():
        y = model(x)
    np.save(os.path.join(out, f"{name}_input.npy"), x.numpy())
    np.save(os.path.join(out, f"{name}_torch.npy"), y.numpy())


if __name__ == "__main__":
    out = sys.argv[1]
    torch.manual_seed(0)
    export("mlp", Mlp(), (3, 1, 28, 28), out)
    torch.manual_seed(1)
    export("lenet", LeNet(), (3, 1, 28, 28), out)
