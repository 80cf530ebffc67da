//! A model library's `NAME_run_checked` under random descriptors: counts, dtypes, ranks and
//! shapes (negative, zero, huge, off by one), NULL arrays, NULL data and NULL shapes, starting
//! from the right descriptors and mutating them. The call succeeds exactly when every
//! descriptor is right, and then computes what the interpreter computes; otherwise it returns
//! an error code, `NAME_last_error` says why, and no output buffer is touched. A crash would
//! end the test process. `KILN_FUZZ_CASES` raises the number of cases.

mod common;

use std::collections::HashMap;

use common::mixed;
use kiln::ir::{Value, interp, parse_graph};
use proptest::prelude::*;

/// `NAME_run_checked`'s buffer descriptor (`kiln_tensor` in the header).
#[repr(C)]
#[derive(Clone, Copy)]
struct Tensor {
    data: *mut u8,
    dtype: i32,
    rank: i32,
    shape: *const i64,
}

/// Two inputs of other dtypes and ranks, two outputs: `y = x + cast(k)` and `s = sum(x)` in f64.
const GRAPH: &str = "func @d(%x: f32[2,3], %k: i32[3]) -> (y: f32[2,3], s: f64[]) {
  %c = cast %k : f32[3]
  %cb = broadcast %c {dims=[1]} : f32[2,3]
  %y = add %x, %cb : f32[2,3]
  %x64 = cast %x : f64[2,3]
  %s = reduce_sum %x64 {axes=[0,1]} : f64[]
  return %y, %s
}
";

/// The right descriptors: (dtype code, shape) of the inputs, then the outputs.
const INPUTS: [(i32, &[i64]); 2] = [(0, &[2, 3]), (2, &[3])];
const OUTPUTS: [(i32, &[i64]); 2] = [(0, &[2, 3]), (1, &[])];

/// One buffer descriptor as a case describes it.
#[derive(Clone, Debug)]
struct Desc {
    null_data: bool,
    dtype: i32,
    /// `None`: a NULL shape pointer with `rank` as given.
    shape: Option<Vec<i64>>,
    rank: i32,
}

fn right(d: (i32, &[i64])) -> Desc {
    Desc { null_data: false, dtype: d.0, shape: Some(d.1.to_vec()), rank: d.1.len() as i32 }
}

/// A mutation of one descriptor field by `kind` (0 and 8 up: none).
fn mutate(d: Desc, kind: u8, value: i64) -> Desc {
    let odd = [-1, 0, 1, 2, 3, 4, 1 << 40, i64::MAX, i64::MIN][(value.unsigned_abs() % 9) as usize];
    let mut d = d;
    match kind {
        0 | 8.. => {}
        1 => d.null_data = true,
        2 => d.dtype = [-1, 0, 1, 2, 3, 4, 5, 99, i32::MIN][(value.unsigned_abs() % 9) as usize],
        3 => {
            // A shape entry changed (when there is one).
            if let Some(s) = d.shape.as_mut().filter(|s| !s.is_empty()) {
                let i = value.unsigned_abs() as usize % s.len();
                s[i] = odd;
            }
        }
        4 => {
            // One more or one fewer axis, the shape array sized to match.
            let s = d.shape.get_or_insert_with(Vec::new);
            if value % 2 == 0 && !s.is_empty() {
                s.pop();
            } else {
                s.push(odd);
            }
            d.rank = s.len() as i32;
        }
        5 => {
            // A rank that disagrees with the shape array: only ever smaller, so the library
            // never reads past what the caller gave; negative ranks included.
            d.rank = d.rank.min(-((value.unsigned_abs() % 3) as i32) + d.rank - 1);
        }
        6 => {
            d.shape = None;
        }
        _ => {
            // A scalar as a vector of one, or a vector of one as a scalar.
            d.shape = Some(if d.rank == 0 { vec![1] } else { vec![] });
            d.rank = d.shape.as_ref().map_or(0, |s| s.len() as i32);
        }
    }
    d
}

fn descs(right_ones: &[(i32, &[i64])], count: usize, edits: &[(u8, i64)]) -> Vec<Desc> {
    (0..count)
        .map(|i| {
            let base = right_ones
                .get(i)
                .map_or(Desc { null_data: false, dtype: 0, shape: Some(vec![2]), rank: 1 }, |d| right(*d));
            let (kind, value) = edits.get(i).copied().unwrap_or((0, 0));
            mutate(base, kind, value)
        })
        .collect()
}

fn is_right(d: &[Desc], right_ones: &[(i32, &[i64])]) -> bool {
    d.len() == right_ones.len()
        && d.iter().zip(right_ones).all(|(d, r)| {
            // A scalar needs no shape array: NULL is as good as an empty one.
            let shape_ok = d.shape.as_deref() == Some(r.1) || (d.shape.is_none() && r.1.is_empty());
            !d.null_data && d.dtype == r.0 && shape_ok && d.rank == r.1.len() as i32
        })
}

struct Library {
    _lib: libloading::Library,
    run_checked: unsafe extern "C" fn(*const Tensor, i32, *const Tensor, i32) -> i32,
    last_error: unsafe extern "C" fn() -> *const std::ffi::c_char,
}

