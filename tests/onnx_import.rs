//! The ONNX importer through its public API, on models written here with the protobuf types:
//! values against the reference interpreter and hand-computed results, folding of shapes that
//! arrive as tensors, symbolic batches, names, and every kind of bad file giving one clear
//! error (never a panic).

use std::collections::HashMap;

use kiln::ir::{DType, Value};
use kiln::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
};
use kiln::onnx::{ImportError, Options, import};
use prost::Message;

/// A graph input or output of element type `elem` (an ONNX code) and `dims` (a negative
/// extent is a symbolic dimension named `N`).
fn value_info(name: &str, elem: DataType, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(if d < 0 {
                tensor_shape_proto::dimension::Value::DimParam("N".into())
            } else {
                tensor_shape_proto::dimension::Value::DimValue(d)
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_{}", outputs[0])),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn i64_tensor(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![data.len() as i64],
        data_type: Some(DataType::Int64 as i32),
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

fn model(graph: GraphProto, opset: i64) -> Vec<u8> {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// `y = relu(x · W + b)` reshaped by a shape computed from `Shape(x)`, on a symbolic batch:
/// a small MLP as exporters write it.
fn mlp() -> Vec<u8> {
    let w: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) / 4.0).collect();
    let graph = GraphProto {
        name: Some("tiny mlp".into()),
        node: vec![
            node("Gemm", &["x", "W", "b"], &["h"], vec![int_attr("transB", 1)]),
            node("Relu", &["h"], &["r"], vec![]),
            node("Shape", &["x"], &["xs"], vec![]),
            node("Gather", &["xs", "zero"], &["n"], vec![int_attr("axis", 0)]),
            node("Unsqueeze", &["n", "axes0"], &["n1"], vec![]),
            node("Concat", &["n1", "three_one"], &["shape"], vec![int_attr("axis", 0)]),
            node("Reshape", &["r", "shape"], &["/out:0"], vec![]),
        ],
        initializer: vec![
            f32_tensor("W", &[3, 4], &w),
            f32_tensor("b", &[3], &[0.5, -0.25, 0.0]),
            TensorProto {
                name: Some("zero".into()),
                data_type: Some(DataType::Int64 as i32),
                int64_data: vec![0],
                ..Default::default()
            },
            i64_tensor("axes0", &[0]),
            i64_tensor("three_one", &[3, 1]),
        ],
        input: vec![value_info("x", DataType::Float, &[-1, 4])],
        output: vec![value_info("/out:0", DataType::Float, &[-1, 3, 1])],
        ..Default::default()
    };
    model(graph, 17)
}

#[test]
fn an_mlp_imports_with_its_weights_and_computes_what_the_formula_says() {
    let m = import(&mlp(), &Options { batch: 2, ..Default::default() }).unwrap();
    let g = &m.graph;
    // The symbolic batch is pinned and said; the output's name is made a kiln name and said.
    assert!(m.notes.iter().any(|n| n.contains("symbolic dimension `N`") && n.contains("pinned to 2")), "{:?}", m.notes);
    assert!(m.notes.iter().any(|n| n.contains("`/out:0` is named `out_0`")), "{:?}", m.notes);
    assert_eq!(g.outputs()[0].name, "out_0");
    assert_eq!(g.ty(g.outputs()[0].value).to_string(), "f32[2,3,1]");
    // The weights are parameters with values; the shape arithmetic folded away.
    let mut params: Vec<&str> = g.params().filter_map(|(_, n)| n.op.leaf_name()).collect();
    params.sort();
    assert_eq!(params, ["W", "b"]);
    assert!(!g.to_string().contains("gather"), "the shape computation was folded:\n{g}");
    // The text form round-trips.
    let reparsed = kiln::ir::parse_graph(&g.to_string()).unwrap();
    assert_eq!(reparsed.to_string(), g.to_string());

    let x: Vec<f32> = vec![1.0, -2.0, 0.5, 3.0, 0.0, 1.0, -1.0, 2.0];
    let mut feeds = m.weights.clone();
    feeds.insert("x".into(), Value::from_vec(&[2, 4], x.clone()).unwrap());
    let w = m.weights["W"].to_vec::<f32>().unwrap();
    let b = [0.5f32, -0.25, 0.0];
    let want: Vec<f32> = (0..2)
        .flat_map(|r| (0..3).map(move |o| (r, o)))
        .map(|(r, o)| ((0..4).map(|k| x[r * 4 + k] * w[o * 4 + k]).sum::<f32>() + b[o]).max(0.0))
        .collect();
    let interp = kiln::ir::interp::run(g, &feeds).unwrap();
    let jit = kiln::compile(g, kiln::Fusion::Fused).unwrap().run(&feeds).unwrap();
    for got in [&interp[0], &jit[0]] {
        let got = got.to_vec::<f32>().unwrap();
        for (a, e) in got.iter().zip(&want) {
            assert!((a - e).abs() <= 1e-5, "{got:?} vs {want:?}");
        }
    }
}

#[test]
fn a_shape_from_a_graph_input_is_refused_naming_the_input_and_folds_once_bound() {
    let graph = GraphProto {
        node: vec![node("Reshape", &["x", "shape"], &["y"], vec![])],
        input: vec![value_info("x", DataType::Float, &[2, 3]), value_info("shape", DataType::Int64, &[2])],
        output: vec![value_info("y", DataType::Float, &[3, 2])],
        ..Default::default()
    };
    let bytes = model(graph, 14);
    match import(&bytes, &Options::default()) {
        Err(ImportError::NotConstant { input, from, .. }) => {
            assert_eq!(input, "shape");
            assert_eq!(from, ["shape"]);
        }
        other => panic!("expected NotConstant, got {other:?}"),
    }
    let mut constants = HashMap::new();
    constants.insert("shape".to_string(), Value::from_vec(&[2], vec![3i64, -1]).unwrap());
    let m = import(&bytes, &Options { constants, ..Default::default() }).unwrap();
    assert_eq!(m.graph.inputs().count(), 1);
    assert_eq!(m.graph.ty(m.graph.outputs()[0].value).to_string(), "f32[3,2]");
}

#[test]
fn every_unsupported_node_is_listed_in_one_error() {
    let graph = GraphProto {
        node: vec![
            node("Relu", &["x"], &["a"], vec![]),
            node("Hardmax", &["a"], &["b"], vec![]),
            node("Relu", &["b"], &["c"], vec![]),
            node("TopK", &["c", "k"], &["d", "e"], vec![]),
            NodeProto { domain: Some("com.microsoft".into()), ..node("FusedGemm", &["x"], &["f"], vec![]) },
        ],
        initializer: vec![i64_tensor("k", &[1])],
        input: vec![value_info("x", DataType::Float, &[2, 3])],
        output: vec![value_info("d", DataType::Float, &[2, 1]), value_info("f", DataType::Float, &[2, 3])],
        ..Default::default()
    };
    let e = import(&model(graph, 17), &Options::default()).unwrap_err();
    let ImportError::Unsupported(list) = &e else { panic!("expected Unsupported, got {e:?}") };
    let ops: Vec<&str> = list.iter().map(|u| u.op.as_str()).collect();
    assert_eq!(ops, ["Hardmax", "TopK", "com.microsoft.FusedGemm"]);
    let text = e.to_string();
    assert!(text.starts_with("3 unsupported node(s)"), "{text}");
    assert!(text.contains("node `Hardmax_b`: Hardmax (opset 17): op not supported"), "{text}");
    assert!(text.contains("domain `com.microsoft` is not supported"), "{text}");
}

#[test]
fn unsupported_attribute_values_and_dtypes_are_listed_too() {
    // Attribute values met while translating join the list (here two nodes).
    let graph = GraphProto {
        node: vec![
            node(
                "Gelu",
                &["x"],
                &["a"],
                vec![AttributeProto {
                    name: Some("approximate".into()),
                    s: Some(b"erfc".to_vec()),
                    r#type: Some(AttributeType::String as i32),
                    ..Default::default()
                }],
            ),
            node("Relu", &["x"], &["b"], vec![]),
            node("Dropout", &["b", "ratio", "training"], &["c"], vec![]),
        ],
        initializer: vec![
            f32_tensor("ratio", &[], &[0.5]),
            TensorProto {
                name: Some("training".into()),
                data_type: Some(DataType::Bool as i32),
                int32_data: vec![1],
                ..Default::default()
            },
        ],
        input: vec![value_info("x", DataType::Float, &[2, 3])],
        output: vec![value_info("a", DataType::Float, &[2, 3]), value_info("c", DataType::Float, &[2, 3])],
        ..Default::default()
    };
    let e = import(&model(graph, 20), &Options::default()).unwrap_err().to_string();
    assert!(e.starts_with("2 unsupported"), "{e}");
    assert!(e.contains("Gelu approximate=\"erfc\"") && e.contains("Dropout in training mode"), "{e}");

    // A dtype kiln neither has nor carries, on a graph input.
    let graph = GraphProto {
        node: vec![node("Identity", &["s"], &["t"], vec![])],
        input: vec![value_info("s", DataType::String, &[2])],
        output: vec![value_info("t", DataType::String, &[2])],
        ..Default::default()
    };
    let e = import(&model(graph, 20), &Options::default()).unwrap_err().to_string();
    assert!(e.contains("input s") && e.contains("dtype STRING"), "{e}");
}

/// Narrow integer types are carried in a wider dtype and wrap as they would: `uint8` 200 + 100
/// is 44, `int8` −128 · −1 is −128; `uint64` compares unsigned.
#[test]
fn narrow_integers_wrap_as_their_type_does() {
    let graph = GraphProto {
        node: vec![
            node("Add", &["u", "u"], &["sum"], vec![]),
            node("Mul", &["i", "minus_one"], &["prod"], vec![]),
            node("Less", &["big", "small"], &["less"], vec![]),
        ],
        initializer: vec![TensorProto {
            name: Some("minus_one".into()),
            data_type: Some(DataType::Int8 as i32),
            raw_data: Some(vec![0xFF]),
            ..Default::default()
        }],
        input: vec![
            value_info("u", DataType::Uint8, &[2]),
            value_info("i", DataType::Int8, &[2]),
            value_info("big", DataType::Uint64, &[1]),
            value_info("small", DataType::Uint64, &[1]),
        ],
        output: vec![
            value_info("sum", DataType::Uint8, &[2]),
            value_info("prod", DataType::Int8, &[2]),
            value_info("less", DataType::Bool, &[1]),
        ],
        ..Default::default()
    };
    let m = import(&model(graph, 14), &Options::default()).unwrap();
    assert!(m.notes.iter().any(|n| n == "input `u` is UINT8, carried as i32"), "{:?}", m.notes);
    assert!(m.notes.iter().any(|n| n == "output `prod` is INT8, carried as i32"), "{:?}", m.notes);
    let mut feeds = HashMap::new();
    feeds.insert("u".to_string(), Value::from_vec(&[2], vec![150i32, 7]).unwrap());
    feeds.insert("i".to_string(), Value::from_vec(&[2], vec![-128i32, 5]).unwrap());
    // 2^63 + 1 as uint64 bits (negative as i64) is not less than 1.
    feeds.insert("big".to_string(), Value::from_vec(&[1], vec![i64::MIN + 1]).unwrap());
    feeds.insert("small".to_string(), Value::from_vec(&[1], vec![1i64]).unwrap());
    for out in [
        kiln::ir::interp::run(&m.graph, &feeds).unwrap(),
        kiln::compile(&m.graph, kiln::Fusion::Fused).unwrap().run(&feeds).unwrap(),
    ] {
        assert_eq!(out[0].to_vec::<i32>().unwrap(), [44, 14]);
        assert_eq!(out[1].to_vec::<i32>().unwrap(), [-128, -5]);
        assert_eq!(out[2].to_vec::<bool>().unwrap(), [false]);
    }
}

/// Every bad file gives one error that says what is wrong.
#[test]
fn bad_files_give_one_clear_error() {
    let good = mlp();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "the file is empty"),
        ("truncated", good[..good.len() / 2].to_vec(), "not a readable ONNX model"),
        ("wrong magic", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), "not a readable ONNX model"),
        (
            "no graph",
            ModelProto { ir_version: Some(8), ..Default::default() }.encode_to_vec(),
            "the model has no graph",
        ),
    ];
    for (what, bytes, expect) in cases {
        let e = import(&bytes, &Options::default()).unwrap_err().to_string();
        assert!(e.contains(expect), "{what}: {e}");
    }

    // A node reading a value nothing defines (an initializer left out).
    let missing = GraphProto {
        node: vec![node("MatMul", &["x", "W"], &["y"], vec![])],
        input: vec![value_info("x", DataType::Float, &[1, 2])],
        output: vec![value_info("y", DataType::Float, &[1, 2])],
        ..Default::default()
    };
    let e = import(&model(missing, 17), &Options::default()).unwrap_err().to_string();
    assert_eq!(e, "node `MatMul_y` (MatMul) reads `W`, which no node, graph input or initializer defines");

    // A cycle.
    let cycle = GraphProto {
        node: vec![node("Add", &["x", "b"], &["a"], vec![]), node("Relu", &["a"], &["b"], vec![])],
        input: vec![value_info("x", DataType::Float, &[2])],
        output: vec![value_info("b", DataType::Float, &[2])],
        ..Default::default()
    };
    let e = import(&model(cycle, 17), &Options::default()).unwrap_err().to_string();
    assert_eq!(e, "the graph has a cycle through the nodes Add_a, Relu_b");

    // Shapes that do not fit: the node and the shapes are named.
    let mismatch = GraphProto {
        node: vec![node("MatMul", &["x", "W"], &["y"], vec![])],
        initializer: vec![f32_tensor("W", &[3, 2], &[0.0; 6])],
        input: vec![value_info("x", DataType::Float, &[1, 2])],
        output: vec![value_info("y", DataType::Float, &[1, 2])],
        ..Default::default()
    };
    let e = import(&model(mismatch, 17), &Options::default()).unwrap_err().to_string();
    assert!(
        e.starts_with("node `MatMul_y` (MatMul): `matmul`") && e.contains("f32[1,2]") && e.contains("f32[3,2]"),
        "{e}"
    );

    // An initializer whose data does not fill its shape.
    let short = GraphProto {
        node: vec![node("Relu", &["W"], &["y"], vec![])],
        initializer: vec![f32_tensor("W", &[3, 2], &[0.0; 5])],
        output: vec![value_info("y", DataType::Float, &[3, 2])],
        ..Default::default()
    };
    let e = import(&model(short, 17), &Options::default()).unwrap_err().to_string();
    assert!(e.contains("tensor `W` of shape [3, 2] has 20 bytes of raw data instead of 24"), "{e}");

    // An opset the importer does not know.
    let future = GraphProto {
        node: vec![node("Relu", &["x"], &["y"], vec![])],
        input: vec![value_info("x", DataType::Float, &[2])],
        output: vec![value_info("y", DataType::Float, &[2])],
        ..Default::default()
    };
    let e = import(&model(future, 99), &Options::default()).unwrap_err().to_string();
    assert!(e.contains("ai.onnx opset 99 is outside the supported 1..=28"), "{e}");
}

