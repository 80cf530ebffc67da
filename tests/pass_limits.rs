//! Size and memory bounds of the optimizer's passes, measured by allocation, which is
//! deterministic (no wall-clock thresholds): every pass of the pipeline on a 100,000-node chain
//! and a 100,000-node wide graph, its peak heap growing linearly with the graph (a quadratic
//! pass, such as the exact DAG extractor's per-class sets, grows 16 times per 4 times the
//! nodes); and the e-graph on the graph whose rules once grew it to 19 GB.
//!
//! The peak is read from a counting global allocator, so the checks run one after another in
//! one test (tests of a binary run on several threads).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln::ir::{BinaryOp, DType, Graph, Literal, Op, TensorType, UnaryOp};
use kiln::passes::Pipeline;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator with its own arguments; the
// counters are only arithmetic on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract for `alloc`, passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the new size is the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The heap `f` needs above what was allocated when it started, at its peak.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - base)
}

fn ty() -> TensorType {
    TensorType::new(DType::F32, [4])
}

/// `y = neg(neg(...neg(x)))`, `n` nodes deep.
fn chain(n: usize) -> Graph {
    let mut g = Graph::new("chain");
    let mut v = g.input("x", ty()).unwrap();
    for _ in 0..n {
        v = g.add(Op::Unary(UnaryOp::Neg), &[v]).unwrap();
    }
    g.add_output("y", v).unwrap();
    g
}

/// About `n` nodes: `x + c_i` for `n / 4` distinct constants, each scaled, then summed by a
/// balanced tree of adds.
fn wide(n: usize) -> Graph {
    let mut g = Graph::new("wide");
    let x = g.input("x", ty()).unwrap();
    let mut layer: Vec<_> = (0..n / 4)
        .map(|i| {
            let c = g.add_typed(Op::Const { value: Literal(i as f64) }, &[], ty()).unwrap();
            let s = g.add(Op::Binary(BinaryOp::Add), &[x, c]).unwrap();
            g.add(Op::Binary(BinaryOp::Mul), &[s, x]).unwrap()
        })
        .collect();
    while layer.len() > 1 {
        layer = layer
            .chunks(2)
            .map(|p| if p.len() == 2 { g.add(Op::Binary(BinaryOp::Add), p).unwrap() } else { p[0] })
            .collect();
    }
    g.add_output("y", layer[0]).unwrap();
    g
}

#[test]
fn passes_grow_linearly_and_the_egraph_stays_bounded() {
    // The e-graph case first: `min(aᵀ, aᵀ)` once made sinking the permute propose billions of
    // rewrites. Its whole run now stays within a few MiB.
    let text = "func @g(%x: f32[3,4]) -> (y: f32[4,3]) {\n  %a = permute %x {perm=[1,0]} : f32[4,3]\n  %b = min %a, %a : f32[4,3]\n  return %b\n}\n";
    let g = kiln::ir::parse_graph(text).unwrap();
    let ((optimized, report), peak) = peak_of(|| kiln::passes::egraph::optimize(&g, &Default::default()).unwrap());
    assert!(peak < 64 << 20, "the e-graph used {} MiB on the min/permute graph", peak >> 20);
    assert!(report.stages.iter().all(|s| s.enodes <= 50_000), "{report}");
    assert_eq!(optimized.live_mask().iter().filter(|l| **l).count(), 2, "min(a, a) is a\n{optimized}");

    for pass in kiln::passes::pipeline::known_passes() {
        let pipeline = Pipeline::parse(pass).unwrap();
        for (shape, build) in [("chain", chain as fn(usize) -> Graph), ("wide", wide)] {
            let mut peaks = Vec::new();
            for n in [25_000, 100_000] {
                let g = build(n);
                let ((out, _), peak) = peak_of(|| pipeline.run(&g).unwrap());
                assert_eq!(out.outputs().len(), 1);
                peaks.push(peak);
            }
            let per_node = peaks[1] / 100_000;
            println!("{pass} on a {shape}: peak {} KiB at 25k nodes, {} KiB at 100k", peaks[0] >> 10, peaks[1] >> 10);
            // Linear: 4x the nodes, well under 16x the memory; and a bounded cost per node.
            assert!(peaks[1] < 8 * peaks[0].max(1 << 20), "{pass} on a {shape}: {peaks:?} bytes");
            assert!(per_node < 16 << 10, "{pass} on a {shape}: {per_node} bytes a node");
        }
    }
}
