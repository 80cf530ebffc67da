//! The JIT's second tier: an executable's kernels rendered as C ([`kiln_codegen::ckernels`]),
//! compiled by the system C compiler at the machine's full vector width on a background
//! thread, loaded, and swapped in between two runs.
//!
//! Cranelift stays the first tier: it compiles in milliseconds, so the first result never
//! waits. Once an executable has run [`Policy::runs`] times or for [`Policy::millis`]
//! milliseconds, its kernels go to the C compiler on a thread of their own; a later run finds
//! the library loaded and makes every kernel call it ([`CompiledKernel::install_tier2`]).
//! No run ever waits for the compiler. Kernels whose innermost loop is shorter than
//! [`MIN_INNER`] are not compiled, window reductions (pooling) apart.
//!
//! **Trial.** Both tiers compute the same bits, so the next [`TRIAL_RUNS`] runs alternate
//! between them, timing every kernel call, and then each kernel keeps the faster tier
//! ([`CompiledKernel::use_tier`]).
//!
//! **Cache.** Libraries are kept on disk under [`Options::cache_dir`] (`KILN_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/kiln` or `~/.cache/kiln`), named by a 128-bit hash of the C source, the
//! compiler and its flags: a second process with the same kernels loads them without
//! compiling. Each library `kiln-<key>.so` has a checksum file `kiln-<key>.sum` written after
//! it; both are written to partial files and renamed ([`crate::files`]), so a compiler killed
//! midway leaves no entry, and a library whose bytes do not match its checksum is never
//! loaded: it is compiled again. The C source is kept beside it (`kiln-<key>.c`) to read.
//!
//! **Off.** `KILN_TIER2=0` turns the tier off; without a C compiler (`KILN_CC`, else `CC`,
//! else `cc`) it stays off. Either way kiln says so once per process and runs on tier 1.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use kiln_codegen::ckernels;
use kiln_codegen::cpu::CompiledKernel;

/// When an executable's kernels go to the C compiler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// After this many runs...
    pub runs: u32,
    /// ...or this much run time, in milliseconds, whichever comes first.
    pub millis: u64,
}

/// The default thresholds: 20 runs or 200 ms. A one-shot run (`kiln run` on one input) never
/// pays for the compiler; a training loop or a benchmark is past them within a second.
pub const DEFAULT_POLICY: Policy = Policy { runs: 20, millis: 200 };

/// How the second tier runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// When to compile; `None` keeps every kernel on tier 1.
    pub policy: Option<Policy>,
    /// Why `policy` is `None`, said once when an executable first would have compiled.
    pub off_reason: Option<String>,
    /// The C compiler.
    pub compiler: String,
    /// Where compiled libraries are cached.
    pub cache_dir: PathBuf,
    /// Target flags (by default `-march=native` and 512-bit vectors where the target has
    /// them).
    pub target_flags: Vec<String>,
    /// Kernels whose innermost loop is shorter than this stay on tier 1, window reductions
    /// apart ([`MIN_INNER`] by default).
    pub min_inner: usize,
    /// Trial runs timing each kernel on both tiers ([`TRIAL_RUNS`] by default); with 0 every
    /// kernel with C code runs it.
    pub trial_runs: u32,
}

/// The shortest innermost loop a kernel goes to tier 2 with: sixteen, one 512-bit vector of
/// `f32`. Shorter rows leave the C compiler's vectors mostly empty, where Cranelift's four
/// lanes fit. Window reductions (pooling) go whatever their rows: their C keeps a row of
/// outputs in a local array ([`kiln_codegen::kernel::Kernel::window_axes`]), and the trial
/// keeps the faster tier.
pub const MIN_INNER: usize = 16;

impl Options {
    /// The options the environment sets: `KILN_TIER2` (`0` turns the tier off), `KILN_CC`
    /// (else `CC`, else `cc`), `KILN_CACHE_DIR` (else the user's cache directory).
    pub fn from_env() -> Options {
        let off = std::env::var("KILN_TIER2").is_ok_and(|v| v.trim() == "0");
        let compiler = std::env::var("KILN_CC").or_else(|_| std::env::var("CC")).unwrap_or_else(|_| "cc".into());
        let cache_dir = std::env::var_os("KILN_CACHE_DIR").map(PathBuf::from).unwrap_or_else(default_cache_dir);
        Options {
            policy: (!off).then_some(DEFAULT_POLICY),
            off_reason: off.then(|| "KILN_TIER2=0".to_string()),
            compiler,
            cache_dir,
            target_flags: vec!["-march=native".into(), "-mprefer-vector-width=512".into()],
            min_inner: MIN_INNER,
            trial_runs: TRIAL_RUNS,
        }
    }

