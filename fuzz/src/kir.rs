//! AFL++ target: `.kir` text through parser, verifier, optimizer and JIT against the interpreter (`checks::kir`).
mod checks;

fn main() {
    afl::fuzz!(|bytes: &[u8]| checks::kir(bytes));
}
