//! The target ISA kernels are compiled for: the host's, or the host's architecture with named
//! extensions (model libraries built for another CPU level), and whether it has FMA.

use super::*;

/// The host's ISA with the flags kernels are compiled with (`pic` for code that goes into a
/// shared library), and whether it has FMA.
pub(crate) fn host_isa(pic: bool) -> Result<(cranelift_codegen::isa::OwnedTargetIsa, bool), CodegenError> {
    isa_for(None, pic)
}

/// Like [`host_isa`], for the host's architecture with exactly the instruction-set extensions
/// named (Cranelift's `has_*` flags) instead of the host's own; `None` for the host's.
pub(crate) fn isa_for(
    extensions: Option<&[&str]>,
    pic: bool,
) -> Result<(cranelift_codegen::isa::OwnedTargetIsa, bool), CodegenError> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| CodegenError::Isa(e.to_string()));
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(&mut flags, "is_pic", if pic { "true" } else { "false" })?;
    let native = cranelift_native::builder().map_err(|e| CodegenError::Isa(e.to_string()))?;
    let builder = match extensions {
        None => native,
        Some(extensions) => {
            let mut b = cranelift_codegen::isa::lookup(native.triple().clone())
                .map_err(|e| CodegenError::Isa(e.to_string()))?;
            for flag in extensions {
                b.enable(flag).map_err(|e| CodegenError::Isa(format!("{flag}: {e}")))?;
            }
            b
        }
    };
    let isa = builder.finish(settings::Flags::new(flags)).map_err(|e| CodegenError::Isa(e.to_string()))?;
    let has_fma = isa.isa_flags().iter().any(|f| f.name == "has_fma" && f.as_bool().unwrap_or(false));
    Ok((isa, has_fma))
}
