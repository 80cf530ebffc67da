//! The JIT's second tier (`runtime/src/tier2.rs`, `codegen/src/ckernels`): kernels rendered
//! as C and compiled by the system C compiler give the Cranelift tier's bits — every zoo
//! training step, random float kernels at odd sizes with special values, random graphs over
//! every dtype — on one and two threads; the swap happens between runs while other runs go
//! on; a missing compiler, a corrupt cache entry and a compiler killed midway leave the
//! executable on tier 1 or recompile, never load a bad library.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{f32v, mixed, pseudo, scratch::Scratch};
use kiln::ir::{DType, Graph, Value};
use kiln::runtime::tier2::{self, Options, Status};
use proptest::prelude::*;

/// How long a test waits for the C compiler (a debug build compiling many kernels on a busy
/// machine).
const PATIENCE: Duration = Duration::from_secs(600);

/// A fresh cache directory for one test.
fn scratch(name: &str) -> Scratch {
    Scratch::new("tier2", name)
}

/// Tier-2 options compiling into `dir` (whatever the environment says about the tier), every
/// kernel included whatever its rows' length and kept on tier 2 (no trial runs).
fn options(dir: &Path) -> Options {
    let mut o = Options::from_env();
    o.policy = Some(tier2::DEFAULT_POLICY);
    o.off_reason = None;
    o.cache_dir = dir.to_path_buf();
    o.min_inner = 1;
    o.trial_runs = 0;
    o
}

/// `graph` compiled with the tier off (the reference) and with it on and waited for.
fn both_tiers(graph: &Graph, dir: &Path) -> (kiln::Executable, kiln::Executable) {
    let one = kiln::compile(graph, kiln::Fusion::Fused).unwrap().with_tier2(options(dir).off());
    let two = kiln::compile(graph, kiln::Fusion::Fused).unwrap().with_tier2(options(dir));
    assert!(two.wait_for_tier2(PATIENCE), "tier 2 did not come in: {:?}", two.tier2_status());
    (one, two)
}

/// True if `a` and `b` hold the same values bit for bit (any NaN matching any NaN).
fn same_bits(a: &[Value], b: &[Value]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} outputs against {}", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x.ty() != y.ty() {
            return Err(format!("output {i}: {} against {}", x.ty(), y.ty()));
        }
        let differs = |k: usize, p: String, q: String| Err(format!("output {i}[{k}]: {p} against {q}"));
        match (x, y) {
            (Value::F32(p), Value::F32(q)) => {
                for (k, (u, v)) in p.iter().zip(q.iter()).enumerate() {
                    if u.to_bits() != v.to_bits() && !(u.is_nan() && v.is_nan()) {
                        return differs(k, format!("{u:e}"), format!("{v:e}"));
                    }
                }
            }
            (Value::F64(p), Value::F64(q)) => {
                for (k, (u, v)) in p.iter().zip(q.iter()).enumerate() {
                    if u.to_bits() != v.to_bits() && !(u.is_nan() && v.is_nan()) {
                        return differs(k, format!("{u:e}"), format!("{v:e}"));
                    }
                }
            }
            _ if x == y => {}
            _ => return Err(format!("output {i} differs: {x:?} against {y:?}")),
        }
    }
    Ok(())
}

/// Pseudo-random inputs for `g`'s leaves: floats in [-3, 3), integer leaves 0 (class indices).
fn feeds(g: &Graph, salt: u64) -> HashMap<String, Value> {
    g.inputs()
        .enumerate()
        .map(|(i, (_, n))| {
            let r = pseudo(n.ty.numel(), salt + i as u64);
            let v = match n.ty.dtype {
                DType::F32 => f32v(n.ty.dims(), &r.iter().map(|x| (x * 3.0) as f32).collect::<Vec<_>>()),
                DType::F64 => common::f64v(n.ty.dims(), &r.iter().map(|x| x * 3.0).collect::<Vec<_>>()),
                _ => Value::splat(&n.ty, 0.0),
            };
            (n.op.leaf_name().unwrap().to_string(), v)
        })
        .collect()
}

