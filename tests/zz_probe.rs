use kiln::frontend::optim::Optimizer;
use kiln::ir::DType;
use kiln::passes::fuse::Mode;
use kiln::runtime::schedule::dag::StepDag;
use kiln::runtime::schedule::{Schedule, Work};

#[test]
fn probe() {
    let pipeline = kiln::passes::Pipeline::parse(kiln::passes::DEFAULT_PIPELINE).unwrap();
    for e in kiln::zoo::CATALOG {
        for m in (e.build)(32, DType::F32).unwrap() {
            let step = kiln::train::train_step(&m, &Optimizer::adam()).unwrap().graph;
            let g = pipeline.run(&step).unwrap().0;
            let s = Schedule::build(&g, Mode::Fused).unwrap();
            let dag = StepDag::new(&s);
            // consecutive windows of mutually independent, non-alias steps
            let mut windows = vec![];
            let mut cur: Vec<usize> = vec![];
            for i in 0..s.steps.len() {
                if matches!(s.steps[i].work, Work::Alias { .. } | Work::CopyOut(_)) {
                    continue;
                }
                let dep = dag.before(i).iter().any(|(p, _)| cur.contains(p));
                if dep {
                    windows.push(cur.len());
                    cur = vec![];
                }
                cur.push(i);
            }
            windows.push(cur.len());
            let multi: usize = windows.iter().filter(|&&w| w > 1).map(|w| w).sum();
            let mem_only = (0..s.steps.len())
                .filter(|&i| {
                    let b = dag.before(i);
                    !b.is_empty() && b.iter().all(|(_, d)| *d != kiln::runtime::schedule::dag::Dependency::Data)
                })
                .count();
            println!(
                "{}: {} steps, {} levels, {} windows, {} steps in windows of >1, steps with only memory deps {}",
                g.name(),
                s.steps.len(),
                s.levels(),
                windows.len(),
                multi,
                mem_only
            );
        }
    }
}