    /// These options with the tier off (every kernel stays on Cranelift's code).
    pub fn off(mut self) -> Options {
        self.policy = None;
        self.off_reason = None;
        self
    }
}

/// `$XDG_CACHE_HOME/kiln`, else `$HOME/.cache/kiln`, else a directory under the system's
/// temporary directory.
fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("kiln");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache").join("kiln"),
        None => std::env::temp_dir().join("kiln-cache"),
    }
}

/// Where an executable's second tier stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Off (the reason).
    Off(String),
    /// Not compiled yet: the thresholds are not reached.
    Waiting,
    /// The C compiler is working on a background thread.
    Compiling,
    /// The library is loaded: each kernel with a C rendering runs its C code, or, once both
    /// tiers of it have been timed ([`TRIAL_RUNS`]), the faster one.
    Active {
        /// Loaded from the cache rather than compiled.
        cached: bool,
        /// Kernels on tier 2 (during the trial: those with tier-2 code).
        kernels: usize,
        /// The trial is over: each kernel runs the tier measured faster.
        measured: bool,
        /// Time from the start of the compile to the library being loaded.
        build: Duration,
    },
    /// Compiling or loading failed (why); the kernels stay on tier 1.
    Failed(String),
}

/// Runs after a library comes in during which every kernel's two tiers are timed, the runs
/// alternating between them (both compute the same bits, so results do not change); then each
/// kernel keeps the faster tier. Four runs each: the minimum of each tier's times counts.
pub const TRIAL_RUNS: u32 = 8;

/// A library built (or found in the cache) and loaded, and its kernels' entries.
struct Loaded {
    library: libloading::Library,
    /// Per kernel given to [`start`], its entry in `library` (`None` where it has no C
    /// rendering), as an address.
    entries: Vec<Option<usize>>,
    cached: bool,
    build: Duration,
}

/// One executable's second tier: its counters and where its library stands.
pub(crate) struct Tier2 {
    options: Options,
    runs: u32,
    spent: Duration,
    state: State,
}

enum State {
    Idle,
    Compiling(Receiver<Result<Loaded, String>>),
    /// The library stays loaded as long as the executable whose kernels call it (none when no
    /// kernel went to tier 2).
    Active {
        _library: Option<libloading::Library>,
        cached: bool,
        kernels: usize,
        build: Duration,
        /// Trial runs done; past [`TRIAL_RUNS`], the choice is made.
        trial: u32,
    },
    Failed(String),
}

impl Tier2 {
    /// A tier that has not started.
    pub(crate) fn new(options: Options) -> Tier2 {
        Tier2 { options, runs: 0, spent: Duration::ZERO, state: State::Idle }
    }

    /// Where it stands.
    pub(crate) fn status(&self) -> Status {
        match (&self.state, self.options.policy) {
            (State::Idle, None) => Status::Off(self.options.off_reason.clone().unwrap_or_else(|| "off".into())),
            (State::Idle, Some(_)) => Status::Waiting,
            (State::Compiling(_), _) => Status::Compiling,
            (State::Active { cached, kernels, build, trial, .. }, _) => Status::Active {
                cached: *cached,
                kernels: *kernels,
                measured: *trial > self.options.trial_runs,
                build: *build,
            },
            (State::Failed(why), _) => Status::Failed(why.clone()),
        }
    }