fn library() -> Library {
    // Removed once loaded (the mapping outlives the file); one directory per thread.
    let dir = common::scratch::Scratch::new("descriptors", &format!("{:?}", std::thread::current().id()));
    let g = parse_graph(GRAPH).unwrap();
    let lib = kiln::aot::build(&g, &HashMap::new(), &kiln::aot::BuildOptions::new("d", &dir)).unwrap();
    // SAFETY: the library was just built by kiln; the symbols have the C signatures of its
    // header (`docs/aot.md`), and the `Library` keeps it loaded while they are used.
    unsafe {
        let l = libloading::Library::new(&lib.library).unwrap();
        let run_checked = *l.get(b"d_run_checked").unwrap();
        let last_error = *l.get(b"d_last_error").unwrap();
        Library { _lib: l, run_checked, last_error }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: mixed::cases(256), ..Default::default() })]

    #[test]
    fn run_checked_accepts_exactly_the_right_descriptors(
        counts in (0usize..4, 0usize..4, any::<bool>()),
        edits in proptest::collection::vec((0u8..16, any::<i64>()), 4),
        null_arrays in (0u8..8, 0u8..8),
    ) {
        thread_local!(static LIB: Library = library());
        // Right counts half of the time; edits of kind 8..16 are none, so half the
        // descriptors are right.
        let (n_in, n_out) = if counts.2 { (2, 2) } else { (counts.0, counts.1) };
        let ins = descs(&INPUTS, n_in, &edits[..2]);
        let outs = descs(&OUTPUTS, n_out, &edits[2..]);
        // Every data buffer is big enough for any right descriptor (so a right call is safe),
        // filled with a sentinel to see what is written.
        let x = [1.5f32, -2.0, 0.25, 4.0, 8.0, -0.5];
        let k = [3i32, -1, 7];
        let mut in_bufs: Vec<Vec<u8>> = vec![x.iter().flat_map(|v| v.to_le_bytes()).collect(), k.iter().flat_map(|v| v.to_le_bytes()).collect()];
        in_bufs.resize(n_in.max(2), vec![0; 64]);
        for b in &mut in_bufs {
            b.resize(64, 0);
        }
        let mut out_bufs = vec![vec![0xABu8; 64]; n_out.max(2)];
        let shapes: Vec<Vec<i64>> = ins.iter().chain(&outs).map(|d| d.shape.clone().unwrap_or_default()).collect();
        let tensor = |d: &Desc, data: *mut u8, shape: &Vec<i64>| Tensor {
            data: if d.null_data { std::ptr::null_mut() } else { data },
            dtype: d.dtype,
            rank: d.rank,
            shape: if d.shape.is_none() { std::ptr::null() } else { shape.as_ptr() },
        };
        let in_ts: Vec<Tensor> = ins.iter().enumerate().map(|(i, d)| tensor(d, in_bufs[i].as_mut_ptr(), &shapes[i])).collect();
        let out_ts: Vec<Tensor> = outs.iter().enumerate().map(|(i, d)| tensor(d, out_bufs[i].as_mut_ptr(), &shapes[n_in + i])).collect();
        // A NULL array one time in eight (with a nonzero count: a lie the library must catch).
        let in_ptr = if null_arrays.0 == 0 { std::ptr::null() } else { in_ts.as_ptr() };
        let out_ptr = if null_arrays.1 == 0 { std::ptr::null() } else { out_ts.as_ptr() };
        let expect_ok = is_right(&ins, &INPUTS) && is_right(&outs, &OUTPUTS) && !in_ptr.is_null() && !out_ptr.is_null();
        let (code, message) = LIB.with(|lib| {
            // SAFETY: every non-NULL data pointer has 64 bytes (more than any right descriptor
            // needs), every shape pointer has at least `rank` entries (mutations only shrink
            // the rank below the array or size the array to it), and the arrays hold exactly
            // the counts passed; the library must check the rest.
            unsafe {
                let code = (lib.run_checked)(in_ptr, n_in as i32, out_ptr, n_out as i32);
                let m = (lib.last_error)();
                (code, if m.is_null() { String::new() } else { std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned() })
            }
        });
        if expect_ok {
            prop_assert_eq!(code, 0, "{}", message);
            let g = parse_graph(GRAPH).unwrap();
            let feeds = HashMap::from([
                ("x".to_string(), Value::from_vec(&[2, 3], x.to_vec()).unwrap()),
                ("k".to_string(), Value::from_vec(&[3], k.to_vec()).unwrap()),
            ]);
            let want = interp::run(&g, &feeds).unwrap();
            let y: Vec<f32> = out_bufs[0][..24].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            let s = f64::from_le_bytes(out_bufs[1][..8].try_into().unwrap());
            prop_assert_eq!(want[0].to_vec::<f32>().unwrap(), y);
            prop_assert_eq!(want[1].to_f64_vec(), vec![s]);
            prop_assert!(out_bufs[0][24..].iter().chain(&out_bufs[1][8..]).all(|b| *b == 0xAB), "wrote past an output");
        } else {
            prop_assert!(code != 0, "accepted wrong descriptors: inputs {:?} outputs {:?}", ins, outs);
            prop_assert!(!message.is_empty(), "error {} without a message", code);
            prop_assert!(out_bufs.iter().all(|b| b.iter().all(|x| *x == 0xAB)), "error {} ({}) but an output was written", code, message);
        }
    }
}
