//! ONNX value names to kiln leaf and output names: kiln names are ASCII letters, digits, `_`
//! and `.`; anything else becomes `_`, and a clash gets a numbered suffix.

use std::collections::HashSet;

/// Hands out distinct kiln names.
#[derive(Debug, Default)]
pub(crate) struct Names {
    used: HashSet<String>,
}

impl Names {
    /// A kiln name for the ONNX name `onnx`, distinct from every name handed out before.
    pub(crate) fn kiln_name(&mut self, onnx: &str) -> String {
        let mut base: String =
            onnx.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' }).collect();
        let base_clean = base.trim_matches(|c| c == '_' || c == '.');
        if base_clean.is_empty() {
            base = "value".into();
        } else if base_clean.len() != base.len() {
            base = base_clean.to_string();
        }
        let mut name = base.clone();
        let mut n = 2;
        while !self.used.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }

    /// Reserves `name` as it is (a name kiln itself gives, like `rng_seed`).
    pub(crate) fn reserve(&mut self, name: &str) {
        self.used.insert(name.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn names_become_kiln_names_and_stay_distinct() {
        let mut n = Names::default();
        assert_eq!(n.kiln_name("input.1"), "input.1");
        assert_eq!(n.kiln_name("/fc1/Gemm_output_0"), "fc1_Gemm_output_0");
        assert_eq!(n.kiln_name("onnx::MatMul_12"), "onnx__MatMul_12");
        assert_eq!(n.kiln_name("fc1:Gemm_output_0"), "fc1_Gemm_output_0_2");
        assert_eq!(n.kiln_name("::"), "value");
        assert_eq!(n.kiln_name(""), "value_2");
    }
}