    /// At a run boundary: installs a library the compiler finished, or starts the compiler
    /// when the thresholds are reached (or `now`). At a run's start (`times` given: per
    /// kernel, the least time of a call on tier 1 and on tier 2 so far, in ns), runs the
    /// trial: returns the tier this run's kernels run and are timed on, or, after the last
    /// trial run, sets each kernel to its faster tier.
    pub(crate) fn at_boundary(
        &mut self,
        kernels: &[&CompiledKernel],
        times: Option<&[[u64; 2]]>,
        fma: bool,
        now: bool,
    ) -> Option<u8> {
        let trial_runs = self.options.trial_runs;
        if let (State::Active { trial, kernels: on, .. }, Some(times)) = (&mut self.state, times)
            && *trial <= trial_runs
            && trial_runs > 0
        {
            let trying = kernels.iter().filter(|k| k.has_tier2());
            if *trial < trial_runs {
                let tier = if trial.is_multiple_of(2) { 2 } else { 1 };
                trying.for_each(|k| k.use_tier(tier));
                *trial += 1;
                return Some(tier);
            }
            // The choice: ties (and kernels never timed alone, like a product's epilogue)
            // stay on tier 2.
            *on = 0;
            for (k, t) in kernels.iter().zip(times) {
                if k.has_tier2() {
                    let tier = if t[1] <= t[0] { 2 } else { 1 };
                    k.use_tier(tier);
                    *on += usize::from(tier == 2);
                }
            }
            *trial += 1;
            return None;
        }
        let kernels: Vec<Option<&CompiledKernel>> = kernels
            .iter()
            .map(|k| {
                let long_rows = k.kernel.space.last().is_some_and(|&n| n >= self.options.min_inner);
                (long_rows || k.kernel.window_axes().is_some()).then_some(*k)
            })
            .collect();
        match &self.state {
            State::Idle => {
                let Some(policy) = self.options.policy else {
                    if let Some(why) = &self.options.off_reason {
                        say_once(&format!("kiln: JIT tier 2 is off ({why}); kernels run Cranelift's code"));
                    }
                    return None;
                };
                if kernels.iter().all(Option::is_none) {
                    // Nothing to compile: every kernel stays where it is.
                    self.state = State::Active {
                        _library: None,
                        cached: true,
                        kernels: 0,
                        build: Duration::ZERO,
                        trial: self.options.trial_runs + 1,
                    };
                } else if now || self.runs >= policy.runs || self.spent >= Duration::from_millis(policy.millis) {
                    self.state = State::Compiling(start(&kernels, fma, &self.options));
                }
            }
            State::Compiling(rx) => match rx.try_recv() {
                Ok(Ok(loaded)) => {
                    let mut count = 0;
                    for (k, entry) in kernels.iter().zip(&loaded.entries) {
                        if let (Some(k), Some(entry)) = (k, entry) {
                            // SAFETY: `entry` is the address of the C rendering of this very
                            // kernel (`start` rendered `kernels` in this order, each under its
                            // own symbol), in `library`, which `self` keeps loaded as long as
                            // the executable owning the kernels.
                            unsafe { k.install_tier2(*entry as *const u8) };
                            count += 1;
                        }
                    }
                    self.state = State::Active {
                        _library: Some(loaded.library),
                        cached: loaded.cached,
                        kernels: count,
                        build: loaded.build,
                        trial: 0,
                    };
                }
                Ok(Err(why)) => {
                    say_once(&format!("kiln: JIT tier 2 failed, kernels stay on tier 1: {why}"));
                    self.state = State::Failed(why);
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => self.state = State::Failed("the compile thread stopped".into()),
            },
            State::Active { .. } | State::Failed(_) => {}
        }
        None
    }

    /// True once nothing is left to do at run boundaries: the tier is off (and has said so),
    /// failed, or active with its trial over.
    pub(crate) fn settled(&self) -> bool {
        match &self.state {
            State::Idle => self.options.policy.is_none() && self.runs > 0,
            State::Compiling(_) => false,
            State::Active { trial, .. } => *trial > self.options.trial_runs,
            State::Failed(_) => true,
        }
    }

    /// Counts one run of `took`.
    pub(crate) fn ran(&mut self, took: Duration) {
        self.runs = self.runs.saturating_add(1);
        self.spent += took;
    }

    /// Blocks until a compile in progress has finished (or `timeout` passed) and installs
    /// its result; true once the tier is active.
    pub(crate) fn wait(&mut self, kernels: &[&CompiledKernel], fma: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.at_boundary(kernels, None, fma, true);
            match self.state {
                State::Active { .. } => return true,
                State::Failed(_) | State::Idle => return false,
                State::Compiling(_) if Instant::now() >= deadline => return false,
                State::Compiling(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// Prints `message` to standard error the first time this process says it.
fn say_once(message: &str) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.iter().any(|m| m == message) {
        eprintln!("{message}");
        said.push(message.to_string());
    }
}

/// Renders `kernels` (those given: `None` stays on tier 1) and starts the background thread
/// that builds (or finds) and loads their library.
fn start(kernels: &[Option<&CompiledKernel>], fma: bool, options: &Options) -> Receiver<Result<Loaded, String>> {
    // Each kernel renders on its own, so one without a C rendering stays on tier 1 alone.
    let rendered: Vec<Option<(String, kiln_codegen::kernel::Kernel)>> = kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let k = (*k)?;
            let symbol = format!("kiln_t2_{i}");
            ckernels::render(&k.kernel, &symbol, fma).ok().map(|_| (symbol, k.kernel.clone()))
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let options = options.clone();
    let spawned = std::thread::Builder::new().name("kiln-tier2".into()).spawn(move || {
        let started = Instant::now();
        let result = build(&rendered, fma, &options).map(|(library, entries, cached)| Loaded {
            library,
            entries,
            cached,
            build: started.elapsed(),
        });
        // The executable may be gone; then nobody wants the result.
        let _ = tx.send(result);
    });
    if let Err(e) = spawned {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = tx.send(Err(format!("cannot start the compile thread: {e}")));
        return rx;
    }
    rx
}

/// 128-bit FNV-1a of `bytes`, as 32 hex digits.
fn hash(bytes: &[u8]) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for &b in bytes {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013B);
    }
    format!("{h:032x}")
}

type Built = (libloading::Library, Vec<Option<usize>>, bool);

/// Finds the library of `rendered` in the cache or compiles it there, then loads it and
/// looks up every kernel's entry.
fn build(
    rendered: &[Option<(String, kiln_codegen::kernel::Kernel)>],
    fma: bool,
    options: &Options,
) -> Result<Built, String> {
    let present: Vec<(String, &kiln_codegen::kernel::Kernel)> =
        rendered.iter().flatten().map(|(s, k)| (s.clone(), k)).collect();
    let mut source = ckernels::module(&present, fma).map_err(|e| e.to_string())?;
    let flags: Vec<String> = ckernels::COMPILE_FLAGS
        .iter()
        .map(|f| f.to_string())
        .chain(options.target_flags.iter().cloned())
        .chain(["-fPIC".into(), "-shared".into()])
        .collect();
    let key = hash(format!("{source}\0{}\0{}", options.compiler, flags.join(" ")).as_bytes());
    // The library names its key, checked after loading.
    source.push_str(&format!("\nconst char kiln_tier2_key[] = \"{key}\";\n"));
    let dir = &options.cache_dir;
    let io = |what: &str, path: &Path, e: std::io::Error| format!("{what} {}: {e}", path.display());
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create the cache directory", dir, e))?;
    let library = dir.join(format!("kiln-{key}.so"));
    let sum = dir.join(format!("kiln-{key}.sum"));
    let cached = entry_is_whole(&library, &sum);
    if !cached {
        remove_stale_partials(dir);
        // A stale or corrupt entry is removed before the new one is written.
        let _ = std::fs::remove_file(&sum);
        let c_path = dir.join(format!("kiln-{key}.c"));
        crate::files::write(&c_path, source.as_bytes()).map_err(|e| io("cannot write", &c_path, e))?;
        crate::files::replace(
            &library,
            |partial| {
                let out = std::process::Command::new(&options.compiler)
                    .args(&flags)
                    .arg("-o")
                    .arg(partial)
                    .arg(&c_path)
                    .arg("-lm")
                    .output()
                    .map_err(|e| format!("no C compiler `{}`: {e}", options.compiler))?;
                if out.status.success() {
                    Ok(())
                } else {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    Err(format!("`{}` failed ({}): {}", options.compiler, out.status, stderr.trim()))
                }
            },
            |e| io("cannot store", &library, e),
        )?;
        let bytes = std::fs::read(&library).map_err(|e| io("cannot read", &library, e))?;
        crate::files::write(&sum, hash(&bytes).as_bytes()).map_err(|e| io("cannot write", &sum, e))?;
    }
    // SAFETY: loading runs the library's initializers; a kiln tier-2 library has none (plain
    // C functions and one string), and its checksum matched the bytes just written or read.
    let lib =
        unsafe { libloading::Library::new(&library) }.map_err(|e| format!("cannot load {}: {e}", library.display()))?;
    // SAFETY: only the symbol's address is taken (libloading gives it as the pointer value):
    // a NUL-terminated char array in every tier-2 library.
    let sym = unsafe { lib.get::<*const std::ffi::c_char>(b"kiln_tier2_key\0") }
        .map_err(|e| format!("no key in {}: {e}", library.display()))?;
    // SAFETY: the address starts the NUL-terminated key string (see above).
    let named = unsafe { std::ffi::CStr::from_ptr(*sym) }.to_string_lossy().into_owned();
    if named != key {
        return Err(format!("{} is not the library of these kernels", library.display()));
    }
    let mut entries = Vec::with_capacity(rendered.len());
    for r in rendered {
        entries.push(match r {
            None => None,
            Some((symbol, _)) => {
                let name = format!("{symbol}\0");
                // SAFETY: only the symbol's address is taken; it is a function of the kernel
                // ABI, rendered above under this name.
                let f = unsafe { lib.get::<unsafe extern "C" fn()>(name.as_bytes()) }
                    .map_err(|e| format!("no {symbol} in {}: {e}", library.display()))?;
                Some(*f as usize)
            }
        });
    }
    Ok((lib, entries, cached))
}

/// Removes partial files an hour old or more from `dir`: what a compile left when its process
/// ended before renaming them (a compile still under way writes its own, younger ones).
fn remove_stale_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if name.starts_with(".kiln-")
            && name.contains(".partial")
            && old.is_some_and(|a| a >= Duration::from_secs(3600))
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// True if `library` and its checksum file both exist and the library's bytes hash to the
/// checksum.
fn entry_is_whole(library: &Path, sum: &Path) -> bool {
    match (std::fs::read(library), std::fs::read_to_string(sum)) {
        (Ok(bytes), Ok(expected)) => hash(&bytes) == expected.trim(),
        _ => false,
    }
}