/// Every zoo model's Adam training step (forward, backward and update) gives the same bits on
/// both tiers, and tier 2 the same bits on one and two threads.
#[test]
fn every_zoo_training_step_gives_the_same_bits_on_both_tiers() {
    use kiln::frontend::optim::Optimizer;
    let dir = scratch("zoo");
    for e in kiln::zoo::CATALOG {
        let m = (e.build)(4, DType::F32).unwrap().remove(0);
        let step = kiln::train::train_step(&m, &Optimizer::adam()).unwrap().graph;
        let mut f = kiln::ir::init::init_params(&step, 3);
        for (name, v) in feeds(&step, 40) {
            f.entry(name).or_insert(v);
        }
        let (one, two) = both_tiers(&step, &dir);
        match two.tier2_status() {
            Status::Active { kernels, .. } => assert!(kernels > 0, "{}: no kernel on tier 2", e.name),
            s => panic!("{}: {s:?}", e.name),
        }
        let want = one.run(&f).unwrap();
        let got = two.run(&f).unwrap();
        same_bits(&got, &want).unwrap_or_else(|d| panic!("{}: tier 2 against tier 1: {d}", e.name));
        let two_threads = two.with_threads(2).run(&f).unwrap();
        same_bits(&two_threads, &got).unwrap_or_else(|d| panic!("{}: tier 2 on two threads: {d}", e.name));
    }
}

/// A random float kernel: `y = f(x)` over `[rows, cols]` with broadcasts, transcendentals,
/// `max`/`min`, divisions, selects, and a reduction along the rows or down the columns.
fn float_kernel_text(rows: usize, cols: usize, ops: &[u8]) -> String {
    let mut body = String::new();
    let ty = format!("f32[{rows},{cols}]");
    let mut last = "%x".to_string();
    for (n, op) in ops.iter().enumerate() {
        let v = format!("%v{n}");
        let line = match op % 14 {
            0 => format!("{v} = exp {last} : {ty}"),
            1 => format!("{v} = log {last} : {ty}"),
            2 => format!("{v} = tanh {last} : {ty}"),
            3 => format!("{v} = sin {last} : {ty}"),
            4 => format!("{v} = cos {last} : {ty}"),
            5 => format!("{v} = max {last}, %y : {ty}"),
            6 => format!("{v} = min {last}, %y : {ty}"),
            7 => format!("{v} = div {last}, %y : {ty}"),
            8 => format!("{v}b = broadcast %r {{dims=[0]}} : {ty}\n  {v} = mul {last}, {v}b : {ty}"),
            9 => format!("{v}c = cmp_lt {last}, %y : bool[{rows},{cols}]\n  {v} = select {v}c, {last}, %y : {ty}"),
            10 => format!("{v}m = mul {last}, %y : {ty}\n  {v} = add {v}m, %x : {ty}"),
            11 => format!("{v} = sqrt {last} : {ty}"),
            12 => format!("{v} = recip {last} : {ty}"),
            _ => format!("{v} = abs {last} : {ty}"),
        };
        body.push_str(&format!("  {line}\n"));
        last = v;
    }
    let reduce = match ops.first().copied().unwrap_or(0) % 3 {
        0 => format!(
            "  %s = reduce_sum {last} {{axes=[1]}} : f32[{rows}]\n  %t = reduce_max {last} {{axes=[0]}} : f32[{cols}]\n"
        ),
        1 => format!(
            "  %s = reduce_max {last} {{axes=[1]}} : f32[{rows}]\n  %t = reduce_sum {last} {{axes=[0]}} : f32[{cols}]\n"
        ),
        _ => format!(
            "  %s = reduce_sum {last} {{axes=[1]}} : f32[{rows}]\n  %t = reduce_sum {last} {{axes=[0]}} : f32[{cols}]\n"
        ),
    };
    format!(
        "func @k(%x: {ty}, %y: {ty}, %r: f32[{rows}]) -> (e: {ty}, s: f32[{rows}], t: f32[{cols}]) {{\n{body}{reduce}  return {last}, %s, %t\n}}\n"
    )
}

