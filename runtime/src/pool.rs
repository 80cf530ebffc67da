//! A persistent pool of worker threads, started once per executable, so splitting a kernel,
//! a GEMM or a convolution over cores costs a channel send per part instead of a thread
//! spawn (tens of microseconds, more than many kernels take).
//!
//! [`Pool::for_each`] runs `f(0..parts)` on the calling thread and the workers, each claiming
//! the next part from a shared counter, and returns only when every part has finished, so
//! `f` may borrow from the caller.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};

type Task = Box<dyn FnOnce() + Send + 'static>;

/// Worker threads waiting for parts of a parallel loop.
pub struct Pool {
    senders: Vec<mpsc::Sender<Task>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} workers)", self.workers.len())
    }
}

/// The most threads a pool runs, the caller included: far more than kiln's kernels can use,
/// and few enough that their stacks and allocator arenas fit any machine. Larger requests
/// are capped; `--threads` refuses them.
pub const MAX_THREADS: usize = 256;

impl Pool {
    /// A pool for `threads` threads in all (at most [`MAX_THREADS`]): the caller and
    /// `threads − 1` workers. A worker the OS refuses to start leaves the pool smaller (the
    /// caller runs its parts), so a failed spawn never fails or aborts a run.
    pub fn new(threads: usize) -> Pool {
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for i in 1..threads.clamp(1, MAX_THREADS) {
            let (tx, rx) = mpsc::channel::<Task>();
            let spawned = std::thread::Builder::new().name(format!("kiln-worker-{i}")).spawn(move || {
                // Tasks catch their parts' panics themselves (`Loop::work`).
                while let Some(task) = spin_recv(&rx) {
                    task();
                }
            });
            // A worker that cannot start leaves the pool smaller; the caller runs its parts.
            if let Ok(handle) = spawned {
                senders.push(tx);
                workers.push(handle);
            }
        }
        Pool { senders, workers }
    }

    /// Threads in all, the caller included.
    pub fn threads(&self) -> usize {
        self.senders.len() + 1
    }

    /// Runs `f(i)` for every `i < parts`, spread over the caller and the workers; returns
    /// when all have run. A panic in a part is resumed on the caller.
    ///
    /// Parts are claimed one at a time from a shared counter, the caller included, so a
    /// worker the OS has not scheduled (its core busy with another process) takes no part,
    /// and the caller runs the parts it left: a shared core slows a loop down to one
    /// thread's time, never below it. The caller waits only for parts that were claimed.
    pub fn for_each(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        let threads = self.threads().min(parts);
        if threads <= 1 {
            (0..parts).for_each(f);
            return;
        }
        let state = std::sync::Arc::new(Loop {
            next: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            parts,
            panic: Mutex::new(None),
        });
        // SAFETY: a task dereferences `f` only for a part it claimed (`Loop::claim`), and this
        // function returns only when every part has been claimed and has finished (`wait`),
        // so no task uses `f` after the caller's borrow ends: a worker that starts late finds
        // no part left and touches only the shared `Loop`, which it owns a count of.
        let f_static: &'static (dyn Fn(usize) + Sync) =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f) };
        for tx in self.senders.iter().take(threads - 1) {
            let state = state.clone();
            // A worker whose channel is closed leaves its parts to the others.
            let _ = tx.send(Box::new(move || state.work(f_static)));
        }
        state.work(f);
        state.wait();
        let panic = state.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
    }
}

/// One parallel loop's shared state: the next unclaimed part, how many have finished, and
/// the first panic of a part.
struct Loop {
    next: AtomicUsize,
    finished: AtomicUsize,
    parts: usize,
    panic: Mutex<Option<Box<dyn std::any::Any + Send + 'static>>>,
}

impl Loop {
    /// Claims and runs parts until none is left.
    fn work(&self, f: &(dyn Fn(usize) + Sync)) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.parts {
                return;
            }
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))) {
                self.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(p);
            }
            self.finished.fetch_add(1, Ordering::Release);
        }
    }

    /// Waits until every part has finished: polls (yielding now and then, as
    /// [`spin_recv`] does), then sleeps in short naps.
    fn wait(&self) {
        let start = std::time::Instant::now();
        let mut polls = 0u32;
        while self.finished.load(Ordering::Acquire) < self.parts {
            polls += 1;
            if start.elapsed() >= SPIN {
                std::thread::sleep(std::time::Duration::from_micros(20));
            } else if polls.is_multiple_of(POLLS_PER_YIELD) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// How long a thread polls for its next message before blocking: parallel loops of one run
/// come back to back, and a blocked thread takes tens of microseconds to wake.
const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// Polls between yields of the core: a poller that never yields starves the thread it
/// waits for when both share one core (more threads than free cores: measured, a 2-thread
/// `mnist_mlp` forward pinned to one core took 890 µs against 80 µs on one thread).
const POLLS_PER_YIELD: u32 = 32;

/// Receives the next message, polling for [`SPIN`] (yielding the core now and then) before
/// blocking; `None` once the channel is closed.
fn spin_recv<T>(rx: &mpsc::Receiver<T>) -> Option<T> {
    let start = std::time::Instant::now();
    let mut polls = 0u32;
    while start.elapsed() < SPIN {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) => {
                polls += 1;
                if polls.is_multiple_of(POLLS_PER_YIELD) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }
    rx.recv().ok()
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the channels ends the workers' loops.
        self.senders.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Runs `f(i)` for every `i < parts` on `pool`, or in order on the caller without one.
pub fn for_each(pool: Option<&Pool>, parts: usize, f: &(dyn Fn(usize) + Sync)) {
    match pool {
        Some(p) => p.for_each(parts, f),
        None => (0..parts).for_each(f),
    }
}

/// The thread count from the `KILN_THREADS` environment variable: a positive integer (capped
/// at [`MAX_THREADS`]), else 1 (unset, empty or unparsable).
pub fn threads_from_env() -> usize {
    std::env::var("KILN_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .map_or(1, |n| n.min(MAX_THREADS))
}
