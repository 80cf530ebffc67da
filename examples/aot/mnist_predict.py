#!/usr/bin/env python3
"""Classify one MNIST digit with a model library built by `kiln build`, through ctypes.

    kiln build mnist_mlp --weights runs/mnist_mlp/model.safetensors -o build
    python3 examples/aot/mnist_predict.py build/libmnist_mlp.so examples/aot/digit.npy

Needs only the Python standard library. The library's name prefix is read from its file name
(libNAME.so); inputs and outputs are sized from its descriptors. The image is a 28x28 .npy of
uint8 pixels (0-255) or 784 raw bytes, scaled and standardized as `kiln train` feeds MNIST.
"""

import ctypes
import os
import sys

DTYPES = {0: ctypes.c_float, 1: ctypes.c_double, 2: ctypes.c_int32, 3: ctypes.c_int64, 4: ctypes.c_bool}


class TensorDesc(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
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

    input_desc = fn("input_desc", ctypes.POINTER(TensorDesc), ctypes.c_int32)
    output_desc = fn("output_desc", ctypes.POINTER(TensorDesc), ctypes.c_int32)
    run = fn("run", ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p))
    message = fn("error_message", ctypes.c_char_p, ctypes.c_int32)

    def buffer(desc):
        count = 1
        for i in range(desc.rank):
            count *= desc.shape[i]
        return (DTYPES[desc.dtype] * count)()

    x, logits = buffer(input_desc(0).contents), buffer(output_desc(0).contents)
    if len(x) != 784 or len(logits) != 10:
        sys.exit(f"{name} must take one 28x28 image and give 10 logits (build it with --batch 1)")
    for i, p in enumerate(read_image(sys.argv[2])):
        x[i] = (p / 255.0 - 0.1307) / 0.3081
    inputs = (ctypes.c_void_p * 1)(ctypes.addressof(x))
    outputs = (ctypes.c_void_p * 1)(ctypes.addressof(logits))
    code = run(inputs, outputs)
    if code != 0:
        sys.exit(f"{name}_run: {message(code).decode()}")
    print(f"predicted digit: {max(range(10), key=lambda i: logits[i])}")


if __name__ == "__main__":
    main()