/// Inputs with special values among ordinary ones: ±0, ±∞, NaN, huge and tiny magnitudes,
/// subnormals, arguments past the inline `sin`/`cos` range.
fn special_inputs(g: &Graph, seed: u64) -> HashMap<String, Value> {
    const SPECIAL: [f32; 12] =
        [0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e30, -1e30, 1e-40, -3e-39, 9000.0, 88.0, -90.0];
    g.inputs()
        .enumerate()
        .map(|(i, (_, n))| {
            let r = pseudo(n.ty.numel(), seed * 8 + i as u64);
            let data: Vec<f32> = r
                .iter()
                .enumerate()
                .map(|(k, x)| if (k * 7 + i) % 11 == 3 { SPECIAL[(k + i) % SPECIAL.len()] } else { (x * 6.0) as f32 })
                .collect();
            (n.op.leaf_name().unwrap().to_string(), f32v(n.ty.dims(), &data))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: mixed::cases(10), ..ProptestConfig::default() })]

    /// Random float kernels, rows of 1 to 41 elements (the eight-lane, four-lane and tail
    /// paths of row reductions), with special values: the same bits on both tiers.
    #[test]
    fn random_float_kernels_give_the_same_bits_on_both_tiers(
        rows in 1usize..5,
        cols in 1usize..42,
        ops in proptest::collection::vec(any::<u8>(), 1..7),
        seed in 0u64..1000,
    ) {
        let text = float_kernel_text(rows, cols, &ops);
        let g = kiln::ir::parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        kiln::ir::verify(&g).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let dir = scratch("float");
        let (one, two) = both_tiers(&g, &dir);
        let f = special_inputs(&g, seed);
        let (want, got) = (one.run(&f).unwrap(), two.run(&f).unwrap());
        if let Err(d) = same_bits(&got, &want) {
            panic!("tier 2 against tier 1: {d}\n{text}");
        }
    }

    /// Random graphs over every dtype (`common::mixed`: every op kind followed by every
    /// cast): the same bits on both tiers.
    #[test]
    fn mixed_dtype_graphs_give_the_same_bits_on_both_tiers(
        steps in proptest::collection::vec((0u8..8, 0usize..64, 0usize..64, any::<u8>()), 1..10),
    ) {
        let (g, text) = mixed::mixed_graph(&steps);
        let dir = scratch("mixed");
        let one = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(options(&dir).off());
        let two = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(options(&dir));
        // A graph without fused kernels has nothing to compile: it stays where it is.
        if two.groups().any(|(_, k)| k.is_some()) {
            prop_assert!(two.wait_for_tier2(PATIENCE), "{:?}", two.tier2_status());
        }
        let f = mixed::mixed_inputs(steps.len() as u64);
        let (want, got) = (one.run(&f), two.run(&f));
        match (want, got) {
            (Ok(want), Ok(got)) => {
                if let Err(d) = same_bits(&got, &want) {
                    panic!("tier 2 against tier 1: {d}\n{text}");
                }
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("tier 1 {a:?}, tier 2 {b:?}\n{text}"),
        }
    }
}

/// A small graph with a few kernels (a row softmax and an elementwise tail).
fn softmax_graph() -> Graph {
    kiln::ir::parse_graph(
        "func @s(%x: f32[8,37]) -> (y: f32[8,37]) {
  %m = reduce_max %x {axes=[1]} : f32[8]
  %mb = broadcast %m {dims=[0]} : f32[8,37]
  %d = sub %x, %mb : f32[8,37]
  %e = exp %d : f32[8,37]
  %s = reduce_sum %e {axes=[1]} : f32[8]
  %sb = broadcast %s {dims=[0]} : f32[8,37]
  %y = div %e, %sb : f32[8,37]
  return %y
}
",
    )
    .unwrap()
}