/// A known value too large to fold (a `ConstantOfShape` of 2^40 elements) is left for run
/// time, where memory is checked, instead of being computed during the import.
#[test]
fn huge_constants_are_not_folded_at_import() {
    let graph = GraphProto {
        node: vec![node("ConstantOfShape", &["shape"], &["big"], vec![]), node("Add", &["big", "big"], &["y"], vec![])],
        initializer: vec![i64_tensor("shape", &[1 << 20, 1 << 20])],
        output: vec![value_info("y", DataType::Float, &[1 << 20, 1 << 20])],
        ..Default::default()
    };
    let m = import(&model(graph, 17), &Options::default()).unwrap();
    assert_eq!(m.graph.ty(m.graph.outputs()[0].value).to_string(), "f32[1048576,1048576]");
    assert!(m.weights.is_empty());
}

/// Random byte flips and truncations of a good model: an error or a model, never a panic.
#[test]
fn damaged_files_never_panic() {
    let good = mlp();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let mut bytes = good.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % bytes.len() as u64) as usize;
            bytes[i] = next() as u8;
        }
        bytes.truncate(bytes.len() - (next() % 8) as usize);
        let r = std::panic::catch_unwind(|| import(&bytes, &Options { batch: 2, ..Default::default() }));
        assert!(r.is_ok(), "a damaged file panicked the importer");
    }
}

