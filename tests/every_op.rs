//! Every op, one small graph each, through everything that handles ops: the text form (print,
//! parse, print again: the same text), the interpreter, autodiff (a gradient graph that runs,
//! or an error naming the op), the optimizing JIT, a model library and the emulated GPU (each
//! the interpreter's values within rounding, or an error naming the op). The list of samples
//! is checked against an exhaustive match over `Op`, so a new op cannot be added without a
//! sample here.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::{assert_close, le_bytes, scratch::Scratch};
use kiln::frontend::Builder;
use kiln::ir::{BinaryOp, CmpOp, DType, Graph, Op, ReduceOp, UnaryOp, Value, interp, parse_graph, verify};
use kiln::runtime::exec::{Backend, run};

/// The variant of `op`, by an exhaustive match: a new op fails to compile here until it has
/// a name, and then fails the coverage check until it has a sample.
fn variant(op: &Op) -> &'static str {
    match op {
        Op::Input { .. } => "input",
        Op::Param { .. } => "param",
        Op::Const { .. } => "const",
        Op::Iota { .. } => "iota",
        Op::Rng { .. } => "rng",
        Op::Unary(_) => "unary",
        Op::StopGradient => "stop_gradient",
        Op::Binary(_) => "binary",
        Op::Compare(_) => "compare",
        Op::Select => "select",
        Op::Cast => "cast",
        Op::Reduce { .. } => "reduce",
        Op::Reshape => "reshape",
        Op::Permute { .. } => "permute",
        Op::Broadcast { .. } => "broadcast",
        Op::Slice { .. } => "slice",
        Op::Pad { .. } => "pad",
        Op::Concat { .. } => "concat",
        Op::Matmul => "matmul",
        Op::Conv2d(_) => "conv2d",
        Op::Conv2dGradInput(_) => "conv2d_grad_input",
        Op::Conv2dGradWeight(_) => "conv2d_grad_weight",
        Op::Gather { .. } => "gather",
        Op::ScatterAdd { .. } => "scatter_add",
    }
}

const VARIANTS: [&str; 24] = [
    "input",
    "param",
    "const",
    "iota",
    "rng",
    "unary",
    "stop_gradient",
    "binary",
    "compare",
    "select",
    "cast",
    "reduce",
    "reshape",
    "permute",
    "broadcast",
    "slice",
    "pad",
    "concat",
    "matmul",
    "conv2d",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "gather",
    "scatter_add",
];

/// A function of one op (and the leaves it needs).
fn sample(name: &str, leaves: &str, body: &str, out: &str) -> String {
    format!("func @{name}({leaves}) -> (o: {out}) {{\n{body}\n}}\n")
}

