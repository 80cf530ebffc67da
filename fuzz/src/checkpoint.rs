//! AFL++ target: The safetensors checkpoint loader on arbitrary bytes (`checks::checkpoint`).
mod checks;

fn main() {
    afl::fuzz!(|bytes: &[u8]| checks::checkpoint(bytes));
}
