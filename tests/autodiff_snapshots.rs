//! Snapshots of the graphs users inspect after autodiff: the gradient graphs of `mnist_mlp`
//! and `lenet5`, and the Adam training step of `mnist_mlp` (batch 2). Each is verified, and
//! its text round-trips.

use kiln::frontend::optim::Optimizer;

fn checked(g: &kiln::ir::Graph) -> String {
    kiln::ir::verify(g).unwrap();
    let text = g.to_string();
    assert_eq!(kiln::ir::parse_graph(&text).unwrap().to_string(), text);
    text
}

#[test]
fn mnist_mlp_grad() {
    let g = kiln::train::grad_graph(&kiln::zoo::mnist_mlp(2).unwrap()).unwrap();
    insta::assert_snapshot!(checked(&g));
}

#[test]
fn lenet5_grad() {
    let g = kiln::train::grad_graph(&kiln::zoo::lenet5(2).unwrap()).unwrap();
    insta::assert_snapshot!(checked(&g));
}

#[test]
fn mnist_mlp_adam_train_step() {
    let step = kiln::train::train_step(&kiln::zoo::mnist_mlp(2).unwrap(), &Optimizer::adam()).unwrap();
    insta::assert_snapshot!(checked(&step.graph));
}