/// One graph per op form: every unary, binary, compare and reduce op, and every other op.
fn samples() -> Vec<String> {
    let x = "%x: f32[2,3]";
    let xy = "%x: f32[2,3], %y: f32[2,3]";
    let mut v = Vec::new();
    for u in UnaryOp::ALL {
        v.push(sample(u.name(), x, &format!("  %1 = {} %x : f32[2,3]\n  return %1", u.name()), "f32[2,3]"));
    }
    for b in BinaryOp::ALL {
        v.push(sample(b.name(), xy, &format!("  %1 = {} %x, %y : f32[2,3]\n  return %1", b.name()), "f32[2,3]"));
    }
    for c in CmpOp::ALL {
        v.push(sample(c.name(), xy, &format!("  %1 = {} %x, %y : bool[2,3]\n  return %1", c.name()), "bool[2,3]"));
    }
    for r in ReduceOp::ALL {
        v.push(sample(r.name(), x, &format!("  %1 = {} %x {{axes=[1]}} : f32[2]\n  return %1", r.name()), "f32[2]"));
    }
    let one = |name: &str, leaves: &str, body: &str, out: &str| sample(name, leaves, body, out);
    v.extend([
        one(
            "param",
            "%x: f32[2,3], %w: f32[2,3] param uniform(-1.0, 1.0)",
            "  %1 = mul %x, %w : f32[2,3]\n  return %1",
            "f32[2,3]",
        ),
        one("const", x, "  %1 = const 2.5 : f32[2,3]\n  %2 = add %x, %1 : f32[2,3]\n  return %2", "f32[2,3]"),
        one("iota", x, "  %1 = iota {axis=1} : f32[2,3]\n  %2 = mul %x, %1 : f32[2,3]\n  return %2", "f32[2,3]"),
        one("rng", "%seed: i64[]", "  %1 = rng %seed {dist=normal, stream=2} : f32[2,3]\n  return %1", "f32[2,3]"),
        one("stop_gradient", x, "  %1 = stop_gradient %x : f32[2,3]\n  %2 = mul %1, %x : f32[2,3]\n  return %2", "f32[2,3]"),
        one(
            "select",
            xy,
            "  %1 = cmp_lt %x, %y : bool[2,3]\n  %2 = select %1, %x, %y : f32[2,3]\n  return %2",
            "f32[2,3]",
        ),
        one("cast", x, "  %1 = cast %x : i32[2,3]\n  return %1", "i32[2,3]"),
        one("reshape", x, "  %1 = reshape %x : f32[3,2]\n  return %1", "f32[3,2]"),
        one("permute", x, "  %1 = permute %x {perm=[1,0]} : f32[3,2]\n  return %1", "f32[3,2]"),
        one("broadcast", "%b: f32[3]", "  %1 = broadcast %b {dims=[1]} : f32[2,3]\n  return %1", "f32[2,3]"),
        one(
            "slice",
            x,
            "  %1 = slice %x {start=[0,1], stop=[2,3], step=[1,1]} : f32[2,2]\n  return %1",
            "f32[2,2]",
        ),
        one("pad", x, "  %1 = pad %x {low=[0,1], high=[1,0], value=0.5} : f32[3,4]\n  return %1", "f32[3,4]"),
        one("concat", xy, "  %1 = concat %x, %y {axis=0} : f32[4,3]\n  return %1", "f32[4,3]"),
        one("matmul", "%x: f32[2,3], %w: f32[3,4]", "  %1 = matmul %x, %w : f32[2,4]\n  return %1", "f32[2,4]"),
        one(
            "conv2d",
            "%x: f32[1,2,4,4], %w: f32[3,2,3,3]",
            "  %1 = conv2d %x, %w {stride=[1,1], padding=[1,1], dilation=[1,1], groups=1} : f32[1,3,4,4]\n  return %1",
            "f32[1,3,4,4]",
        ),
        one(
            "conv2d_grad_input",
            "%gy: f32[1,3,4,4], %w: f32[3,2,3,3]",
            "  %1 = conv2d_grad_input %gy, %w {stride=[1,1], padding=[1,1], dilation=[1,1], groups=1} : f32[1,2,4,4]\n  return %1",
            "f32[1,2,4,4]",
        ),
        one(
            "conv2d_grad_weight",
            "%x: f32[1,2,4,4], %gy: f32[1,3,4,4]",
            "  %1 = conv2d_grad_weight %x, %gy {stride=[1,1], padding=[1,1], dilation=[1,1], groups=1} : f32[3,2,3,3]\n  return %1",
            "f32[3,2,3,3]",
        ),
        one("gather", "%t: f32[4,3], %i: i32[2]", "  %1 = gather %t, %i {axis=0} : f32[2,3]\n  return %1", "f32[2,3]"),
        one(
            "scatter_add",
            "%u: f32[2,3], %i: i32[2]",
            "  %1 = scatter_add %u, %i {axis=0} : f32[4,3]\n  return %1",
            "f32[4,3]",
        ),
    ]);
    v
}

