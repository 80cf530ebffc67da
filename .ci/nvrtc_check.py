#!/usr/bin/env python3
"""Compiles CUDA C files with NVRTC, as the GPU backend will at run time; no GPU is needed.

    python3 .ci/nvrtc_check.py [--arch compute_90] FILE.cu...

NVRTC comes from the PyPI wheel `nvidia-cuda-nvrtc-cu12`: this script looks for
`libnvrtc.so.12` under $KILN_NVRTC_DIR (where `pip install --target DIR` put the wheel), the
interpreter's site-packages, then the loader's path. Exits 1 naming every file that fails, with
NVRTC's log; 2 if NVRTC cannot be found.
"""

import ctypes
import glob
import os
import site
import sys


def find_nvrtc():
    roots = [os.environ.get("KILN_NVRTC_DIR", "")] + site.getsitepackages() + [site.getusersitepackages()]
    for root in roots:
        if not root:
            continue
        for path in glob.glob(os.path.join(root, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.*")):
            if ".alt." not in path and "builtins" not in path:
                return ctypes.CDLL(path)
    try:
        return ctypes.CDLL("libnvrtc.so.12")
    except OSError:
        return None


def compile_source(nvrtc, name, source, arch):
    prog = ctypes.c_void_p()
    check = nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None)
    if check != 0:
        return f"nvrtcCreateProgram failed ({check})"
    options = [f"--gpu-architecture={arch}".encode(), b"--std=c++17"]
    array = (ctypes.c_char_p * len(options))(*options)
    result = nvrtc.nvrtcCompileProgram(prog, len(options), array)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
    if result != 0:
        return log.value.decode(errors="replace") or f"error {result}"
    return None


def main():
    args = sys.argv[1:]
    arch = "compute_90"
    if len(args) >= 2 and args[0] == "--arch":
        arch, args = args[1], args[2:]
    if not args:
        sys.exit(f"usage: {sys.argv[0]} [--arch ARCH] FILE.cu...")
    nvrtc = find_nvrtc()
    if nvrtc is None:
        print("NVRTC not found: pip install --target DIR nvidia-cuda-nvrtc-cu12 and set KILN_NVRTC_DIR=DIR", file=sys.stderr)
        sys.exit(2)
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    failed = []
    for path in args:
        with open(path) as f:
            error = compile_source(nvrtc, os.path.basename(path), f.read(), arch)
        if error is not None:
            failed.append(path)
            print(f"{path}: NVRTC {major.value}.{minor.value} ({arch}) failed:\n{error}", file=sys.stderr)
    print(f"NVRTC {major.value}.{minor.value}: {len(args) - len(failed)} of {len(args)} files compile for {arch}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
