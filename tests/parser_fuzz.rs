//! The parser and verifier never panic: mutated `.kir` text gives `Ok` or `Err`, nothing else;
//! and mutated graphs that verify go through the optimizer and the JIT to a result that matches
//! the interpreter, or to one clear error, never a panic or a crash.

use kiln::ir::{parse_module, verify};
use proptest::prelude::*;

#[path = "../fuzz/src/checks.rs"]
mod checks;

/// Cases per property: `default`, or `KILN_FUZZ_CASES` for a longer run.
fn cases(default: u32) -> u32 {
    std::env::var("KILN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed_texts() -> Vec<String> {
    let mut v: Vec<String> = ["xor_mlp", "lenet5", "gan"]
        .iter()
        .map(|n| {
            let e = kiln::zoo::entry(n).unwrap();
            let graphs: Vec<_> = (e.build)(1, kiln::ir::DType::F32).unwrap().into_iter().map(|m| m.graph).collect();
            kiln::ir::print::module_to_string(&graphs)
        })
        .collect();
    v.push("func @f(%x: f32[2,3], %s: i64[]) -> (y: f32[3,2], z: f32[2,3]) {\n  %0 = permute %x {perm=[1,0]} : f32[3,2]\n  %1 = rng %s {dist=normal, stream=3} : f32[2,3]\n  %2 = pad %x {low=[0,0], high=[0,0], value=-inf} : f32[2,3]\n  return %0, %1\n}\n".into());
    v
}

/// One edit of the text: delete, duplicate or replace a span, or insert a token.
#[derive(Clone, Debug)]
enum Edit {
    Delete(usize, usize),
    Duplicate(usize, usize),
    Insert(usize, &'static str),
    Replace(usize, usize, &'static str),
    /// Replace the n-th number of the text (extents, attributes, literals): the syntax stays
    /// valid, so the verifier, the passes and the backends see the new values.
    Number(usize, &'static str),
}

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "5",
    "7",
    "16",
    "255",
    "65536",
    "2147483648",
    "4000000000",
    "281474976710656",
    "18446744073709551615",
];

const TOKENS: &[&str] = &[
    "%",
    "@",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "=",
    "->",
    "-",
    "0",
    "99999999999999999999",
    "4000000000",
    "f32[4000000000,4000000000]",
    "-1",
    "f32",
    "i64",
    "bool",
    "[]",
    "[0]",
    "1e400",
    "nan",
    "func",
    "return",
    "param",
    "%0",
    "%999",
    "matmul",
    "reshape",
    "conv2d",
    "{axis=7}",
    "\n",
    " ",
    "é",
    ";",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), 0usize..80).prop_map(|(a, n)| Edit::Duplicate(a, n)),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(a, t)| Edit::Insert(a, t)),
        (any::<usize>(), 0usize..10, prop::sample::select(TOKENS)).prop_map(|(a, n, t)| Edit::Replace(a, n, t)),
        (any::<usize>(), prop::sample::select(NUMBERS)).prop_map(|(n, t)| Edit::Number(n, t)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match *e {
            Edit::Delete(a, n) => {
                let a = a % len;
                let b = (a + n).min(chars.len());
                chars.drain(a.min(chars.len())..b);
            }
            Edit::Duplicate(a, n) => {
                let a = (a % len).min(chars.len());
                let b = (a + n).min(chars.len());
                let span: Vec<char> = chars[a..b].to_vec();
                chars.splice(b..b, span);
            }
            Edit::Insert(a, t) => {
                let a = (a % len).min(chars.len());
                chars.splice(a..a, t.chars());
            }
            Edit::Replace(a, n, t) => {
                let a = (a % len).min(chars.len());
                let b = (a + n).min(chars.len());
                chars.splice(a..b, t.chars());
            }
            Edit::Number(n, t) => {
                // Digit runs not preceded by a letter or `%` (names and value ids stay).
                let starts: Vec<usize> = (0..chars.len())
                    .filter(|&i| {
                        chars[i].is_ascii_digit()
                            && (i == 0
                                || !(chars[i - 1].is_ascii_alphanumeric() || matches!(chars[i - 1], '%' | '_' | '.')))
                    })
                    .collect();
                if let Some(&a) = starts.get(n % starts.len().max(1)) {
                    let b = (a..chars.len()).find(|&j| !chars[j].is_ascii_digit()).unwrap_or(chars.len());
                    chars.splice(a..b, t.chars());
                }
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(400), ..ProptestConfig::default() })]

    #[test]
    fn mutated_text_never_panics(which in 0usize..4, edits in prop::collection::vec(edit(), 1..6)) {
        let texts = seed_texts();
        let text = apply(&texts[which % texts.len()], &edits);
        if let Ok(graphs) = parse_module(&text) {
            for g in &graphs {
                // A parsed graph was built through the checked API, so it must verify.
                prop_assert!(verify(g).is_ok(), "parsed but does not verify:\n{text}");
                let printed = kiln::ir::print::module_to_string(std::slice::from_ref(g));
                prop_assert!(parse_module(&printed).is_ok(), "printed form does not parse:\n{printed}");
            }
        }
    }

    /// Graphs with numbers changed (extents, attributes, literals) that still verify are
    /// optimized, compiled and run on small inputs: the JIT
    /// gives the interpreter's values, or both give an error. (Graphs needing more than 64 MiB
    /// are compiled but not run: the run's own budget, not a limit of kiln.)
    #[test]
    fn mutated_graphs_compile_and_run_like_the_interpreter(which in 0usize..4, numbers in prop::collection::vec((any::<usize>(), prop::sample::select(NUMBERS)), 1..4)) {
        let texts = seed_texts();
        let edits: Vec<Edit> = numbers.into_iter().map(|(n, t)| Edit::Number(n, t)).collect();
        let text = apply(&texts[which % texts.len()], &edits);
        // The same check as the `kir` fuzz target (`fuzz/src/checks.rs`).
        let r = std::panic::catch_unwind(|| checks::kir(text.as_bytes()));
        prop_assert!(r.is_ok(), "{}", text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse_module(&text);
    }
}