/// Without a C compiler the executable stays on tier 1, says why, and computes the same.
#[test]
fn without_a_compiler_the_executable_stays_on_tier_1() {
    let g = softmax_graph();
    let dir = scratch("nocc");
    let mut o = options(&dir);
    o.compiler = dir.join("no-such-compiler").display().to_string();
    let exe = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(o);
    assert!(!exe.wait_for_tier2(PATIENCE));
    match exe.tier2_status() {
        Status::Failed(why) => assert!(why.contains("no C compiler"), "{why}"),
        s => panic!("{s:?}"),
    }
    assert!(exe.groups().all(|(_, k)| k.is_none_or(|k| k.tier() == 1)));
    let f = feeds(&g, 9);
    let reference = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(options(&dir).off());
    same_bits(&exe.run(&f).unwrap(), &reference.run(&f).unwrap()).unwrap();
}

/// The cache's library files (`.so` and `.sum`) in `dir`.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "so" || x == "sum"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    v.sort();
    v
}

/// A second executable of the same kernels loads the cached library; a corrupt one is never
/// loaded but compiled again.
#[test]
fn a_corrupt_cache_entry_is_compiled_again_never_loaded() {
    let g = softmax_graph();
    let dir = scratch("corrupt");
    let f = feeds(&g, 5);
    let (one, first) = both_tiers(&g, &dir);
    let want = one.run(&f).unwrap();
    assert!(matches!(first.tier2_status(), Status::Active { cached: false, .. }), "{:?}", first.tier2_status());
    let cached = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(options(&dir));
    assert!(cached.wait_for_tier2(PATIENCE));
    assert!(matches!(cached.tier2_status(), Status::Active { cached: true, .. }), "{:?}", cached.tier2_status());
    drop((first, cached));
    // Replace the library with other bytes (as a disk error or a stray write would), as a new
    // file: writing into the old one would change code this process may still have mapped.
    let so = entries(&dir).into_iter().find(|p| p.extension().is_some_and(|x| x == "so")).unwrap();
    let mut bytes = std::fs::read(&so).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..].iter_mut().for_each(|b| *b = 0xCC);
    kiln::runtime::files::write(&so, &bytes).unwrap();
    let again = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(options(&dir));
    assert!(again.wait_for_tier2(PATIENCE), "{:?}", again.tier2_status());
    assert!(matches!(again.tier2_status(), Status::Active { cached: false, .. }), "{:?}", again.tier2_status());
    same_bits(&again.run(&f).unwrap(), &want).unwrap();
    // The entry is whole again: the next executable loads it.
    let next = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(options(&dir));
    assert!(next.wait_for_tier2(PATIENCE));
    assert!(matches!(next.tier2_status(), Status::Active { cached: true, .. }), "{:?}", next.tier2_status());
    same_bits(&next.run(&f).unwrap(), &want).unwrap();
}