#[test]
fn convolution_pooling_and_normalization_match_the_interpreter_on_one_thread_and_two() {
    // Conv (asymmetric pads, stride 2) -> BatchNormalization -> MaxPool (ceil_mode) ->
    // GlobalAveragePool, with weights that are not one number repeated.
    let w: Vec<f32> = (0..4 * 3 * 3 * 3).map(|i| ((i * 37 % 17) as f32 - 8.0) / 16.0).collect();
    let per_channel = |name: &str, base: f32| f32_tensor(name, &[4], &[base, base + 0.5, base + 1.0, base + 1.5]);
    let graph = GraphProto {
        node: vec![
            node(
                "Conv",
                &["x", "W", "B"],
                &["c"],
                vec![ints_attr("pads", &[0, 1, 1, 0]), ints_attr("strides", &[2, 2])],
            ),
            node("BatchNormalization", &["c", "scale", "shift", "mean", "var"], &["n"], vec![]),
            node("MaxPool", &["n"], &["p"], vec![ints_attr("kernel_shape", &[2, 2]), int_attr("ceil_mode", 1)]),
            node("GlobalAveragePool", &["p"], &["y"], vec![]),
        ],
        initializer: vec![
            f32_tensor("W", &[4, 3, 3, 3], &w),
            per_channel("B", -0.5),
            per_channel("scale", 0.5),
            per_channel("shift", 0.1),
            per_channel("mean", -0.2),
            per_channel("var", 0.3),
        ],
        input: vec![value_info("x", DataType::Float, &[2, 3, 9, 8])],
        output: vec![value_info("y", DataType::Float, &[2, 4, 1, 1])],
        ..Default::default()
    };
    let m = import(&model(graph, 15), &Options::default()).unwrap();
    let mut feeds = m.weights.clone();
    let x: Vec<f32> = (0..2 * 3 * 9 * 8).map(|i| ((i * 53 % 29) as f32 - 14.0) / 7.0).collect();
    feeds.insert("x".into(), Value::from_vec(&[2, 3, 9, 8], x).unwrap());
    let want = kiln::ir::interp::run(&m.graph, &feeds).unwrap();
    assert_eq!(want[0].ty().to_string(), "f32[2,4,1,1]");
    for threads in [1, 2] {
        let exe = kiln::compile(&m.graph, kiln::Fusion::Fused).unwrap().with_threads(threads);
        let got = exe.run(&feeds).unwrap();
        for (a, e) in got[0].to_f64_vec().iter().zip(want[0].to_f64_vec()) {
            assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()), "{threads} threads: {a} vs {e}");
        }
    }
    assert_eq!(m.weights["W"].dtype(), DType::F32);
}

