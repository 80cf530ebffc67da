"""Writes the ONNX backend conformance cases kiln runs (tests/onnx_conformance.rs).

Usage: python3 generate.py OUT_DIR   (with the `onnx` wheel importable)

* Node tests: the `onnx` wheel ships the generators of its backend node tests, not their data.
  They run here, offline, and every case becomes OUT_DIR/node/NAME/ with model.onnx,
  input_K.pb and output_K.pb (TensorProto files). OUT_DIR/node/index.tsv lists
  name, op, rtol, atol, and `-` or why the case has no files (sequence or optional data).
* Real models: the wheel's backend/test/data/light models (opset 8-9), upgraded to opset 13
  with onnx.version_converter, with the input the ONNX test runner feeds them
  (arange(n) / n, reshaped) and their stored expected output: OUT_DIR/light/NAME/, same files.
  OUT_DIR/light/index.tsv lists name, rtol, atol, and `-` or why the model is not there.
"""

import os
import sys

import numpy as np
import onnx
import onnx.version_converter
from onnx import numpy_helper
from onnx.backend.test.case import node as node_cases


def write_tensor(path, value):
    if isinstance(value, onnx.TensorProto):
        proto = value
    else:
        proto = numpy_helper.from_array(np.asarray(value))
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def node_tests(out):
    os.makedirs(out, exist_ok=True)
    cases = node_cases.collect_testcases()
    ops = {name: n.op_type for name, n in node_cases._existing_names.items()}
    rows = []
    for case in cases:
        base = case.name
        while base not in ops and "_expanded" in base:
            base = base[: base.rindex("_expanded")]
        op = ops.get(base, "?")
        why = "-"
        inputs, outputs = case.data_sets[0]
        data = list(inputs) + list(outputs)
        if any(not isinstance(v, (np.ndarray, onnx.TensorProto, np.generic)) for v in data):
            why = "sequence, map or optional data"
        else:
            d = os.path.join(out, case.name)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "model.onnx"), "wb") as f:
                f.write(case.model.SerializeToString())
            for i, v in enumerate(inputs):
                write_tensor(os.path.join(d, f"input_{i}.pb"), v)
            for i, v in enumerate(outputs):
                write_tensor(os.path.join(d, f"output_{i}.pb"), v)
        rows.append(f"{case.name}\t{op}\t{case.rtol}\t{case.atol}\t{why}")
    with open(os.path.join(out, "index.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"{len(rows)} node tests in {out}")


def light_models(out):
    os.makedirs(out, exist_ok=True)
    src = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    rows = []
    for file in sorted(os.listdir(src)):
        if not file.endswith(".onnx"):
            continue
        name = file[len("light_") : -len(".onnx")]
        expected = os.path.join(src, f"light_{name}_output_0.pb")
        model = onnx.load(os.path.join(src, file))
        why = "-"
        try:
            model = onnx.version_converter.convert_version(model, 13)
        except Exception as e:  # the converter cannot upgrade every op
            why = f"version_converter: {str(e).splitlines()[0][:120]}"
        if why == "-":
            d = os.path.join(out, name)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "model.onnx"), "wb") as f:
                f.write(model.SerializeToString())
            inits = {i.name for i in model.graph.initializer}
            k = 0
            for x in model.graph.input:
                if x.name in inits:
                    continue
                shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in x.type.tensor_type.shape.dim)
                n = int(np.prod(shape))
                write_tensor(os.path.join(d, f"input_{k}.pb"), (np.arange(n).reshape(shape) / n).astype(np.float32))
                k += 1
            with open(expected, "rb") as f, open(os.path.join(d, "output_0.pb"), "wb") as g:
                g.write(f.read())
        rows.append(f"{name}\t1e-3\t1e-7\t{why}")
    with open(os.path.join(out, "index.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"{len(rows)} light models in {out}")


if __name__ == "__main__":
    root = sys.argv[1]
    node_tests(os.path.join(root, "node"))
    light_models(os.path.join(root, "light"))
