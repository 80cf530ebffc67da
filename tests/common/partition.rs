//! The kernel partition of a compiled executable as text, one line per group, for snapshots:
//! which nodes each kernel fuses (a recomputed value appears in every group that computes
//! it), what a multi-output kernel also stores, and what runs as a contraction, a movement or
//! an op of its own.

use kiln::Executable;
use kiln::passes::fuse::GroupKind;

/// One line per group of `exe`, in run order.
pub fn partition_text(exe: &Executable) -> String {
    let mut text = String::new();
    for (group, kernel) in exe.groups() {
        let members: Vec<String> = group.members.iter().map(|m| format!("%{}", m.index())).collect();
        let members = members.join(" ");
        let op = exe.graph().node(group.root()).op.name();
        let line = match kernel {
            Some(k) if group.kind == GroupKind::Contraction => {
                format!("contraction {members} matmul + epilogue {}", k.kernel.name)
            }
            Some(k) => {
                // A multi-output kernel's side outputs follow what it stores.
                let sides: String = group.side_outputs.iter().map(|n| format!(" %{}", n.index())).collect();
                let stores = if sides.is_empty() { String::new() } else { format!(" (also stores{sides})") };
                format!("kernel {} <- {members}{stores}", k.kernel.name)
            }
            None if group.kind == GroupKind::Movement => format!("movement {members} {op}"),
            None if group.kind == GroupKind::Contraction => format!("contraction {members} {op}"),
            None => format!("op {members} {op}"),
        };
        text.push_str(&line);
        text.push('\n');
    }
    text
}
