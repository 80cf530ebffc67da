#!/usr/bin/env python3
"""Classify one MNIST digit with a model library built by `kiln build`, through ctypes.

    kiln build mnist_mlp --weights runs/mnist_mlp/model.safetensors -o build
    python3 examples/aot/mnist_predict.py build/libmnist_mlp.so examples/aot/digit.npy

Needs only the Python standard library. The library's name prefix is read from its file name
(libNAME.so); NAME_run_checked checks the buffers' dtypes and shapes. The image is a 28x28 .npy of
uint8 pixels (0-255) or 784 raw bytes, scaled and standardized as `kiln train` feeds MNIST, as
[1, 784] or, to a model whose input has four axes, [1, 1, 28, 28].
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

    # One image and its ten logits, described by the shapes this program means to pass: the
    # image as [1, 784], or as [1, 1, 28, 28] to a model whose input has four axes (a
    # convolutional net, such as a LeNet imported from ONNX). The library checks them (a
    # model built for another batch size or input is an error that says which buffer and
    # what it expected).
    x_dims = (1, 1, 28, 28) if input_desc(0).contents.rank == 4 else (1, 784)
    x, logits = (ctypes.c_float * 784)(), (ctypes.c_float * 10)()
    for i, p in enumerate(read_image(sys.argv[2])):
        x[i] = (p / 255.0 - 0.1307) / 0.3081
    x_shape, logits_shape = (ctypes.c_int64 * len(x_dims))(*x_dims), (ctypes.c_int64 * 2)(1, 10)
    inputs = (Tensor * 1)(Tensor(ctypes.addressof(x), 0, len(x_dims), x_shape))
    outputs = (Tensor * 1)(Tensor(ctypes.addressof(logits), 0, 2, logits_shape))
    if run_checked(inputs, 1, outputs, 1) != 0:
        sys.exit(f"{name}: {last_error().decode()}")
    print(f"predicted digit: {max(range(10), key=lambda i: logits[i])}")


if __name__ == "__main__":
    main()
