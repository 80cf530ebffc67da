#!/usr/bin/env python3
"""Classify one MNIST digit with a model library built by `kiln build`, through ctypes.

    kiln build mnist_mlp --weights runs/mnist_mlp/model.safetensors -o build
    python3 examples/aot/mnist_predict.py build/libmnist_mlp.so examples/aot/digit.npy

Needs only the Python standard library. The library's name prefix is read from its file name
(libNAME.so); NAME_run_checked checks the buffers' dtypes and shapes. The image is a 28x28 .npy of
uint8 pixels (0-255) or 784 raw bytes, scaled and standardized as `kiln train` feeds MNIST,
shaped as the model's input descriptor says (so a LeNet imported from ONNX works too).
"""

import ctypes
import os
import sys


class Desc(ctypes.Structure):
    """An input's or output's name, dtype and shape, as NAME_input_desc returns them."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
    ]


class Tensor(ctypes.Structure):
    """A buffer with its dtype and shape, which NAME_run_checked checks against the model."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
    ]


def read_image(path):
    data = open(path, "rb").read()
    if data[:6] == b"\x93NUMPY":
        if data[6] >= 2:
            start = 12 + int.from_bytes(data[8:12], "little")
        else:
            start = 10 + int.from_bytes(data[8:10], "little")
        if b"u1" not in data[10:start]:
            sys.exit(f"{path}: expected a .npy of uint8 pixels")
        data = data[start:]
    if len(data) != 784:
        sys.exit(f"{path}: expected 784 pixels (28x28), found {len(data)}")
    return data


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} LIBRARY.so IMAGE.npy")
    path = sys.argv[1]
    name = os.path.basename(path)[3:].split(".so")[0]
    lib = ctypes.CDLL(os.path.abspath(path))

    def fn(suffix, restype, *argtypes):
        f = getattr(lib, f"{name}_{suffix}")
        f.restype, f.argtypes = restype, list(argtypes)
        return f

    run_checked = fn(
        "run_checked", ctypes.c_int32, ctypes.POINTER(Tensor), ctypes.c_int32, ctypes.POINTER(Tensor), ctypes.c_int32
    )
    last_error = fn("last_error", ctypes.c_char_p)

    input_desc = fn("input_desc", ctypes.POINTER(Desc), ctypes.c_int32)
    output_desc = fn("output_desc", ctypes.POINTER(Desc), ctypes.c_int32)

    # One image, in whatever shape of 784 values the model takes ([1, 784] for mnist_mlp,
    # [1, 1, 28, 28] for a convolutional net), and its ten logits; the library checks the
    # shapes (a model built for another batch size is an error that says which buffer and
    # what it expected).
    def shape(desc):
        d = desc.contents
        return (ctypes.c_int64 * d.rank)(*d.shape[: d.rank]), d.rank

    (x_shape, x_rank), (logits_shape, logits_rank) = shape(input_desc(0)), shape(output_desc(0))
    x, logits = (ctypes.c_float * 784)(), (ctypes.c_float * 10)()
    for i, p in enumerate(read_image(sys.argv[2])):
        x[i] = (p / 255.0 - 0.1307) / 0.3081
    inputs = (Tensor * 1)(Tensor(ctypes.addressof(x), 0, x_rank, x_shape))
    outputs = (Tensor * 1)(Tensor(ctypes.addressof(logits), 0, logits_rank, logits_shape))
    if run_checked(inputs, 1, outputs, 1) != 0:
        sys.exit(f"{name}: {last_error().decode()}")
    print(f"predicted digit: {max(range(10), key=lambda i: logits[i])}")


if __name__ == "__main__":
    main()
