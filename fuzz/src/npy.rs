//! AFL++ target: The `.npy` reader on arbitrary bytes (`checks::npy`).
mod checks;

fn main() {
    afl::fuzz!(|bytes: &[u8]| checks::npy(bytes));
}