/// Inputs for `g`: floats in `[0.5, 1.5)` (in the domain of `log`, `sqrt`, `pow`), integers
/// in `0..3` (valid rows to gather), seed 5.
fn feeds(g: &Graph) -> HashMap<String, Value> {
    let mut f = HashMap::new();
    for (id, n) in g.inputs() {
        let ty = g.ty(id);
        let count = ty.numel();
        let v = match ty.dtype {
            DType::F32 => {
                Value::from_vec(ty.dims(), (0..count).map(|k| 0.5 + ((k * 7) % 10) as f32 / 10.0).collect::<Vec<_>>())
            }
            DType::I32 => Value::from_vec(ty.dims(), (0..count).map(|k| ((k * 2 + 1) % 3) as i32).collect::<Vec<_>>()),
            DType::I64 => Value::from_vec(ty.dims(), vec![5i64; count]),
            other => panic!("no sample input of {other}"),
        };
        f.insert(n.op.leaf_name().unwrap().to_string(), v.unwrap());
    }
    f.extend(kiln::ir::init::init_params(g, 3));
    f
}

/// `g` with a scalar `loss` (the sum of its output as f32) for differentiating.
fn with_loss(g: &Graph) -> Graph {
    let b = Builder::from_graph(g.clone());
    let (_, out) = b.outputs()[0];
    let out = if out.dtype() == DType::F32 { out } else { out.cast(DType::F32) };
    let dims: Vec<isize> = (0..out.shape().len() as isize).collect();
    let loss = if dims.is_empty() { out } else { out.sum(&dims) };
    b.output("loss", loss);
    b.finish().unwrap()
}

/// Calls `NAME_run` of a freshly built library for `g` and returns its outputs as f64.
fn run_library(g: &Graph, feeds: &HashMap<String, Value>, dir: &std::path::Path) -> Result<Vec<Vec<f64>>, String> {
    let weights: HashMap<String, Value> =
        g.params().filter_map(|(_, n)| n.op.leaf_name()).map(|n| (n.to_string(), feeds[n].clone())).collect();
    let lib = kiln::aot::build(g, &weights, &kiln::aot::BuildOptions::new(g.name(), dir)).map_err(|e| e.to_string())?;
    let inputs: Vec<Vec<u8>> = g.inputs().map(|(_, n)| le_bytes(&feeds[n.op.leaf_name().unwrap()])).collect();
    let mut outputs: Vec<Vec<u8>> = g.outputs().iter().map(|o| vec![0u8; g.ty(o.value).size_bytes().max(1)]).collect();
    // SAFETY: the library was just built for `g`; `NAME_run` takes one buffer per input and
    // output of exactly these sizes (row-major, the graph's dtypes), alive across the call.
    let code = unsafe {
        let l = libloading::Library::new(&lib.library).map_err(|e| e.to_string())?;
        let f: libloading::Symbol<unsafe extern "C" fn(*const *const u8, *const *mut u8) -> i32> =
            l.get(format!("{}_run", g.name()).as_bytes()).map_err(|e| e.to_string())?;
        let ins: Vec<*const u8> = inputs.iter().map(|b| b.as_ptr()).collect();
        let outs: Vec<*mut u8> = outputs.iter_mut().map(|b| b.as_mut_ptr()).collect();
        f(ins.as_ptr(), outs.as_ptr())
    };
    if code != 0 {
        return Err(format!("{}_run returned {code}", g.name()));
    }
    Ok(g.outputs()
        .iter()
        .zip(&outputs)
        .map(|(o, bytes)| {
            let dt = g.ty(o.value).dtype;
            bytes[..g.ty(o.value).size_bytes()]
                .chunks_exact(dt.size_bytes())
                .map(|c| match dt {
                    DType::F32 => f32::from_le_bytes(c.try_into().unwrap()) as f64,
                    DType::F64 => f64::from_le_bytes(c.try_into().unwrap()),
                    DType::I32 => i32::from_le_bytes(c.try_into().unwrap()) as f64,
                    DType::I64 => i64::from_le_bytes(c.try_into().unwrap()) as f64,
                    DType::Bool => f64::from(c[0]),
                })
                .collect()
        })
        .collect())
}

