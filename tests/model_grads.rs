//! Whole-model gradients: for every zoo model (in `f64`, batch 2), the gradient of its loss
//! with respect to every parameter matches central finite differences along a random
//! direction: `|∇L·d − (L(θ+hd) − L(θ−hd))/2h| ≤ 1e-6 (1 + |·|)` with `h = 1e-6`.

mod common;

use std::collections::HashMap;

use common::pseudo;
use kiln::ir::{DType, Graph, Value, interp};
use kiln::passes::autodiff::backprop;
use ndarray::{ArrayD, IxDyn};

fn value(ty: &kiln::ir::TensorType, salt: u64) -> Value {
    let r = pseudo(ty.numel(), salt);
    let dims = IxDyn(ty.dims());
    match ty.dtype {
        // Class labels and token ids: spread over the extent the model expects.
        DType::I32 => {
            let hi = if ty.rank() == 2 { 10000.0 } else { 2.0 };
            Value::I32(ArrayD::from_shape_vec(dims, r.iter().map(|x| ((x + 1.0) / 2.0 * hi) as i32).collect()).unwrap())
        }
        // Float labels in [0, 1] suit MSE and BCE alike.
        _ => Value::F64(ArrayD::from_shape_vec(dims, r.iter().map(|x| (x + 1.0) / 2.0).collect()).unwrap()),
    }
}

fn loss_at(g: &Graph, feeds: &HashMap<String, Value>) -> f64 {
    interp::run(g, feeds).unwrap()[0].to_f64_vec()[0]
}

fn check_model(model: &kiln::zoo::Model) {
    let mut lg = kiln::train::loss_graph(model).unwrap();
    let loss = lg.outputs().iter().find(|o| o.name == "loss").unwrap().value;
    lg.clear_outputs();
    lg.add_output("loss", loss).unwrap();
    let mut feeds = kiln::ir::init::init_params(&lg, 5);
    for (i, (_, n)) in lg.inputs().enumerate() {
        feeds.insert(n.op.leaf_name().unwrap().to_string(), value(&n.ty, 50 + i as u64));
    }
    let params: Vec<(String, kiln::ir::NodeId)> =
        lg.params().map(|(id, n)| (n.op.leaf_name().unwrap().to_string(), id)).collect();
    let mut gg = lg.clone();
    let ids: Vec<_> = params.iter().map(|p| p.1).collect();
    let grads = backprop(&mut gg, loss, &ids).unwrap();
    kiln::ir::verify(&gg).unwrap();
    for (i, g) in grads.iter().enumerate() {
        gg.add_output(format!("g{i}"), *g).unwrap();
    }
    let out = interp::run(&gg, &feeds).unwrap();
    let h = 1e-6;
    for (k, (name, _)) in params.iter().enumerate() {
        let base = feeds[name].to_f64_vec();
        let dims = feeds[name].shape().to_vec();
        let d = pseudo(base.len(), 900 + k as u64);
        let analytic: f64 = out[1 + k].to_f64_vec().iter().zip(&d).map(|(g, d)| g * d).sum();
        let at = |s: f64| {
            let mut f = feeds.clone();
            let shifted: Vec<f64> = base.iter().zip(&d).map(|(b, d)| b + s * d).collect();
            f.insert(name.clone(), Value::F64(ArrayD::from_shape_vec(IxDyn(&dims), shifted).unwrap()));
            loss_at(&lg, &f)
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (analytic - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
            "@{} d loss / d {name} along d: autodiff {analytic} vs finite differences {numeric}",
            lg.name()
        );
    }
}

macro_rules! model_grad_tests {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            let entry = kiln::zoo::entry(stringify!($name)).unwrap();
            for model in (entry.build)(2, DType::F64).unwrap() {
                check_model(&model);
            }
        }
    )*};
}

model_grad_tests!(xor_mlp, mnist_mlp, lenet5, cifar_cnn, lstm_classifier, transformer_block, gan);