/// The PyTorch exports of `tests/data/onnx/` (`export_torch.py`: an MLP, and a LeNet with max
/// and average pooling, tanh, GELU, sigmoid and log-softmax) agree with PyTorch's output, on the
/// interpreter and the JIT, and differentiate with a loss on their output.
#[test]
fn pytorch_exports_agree_with_pytorch_and_differentiate() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx");
    for name in ["mlp", "lenet"] {
        let x = kiln::runtime::npy::read_any(&data.join(format!("{name}_input.npy"))).unwrap();
        let want = kiln::runtime::npy::read_any(&data.join(format!("{name}_torch.npy"))).unwrap();
        let options = Options { batch: x.shape()[0], ..Default::default() };
        let m = kiln::onnx::import_file(&data.join(format!("{name}.onnx")), &options).unwrap();
        assert!(m.notes.iter().any(|n| n.contains("symbolic dimension `batch`")), "{:?}", m.notes);
        let mut feeds = m.weights.clone();
        feeds.insert("x".into(), x);
        let interp = kiln::ir::interp::run(&m.graph, &feeds).unwrap();
        let jit = kiln::compile(&m.graph, kiln::Fusion::Fused).unwrap().run(&feeds).unwrap();
        for got in [&interp[0], &jit[0]] {
            assert_eq!(got.ty(), want.ty());
            for (a, e) in got.to_f64_vec().iter().zip(want.to_f64_vec()) {
                assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()), "{name}: {a} vs PyTorch {e}");
            }
        }
        // Fine-tuning starts here: a loss on the logits, and a gradient for every weight.
        let model = kiln::onnx::with_loss(m.graph.clone(), kiln::zoo::Loss::CrossEntropy).unwrap();
        let grad = kiln::train::grad_graph(&model).unwrap();
        let grads = grad.outputs().iter().filter(|o| o.name.starts_with("grad.")).count();
        assert_eq!(grads, m.weights.len(), "{name}");
    }
}
