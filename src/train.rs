//! Building training graphs from zoo models: the loss graph, the gradient graph, and the
//! whole training step (forward, loss, backward, optimizer update) as one graph.
//!
//! The loss graph adds a `labels` input of the model's label type and a scalar `loss` output.
//! The step graph adds the learning rate `lr` and the optimizer's state inputs, and returns
//! `loss`, the model's outputs, then `new.<name>` for every parameter and state value.

use kiln_frontend::optim::Optimizer;
use kiln_frontend::{BuildError, Builder, Tensor, loss};
use kiln_ir::{Graph, Init};
use kiln_passes::autodiff::{AutodiffError, backprop};
use kiln_runtime::train::TrainStep;
use thiserror::Error;

use crate::zoo::{Loss, Model};

/// Errors from building training graphs.
#[derive(Debug, Error)]
pub enum TrainBuildError {
    /// Building nodes failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Differentiating failed.
    #[error(transparent)]
    Autodiff(#[from] AutodiffError),
}

/// The model's forward graph with a `labels` input and a scalar `loss` output appended.
pub fn loss_graph(model: &Model) -> Result<Graph, BuildError> {
    let b = Builder::from_graph(model.graph.clone());
    let pred = b.outputs().first().map(|(_, t)| *t);
    let labels = b.input("labels", model.labels.dtype, model.labels.dims().to_vec());
    if let Some(pred) = pred {
        let l: Tensor<'_> = match model.loss {
            Loss::Mse => loss::mse(pred, labels),
            Loss::CrossEntropy => loss::cross_entropy(pred, labels),
            Loss::BinaryCrossEntropy => loss::binary_cross_entropy(pred, labels),
            Loss::Mae => loss::mae(pred, labels),
        };
        b.output("loss", l);
    } else {
        b.fail("loss_graph", format!("@{} has no output to take the loss of", model.graph.name()));
    }
    b.finish()
}

/// The loss graph plus `grad.<param>` outputs: the forward and backward graph together.
pub fn grad_graph(model: &Model) -> Result<Graph, TrainBuildError> {
    let g = loss_graph(model)?;
    Ok(kiln_passes::autodiff::grad(&g, "loss", &[])?)
}

/// The training step of `model` with `optimizer`, as one graph and its update mapping.
pub fn train_step(model: &Model, optimizer: &Optimizer) -> Result<TrainStep, TrainBuildError> {
    train_step_for(loss_graph(model)?, optimizer)
}

/// The training step of any graph with a scalar `loss` output: its parameters are trained with
/// `optimizer`; its other outputs are kept after `loss`.
pub fn train_step_for(g: Graph, optimizer: &Optimizer) -> Result<TrainStep, TrainBuildError> {
    train_step_of(g, optimizer, &|_| true)
}

/// Like [`train_step_for`], but only the parameters whose names `trainable` accepts are
/// differentiated and updated; the others stay parameters the caller feeds each step (two
/// networks trained against each other, as in a GAN, each freeze the other's).
pub fn train_step_of(
    mut g: Graph,
    optimizer: &Optimizer,
    trainable: &dyn Fn(&str) -> bool,
) -> Result<TrainStep, TrainBuildError> {
    let loss_id = g.outputs().iter().find(|o| o.name == "loss").map(|o| o.value).ok_or_else(|| BuildError {
        op: "train_step".into(),
        message: format!("@{} has no `loss` output to minimize", g.name()),
        location: "<train_step>".into(),
        more: 0,
    })?;
    let params: Vec<(String, kiln_ir::NodeId)> = g
        .params()
        .filter_map(|(id, n)| n.op.leaf_name().filter(|s| trainable(s)).map(|s| (s.to_string(), id)))
        .collect();
    let ids: Vec<_> = params.iter().map(|p| p.1).collect();
    let grads = backprop(&mut g, loss_id, &ids)?;
    g.set_name(format!("{}_train_{}", g.name(), optimizer.name()));
    let b = Builder::from_graph(g);
    let outs = b.outputs();
    b.clear_outputs();
    let lr = b.input("lr", b.float(), []);
    let triples: Vec<(String, Tensor<'_>, Tensor<'_>)> =
        params.iter().zip(&grads).map(|((name, id), gid)| (name.clone(), b.tensor(*id), b.tensor(*gid))).collect();
    let updates = optimizer.apply(&b, &triples, lr);
    // `loss` first, then the model's own outputs in their order.
    for (name, t) in outs.iter().filter(|(n, _)| n == "loss").chain(outs.iter().filter(|(n, _)| n != "loss")) {
        b.output(name, *t);
    }
    let mut mapping = Vec::new();
    let mut state = Vec::new();
    for u in &updates {
        let out = format!("new.{}", u.replaces);
        b.output(&out, u.value);
        if u.is_state {
            state.push((u.replaces.clone(), u.value.ty(), Init::Zeros));
        }
        mapping.push((out, u.replaces.clone()));
    }
    let graph = b.finish()?;
    let data_inputs = graph
        .inputs()
        .filter_map(|(_, n)| n.op.leaf_name().map(String::from))
        .filter(|n| n != "lr" && n != "rng_seed" && !state.iter().any(|s| &s.0 == n))
        .collect();
    Ok(TrainStep { graph, updates: mapping, state, data_inputs })
}
