//! Compiled code and threads: an `Executable`, a `TrainSession` and a `Trainer` are `Send`
//! (moved to a worker thread, they run there as here); an `Executable` is not `Sync` (its doc
//! test checks that sharing one is refused at compile time), and executables compiled on eight
//! threads give one thread's bytes. (The model library's own 8-thread test is in
//! `tests/aot_library.rs`.)

use std::collections::HashMap;
use std::sync::Arc;

use kiln::fit::Trainer;
use kiln::ir::Value;
use kiln::runtime::jit::Executable;
use kiln::runtime::train::TrainSession;

fn send<T: Send>() {}

#[test]
fn compiled_code_is_send_and_sync_as_documented() {
    send::<Executable>();
    send::<TrainSession>();
    send::<Trainer>();
}

/// An `Executable` is not `Sync` (its doc test shows sharing one is refused at compile time):
/// each thread compiles its own, and every thread's runs give one thread's bytes.
#[test]
fn executables_on_eight_threads_give_one_threads_bytes() {
    let model = kiln::zoo::mnist_mlp(4).unwrap();
    let mut feeds: HashMap<String, Value> = kiln::ir::init::init_params(&model.graph, 3);
    let x: Vec<f32> = (0..4 * 784).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    feeds.insert("x".into(), Value::from_vec(&[4, 784], x).unwrap());
    let bits = |v: &Value| v.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let exe = kiln::compile(&model.graph, kiln::Fusion::Fused).unwrap();
    let want = bits(&exe.run(&feeds).unwrap()[0]);
    let feeds = Arc::new(feeds);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (graph, feeds) = (model.graph.clone(), Arc::clone(&feeds));
            std::thread::spawn(move || {
                let exe: Executable = kiln::compile(&graph, kiln::Fusion::Fused).unwrap();
                (0..100).map(|_| exe.run(&feeds).unwrap().remove(0)).collect::<Vec<_>>()
            })
        })
        .collect();
    for w in workers {
        for got in w.join().unwrap() {
            assert_eq!(bits(&got), want);
        }
    }
    // One executable moved to another thread runs there.
    let moved = std::thread::spawn(move || exe.run(&feeds).unwrap().remove(0)).join().unwrap();
    assert_eq!(bits(&moved), want);
}

#[test]
fn a_trainer_trains_on_another_thread() {
    let task = kiln::fit::task("xor_mlp", std::path::Path::new("/nonexistent"), 0).unwrap();
    let mut config = kiln::fit::Config::defaults(&task);
    config.epochs = 1;
    let here = {
        let mut t = Trainer::new(task.clone(), config.clone()).unwrap();
        t.run(&Default::default(), &mut |_| {}, &mut |_, _| {}).unwrap();
        t.history().clone()
    };
    let mut t = Trainer::new(task, config).unwrap();
    let there = std::thread::spawn(move || {
        t.run(&Default::default(), &mut |_| {}, &mut |_, _| {}).unwrap();
        t.history().clone()
    })
    .join()
    .unwrap();
    assert_eq!(here, there);
}
