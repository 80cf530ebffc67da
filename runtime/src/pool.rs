//! A persistent pool of worker threads, started once per executable, so splitting a kernel,
//! a GEMM or a convolution over cores costs a channel send per part instead of a thread
//! spawn (tens of microseconds, more than many kernels take).
//!
//! [`Pool::for_each`] runs `f(0)` on the calling thread and `f(1..parts)` on the workers,
//! and returns only when every part has finished, so `f` may borrow from the caller.

use std::sync::mpsc;

type Task = Box<dyn FnOnce() + Send + 'static>;

/// Worker threads waiting for parts of a parallel loop.
pub struct Pool {
    senders: Vec<mpsc::Sender<Task>>,
    done: mpsc::Receiver<std::thread::Result<()>>,
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
        let (done_tx, done) = mpsc::channel();
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for i in 1..threads.clamp(1, MAX_THREADS) {
            let (tx, rx) = mpsc::channel::<Task>();
            let done_tx = done_tx.clone();
            let spawned = std::thread::Builder::new().name(format!("kiln-worker-{i}")).spawn(move || {
                while let Some(task) = spin_recv(&rx) {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                    if done_tx.send(result).is_err() {
                        break;
                    }
                }
            });
            // A worker that cannot start leaves the pool smaller; the caller runs its parts.
            if let Ok(handle) = spawned {
                senders.push(tx);
                workers.push(handle);
            }
        }
        Pool { senders, done, workers }
    }

    /// Threads in all, the caller included.
    pub fn threads(&self) -> usize {
        self.senders.len() + 1
    }

    /// Runs `f(i)` for every `i < parts`, spread over the caller and the workers; returns
    /// when all have run. A panic in a part is resumed on the caller.
    pub fn for_each(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        let threads = self.threads().min(parts);
        if threads <= 1 {
            (0..parts).for_each(f);
            return;
        }
        // Part t of `threads` takes every threads-th index starting at t.
        let run = move |t: usize| {
            for i in (t..parts).step_by(threads) {
                f(i);
            }
        };
        // SAFETY: the closure borrows `f` and the caller's data only for the duration of this
        // call: every task sent below signals `done` when it finishes (panics included, caught
        // by the worker), and this function waits for all of them before returning, so
        // nothing the task borrows is dropped while it runs.
        let run_static: &'static (dyn Fn(usize) + Sync) =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(&run) };
        let mut sent = 0;
        for (t, tx) in self.senders.iter().enumerate().take(threads - 1) {
            if tx.send(Box::new(move || run_static(t + 1))).is_ok() {
                sent += 1;
            } else {
                run(t + 1);
            }
        }
        let caller = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(0)));
        let mut panic = None;
        for _ in 0..sent {
            match spin_recv(&self.done).ok_or(()) {
                Ok(Ok(())) => {}
                Ok(Err(p)) => panic = Some(p),
                // Every worker holds a sender until it exits, and none exits while it has a
                // task, so `recv` fails only if a worker thread died outside a task.
                Err(_) => break,
            }
        }
        if let Err(p) = caller {
            std::panic::resume_unwind(p);
        }
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
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