#[test]
fn every_op_prints_parses_interprets_differentiates_and_runs_on_every_backend() {
    let dir = Scratch::new("every-op", "libraries");
    let mut seen = BTreeSet::new();
    let mut refused: Vec<String> = Vec::new();
    for text in samples() {
        let g = parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        verify(&g).unwrap();
        let name = g.name().to_string();
        for (_, n) in g.nodes() {
            seen.insert(variant(&n.op));
        }
        // Text form: printed, parsed and printed again, the same.
        let printed = g.to_string();
        assert_eq!(parse_graph(&printed).unwrap().to_string(), printed, "{name}");

        let f = feeds(&g);
        let want = interp::run(&g, &f).unwrap_or_else(|e| panic!("{name}: interpreter: {e}"));
        let want: Vec<Vec<f64>> = want.iter().map(Value::to_f64_vec).collect();

        // Autodiff: the gradient of the output's sum with respect to every float input, or
        // an error that names the op.
        let lossy = with_loss(&g);
        let wrt: Vec<&str> =
            g.leaves().filter(|(id, _)| g.ty(*id).dtype.is_float()).filter_map(|(_, n)| n.op.leaf_name()).collect();
        if !wrt.is_empty() {
            match kiln::passes::autodiff::grad(&lossy, "loss", &wrt) {
                Ok(gg) => {
                    verify(&gg).unwrap();
                    let grads = interp::run(&gg, &f).unwrap_or_else(|e| panic!("{name}: gradient graph: {e}"));
                    assert!(grads.len() > wrt.len(), "{name}: a gradient per leaf");
                }
                Err(e) => assert!(e.to_string().contains(&name) || e.to_string().contains("gradient"), "{name}: {e}"),
            }
        }

        // The optimizing JIT.
        let exe = kiln::compile(&g, kiln::Fusion::Fused).unwrap_or_else(|e| panic!("{name}: compile: {e}"));
        let got = exe.run(&f).unwrap_or_else(|e| panic!("{name}: jit: {e}"));
        for (w, v) in want.iter().zip(&got) {
            assert_close(&v.to_f64_vec(), w, 1e-5);
        }
        // A model library, and the emulated GPU: the values, or a refusal naming the op and
        // the backend (collected: the list of gaps is checked below).
        match run_library(&g, &f, &dir) {
            Ok(outs) => {
                for (w, v) in want.iter().zip(&outs) {
                    assert_close(v, w, 1e-5);
                }
            }
            Err(e) => {
                assert!(e.contains(&name) && e.contains("library"), "{name}: library: {e}");
                refused.push(format!("library: {name}"));
            }
        }
        match run(&g, &f, 0, Backend::Gpu(kiln::gpu::DeviceKind::Emulated)) {
            Ok(outs) => {
                for (w, v) in want.iter().zip(&outs) {
                    assert_close(&v.to_f64_vec(), w, 1e-5);
                }
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains(&name), "{name}: emulated GPU: {e}");
                refused.push(format!("gpu: {name}"));
            }
        }
    }
    let all: BTreeSet<&str> = VARIANTS.into_iter().collect();
    assert_eq!(seen, all, "every op has a sample");
    // The ops a backend does not run yet, each refused with an error naming it. A backend
    // that gains one fails this line: update the list (and docs/architecture.md).
    assert_eq!(refused, KNOWN_GAPS, "refusals");
}

/// The backends' known gaps: a model library has no step for `rng` or `scatter_add` (a graph
/// holding one is refused by `kiln build` with an error naming the op; an `iota` is embedded
/// as data).
const KNOWN_GAPS: [&str; 2] = ["library: rng", "library: scatter_add"];