/// A compiler killed while writing its output leaves no cache entry: the tier fails for that
/// executable (which stays on tier 1), and the next one compiles afresh.
#[test]
fn a_compiler_killed_midway_leaves_no_entry() {
    use std::os::unix::fs::PermissionsExt as _;
    let g = softmax_graph();
    let dir = scratch("killed");
    // A "compiler" that starts writing its output, then is killed.
    let fake = dir.join("dying-cc");
    std::fs::write(
        &fake,
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then out=\"$2\"; fi; shift; done\nprintf 'half a library' > \"$out\"\nkill -9 $$\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut o = options(&dir);
    o.compiler = fake.display().to_string();
    let exe = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(o);
    assert!(!exe.wait_for_tier2(PATIENCE));
    assert!(matches!(exe.tier2_status(), Status::Failed(_)), "{:?}", exe.tier2_status());
    assert_eq!(entries(&dir), Vec::<PathBuf>::new(), "a killed compile left an entry");
    let f = feeds(&g, 6);
    let (one, two) = both_tiers(&g, &dir);
    assert!(matches!(two.tier2_status(), Status::Active { cached: false, .. }), "{:?}", two.tier2_status());
    same_bits(&exe.run(&f).unwrap(), &one.run(&f).unwrap()).unwrap();
    same_bits(&two.run(&f).unwrap(), &one.run(&f).unwrap()).unwrap();
}

/// Two executables of one graph on two threads, sharing one cache, run on while their
/// compiles are under way and after their swaps, every result the reference's bits.
#[test]
fn runs_go_on_while_the_compiler_works_and_after_the_swap() {
    let g = softmax_graph();
    let dir = scratch("concurrent");
    let f = feeds(&g, 7);
    let want = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(options(&dir).off()).run(&f).unwrap();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut o = options(&dir);
                    o.policy = Some(tier2::Policy { runs: 2, millis: 10_000 });
                    let exe = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(o);
                    let (mut during, mut runs) = (0, 0);
                    let start = std::time::Instant::now();
                    while start.elapsed() < PATIENCE {
                        let got = exe.run(&f).unwrap();
                        same_bits(&got, &want).unwrap_or_else(|d| panic!("run {runs}: {d}"));
                        runs += 1;
                        match exe.tier2_status() {
                            Status::Compiling => during += 1,
                            Status::Active { .. } => break,
                            Status::Waiting => {}
                            s => panic!("{s:?}"),
                        }
                    }
                    let got = exe.run(&f).unwrap();
                    same_bits(&got, &want).unwrap();
                    (during, exe.tier2_status())
                })
            })
            .collect();
        let mut total = 0;
        for w in workers {
            let (during, status) = w.join().unwrap();
            assert!(matches!(status, Status::Active { .. }), "{status:?}");
            total += during;
        }
        assert!(total > 0, "no run went on while a compile was under way");
    });
}

/// `KILN_TIER2=0` keeps `kiln bench` on tier 1 and says so once.
#[test]
fn kiln_tier2_0_turns_the_tier_off() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["bench", "benches/gelu_scalar_2p20.kir", "--runs", "2", "--json"])
        .env("KILN_TIER2", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"tier\": 1"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("tier 2 is off (KILN_TIER2=0)").count(), 1, "{stderr}");
}

/// Training updates written in place (each parameter and its Adam moments overwritten by the
/// kernel that computes them) give the same bits on tier 2 as on tier 1, run after run.
#[test]
fn updates_in_place_give_the_same_bits_on_tier_2() {
    use kiln::frontend::optim::Optimizer;
    let dir = scratch("inplace");
    for model in [kiln::zoo::mnist_mlp(8).unwrap(), kiln::zoo::lenet5(2).unwrap()] {
        let step = kiln::train::train_step(&model, &Optimizer::adam()).unwrap();
        let (mut one, mut two) = both_tiers(&step.graph, &dir);
        assert_eq!(one.update_in_place(&step.updates).len(), step.updates.len());
        assert_eq!(two.update_in_place(&step.updates).len(), step.updates.len());
        let mut f = kiln::ir::init::init_params(&step.graph, 3);
        for (name, v) in feeds(&step.graph, 50) {
            f.entry(name).or_insert(v);
        }
        let mut g = f.clone();
        for run in 0..3 {
            let (mut want, mut got) = (Vec::new(), Vec::new());
            one.run_updating(&mut f, &mut want).unwrap();
            two.run_updating(&mut g, &mut got).unwrap();
            same_bits(&got, &want).unwrap_or_else(|d| panic!("run {run}: {d}"));
            // The updated values are the next run's inputs.
            for (o, i) in &step.updates {
                let pos = step.graph.outputs().iter().position(|p| &p.name == o).unwrap();
                f.insert(i.clone(), want[pos].clone());
                g.insert(i.clone(), got[pos].clone());
            }
        }
    }
}

