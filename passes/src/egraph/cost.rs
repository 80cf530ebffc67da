//! The cost model used by extraction: flops plus bytes moved, priced from the shapes in the
//! e-class analysis, aware that chains of elementwise ops will fuse (their intermediates never
//! reach memory) and that a reshape is a view.

use kiln_ir::{ConvKind, Op, TensorType, UnaryOp};

/// Cost of one byte written to or read from memory, relative to one flop. Memory bandwidth
/// here is about 15 GB/s against about 60 GFLOP/s of 128-bit FMA per core.
pub const BYTE: f64 = 4.0;

/// The cost of computing one node once, given its result and operand types.
pub fn node_cost(op: &Op, out: &TensorType, args: &[&TensorType]) -> f64 {
    let n = out.numel() as f64;
    let bytes = out.size_bytes() as f64;
    match op {
        Op::Input { .. } | Op::Param { .. } | Op::Const { .. } => 0.0,
        // Views and index arithmetic that fuse into their consumer.
        Op::Reshape | Op::StopGradient => 0.0,
        Op::Broadcast { .. } | Op::Iota { .. } => 0.1 * n,
        Op::Slice { step, .. } if step.iter().all(|&s| s == 1) => 0.1 * n,
        // Elementwise work fuses: pay the arithmetic, not the traffic.
        Op::Unary(u) => {
            n * match u {
                UnaryOp::Neg | UnaryOp::Abs => 1.0,
                UnaryOp::Recip | UnaryOp::Sqrt => 4.0,
                UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sin | UnaryOp::Cos | UnaryOp::Tanh => 10.0,
            }
        }
        Op::Binary(kiln_ir::BinaryOp::Div) => 4.0 * n,
        Op::Binary(kiln_ir::BinaryOp::Pow) => 20.0 * n,
        Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast => n,
        Op::Rng { .. } => 8.0 * n,
        // Data movement that materializes its result.
        Op::Permute { .. } | Op::Slice { .. } | Op::Pad { .. } | Op::Concat { .. } => BYTE * bytes,
        Op::Gather { .. } | Op::ScatterAdd { .. } => 2.0 * BYTE * bytes,
        // Reductions read their input once.
        Op::Reduce { .. } => args.first().map_or(0.0, |a| a.numel() as f64) + BYTE * bytes,
        // Contractions read their operands from memory (a GEMM does not fuse its inputs).
        Op::Matmul => {
            let a = args[0].dims();
            let k = a[a.len() - 1] as f64;
            2.0 * n * k + BYTE * (bytes + (args[0].size_bytes() + args[1].size_bytes()) as f64)
        }
        Op::Conv2d(c) | Op::Conv2dGradInput(c) | Op::Conv2dGradWeight(c) => {
            // Every multiply-add of the convolution, whichever tensor is produced.
            let kind = op.conv().map_or(ConvKind::Forward, |(k, _)| k);
            let (x, w) = match kind {
                ConvKind::Forward => (args[0], args[1]),
                ConvKind::GradInput => (out, args[1]),
                ConvKind::GradWeight => (args[0], out),
            };
            let wd = w.dims();
            let taps = (wd[1] * wd[2] * wd[3]) as f64;
            let outputs = (x.dims()[0] * wd[0]) as f64;
            let spatial = match kind {
                ConvKind::Forward => (out.dims()[2] * out.dims()[3]) as f64,
                ConvKind::GradInput => (args[0].dims()[2] * args[0].dims()[3]) as f64,
                ConvKind::GradWeight => (args[1].dims()[2] * args[1].dims()[3]) as f64,
            };
            let _ = c;
            2.0 * outputs * spatial * taps + BYTE * bytes
        }
    }
}