/// Kernels whose rows are shorter than one 512-bit vector stay on tier 1 by default
/// (`tier2::MIN_INNER`), window reductions (a column sum here) apart; the others go.
#[test]
fn kernels_with_short_rows_stay_on_tier_1_unless_they_reduce_a_window() {
    let g = kiln::ir::parse_graph(
        "func @p(%x: f32[64,8]) -> (y: f32[64,8], s: f32[8], t: f32[64,5]) {\n  %e = exp %x : f32[64,8]\n  %s = reduce_sum %x {axes=[0]} : f32[8]\n  %p = slice %x {start=[0,0], stop=[64,5], step=[1,1]} : f32[64,5]\n  %t = tanh %p : f32[64,5]\n  return %e, %s, %t\n}\n",
    )
    .unwrap();
    let dir = scratch("short");
    let mut o = options(&dir);
    o.min_inner = tier2::MIN_INNER;
    // `exp` runs as one loop of 512 elements; the column sums keep rows of 8 (a window
    // reduction); `tanh` of the slice keeps rows of 5.
    let exe = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(o);
    assert!(exe.wait_for_tier2(PATIENCE));
    let goes = |k: &kiln::codegen::cpu::CompiledKernel| {
        k.kernel.space.last().is_some_and(|&n| n >= 16) || k.kernel.window_axes().is_some()
    };
    let kernels: Vec<_> = exe.groups().filter_map(|(_, k)| k).collect();
    let window = kernels.iter().filter(|k| k.kernel.window_axes().is_some()).count();
    let going = kernels.iter().filter(|k| goes(k)).count();
    assert_eq!(
        (kernels.len(), going, window),
        (3, 2, 1),
        "kernels: {:?}",
        kernels.iter().map(|k| &k.kernel.space).collect::<Vec<_>>()
    );
    match exe.tier2_status() {
        Status::Active { kernels: on, .. } => assert_eq!(on, going),
        s => panic!("{s:?}"),
    }
    assert!(kernels.iter().all(|k| (k.tier() == 2) == goes(k)));
    // The same values on both tiers.
    let x: Vec<f32> = pseudo(512, 5).into_iter().map(|v| v as f32).collect();
    let feeds: HashMap<String, Value> = [("x".to_string(), f32v(&[64, 8], &x))].into();
    let tier1 = kiln::compile(&g, kiln::Fusion::Fused).unwrap();
    same_bits(&exe.run(&feeds).unwrap(), &tier1.run(&feeds).unwrap()).unwrap();
}

/// After the library comes in, the trial runs time every kernel on both tiers (alternating
/// run by run) and then keep each on the faster: results are the same bits all along.
#[test]
fn the_trial_runs_keep_each_kernel_on_its_faster_tier_without_changing_a_bit() {
    let g = softmax_graph();
    let dir = scratch("trial");
    let f = feeds(&g, 8);
    let one = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(options(&dir).off());
    let mut o = options(&dir);
    o.trial_runs = tier2::TRIAL_RUNS;
    let two = kiln::compile(&g, kiln::Fusion::Fused).unwrap().with_tier2(o);
    assert!(two.wait_for_tier2(PATIENCE));
    let want = one.run(&f).unwrap();
    assert!(matches!(two.tier2_status(), Status::Active { measured: false, .. }), "{:?}", two.tier2_status());
    for run in 0..=tier2::TRIAL_RUNS {
        // Even trial runs on tier 2, odd ones on tier 1.
        let on = two.groups().filter_map(|(_, k)| k).filter(|k| k.has_tier2()).count();
        assert!(on > 0);
        same_bits(&two.run(&f).unwrap(), &want).unwrap_or_else(|d| panic!("run {run}: {d}"));
        if run < tier2::TRIAL_RUNS {
            let tier = if run % 2 == 0 { 2 } else { 1 };
            assert!(
                two.groups().filter_map(|(_, k)| k).filter(|k| k.has_tier2()).all(|k| k.tier() == tier),
                "run {run}"
            );
        }
    }
    match two.tier2_status() {
        Status::Active { measured: true, kernels, .. } => {
            let on = two.groups().filter_map(|(_, k)| k).filter(|k| k.tier() == 2).count();
            assert_eq!(on, kernels);
        }
        s => panic!("{s:?}"),
    }
    same_bits(&two.run(&f).unwrap(), &want).unwrap();
}
