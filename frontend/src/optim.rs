//! Optimizers written as IR, so the parameter update is compiled and fused with the step.
//!
//! [`Optimizer::apply`] takes each parameter with its gradient and the learning rate, and
//! builds the new parameter values and optimizer state. State (velocities, moments, the step
//! count) is carried between steps as named graph inputs that the matching outputs replace;
//! every state value starts at zero.
//!
//! Conventions (those of PyTorch): L2 `weight_decay` adds `wd·p` to the gradient, except for
//! AdamW, whose decay is decoupled (`p -= lr·wd·p`). Clipping scales all gradients by
//! `min(1, max_norm / (‖g‖ + 1e-6))`, `‖g‖` the global L2 norm, before anything else.

use kiln_ir::TensorType;

use crate::builder::{Builder, Tensor};

/// The update rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// `p -= lr·g`.
    Sgd,
    /// `v = μ·v + g`; `p -= lr·v`, or `p -= lr·(g + μ·v)` with Nesterov.
    Momentum {
        /// μ.
        momentum: f64,
        /// Nesterov's look-ahead form.
        nesterov: bool,
    },
    /// Adam with bias correction: `m = β1·m + (1−β1)·g`, `v = β2·v + (1−β2)·g²`, `t += 1`,
    /// `p -= lr·m̂ / (√v̂ + ε)` with `m̂ = m / (1−β1^t)`, `v̂ = v / (1−β2^t)`.
    Adam {
        /// β1.
        beta1: f64,
        /// β2.
        beta2: f64,
        /// ε.
        eps: f64,
    },
    /// Adam with decoupled weight decay.
    AdamW {
        /// β1.
        beta1: f64,
        /// β2.
        beta2: f64,
        /// ε.
        eps: f64,
    },
}

/// An optimizer: the rule, weight decay and optional gradient clipping.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Optimizer {
    /// The update rule.
    pub kind: OptimizerKind,
    /// L2 (or, for AdamW, decoupled) weight decay.
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm.
    pub clip_grad_norm: Option<f64>,
}

/// One value a step produces that replaces an input of the next step.
#[derive(Clone, Debug)]
pub struct Update<'b> {
    /// The new value.
    pub value: Tensor<'b>,
    /// The input or parameter it replaces.
    pub replaces: String,
    /// True for optimizer state (created by the optimizer, starting at zero).
    pub is_state: bool,
}

impl Optimizer {
    /// Plain SGD.
    pub fn sgd() -> Self {
        Optimizer { kind: OptimizerKind::Sgd, weight_decay: 0.0, clip_grad_norm: None }
    }

    /// SGD with momentum `momentum`.
    pub fn momentum(momentum: f64, nesterov: bool) -> Self {
        Optimizer { kind: OptimizerKind::Momentum { momentum, nesterov }, weight_decay: 0.0, clip_grad_norm: None }
    }

    /// Adam with β1 = 0.9, β2 = 0.999, ε = 1e-8.
    pub fn adam() -> Self {
        Optimizer {
            kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            weight_decay: 0.0,
            clip_grad_norm: None,
        }
    }

    /// AdamW with β1 = 0.9, β2 = 0.999, ε = 1e-8 and decoupled decay `weight_decay`.
    pub fn adamw(weight_decay: f64) -> Self {
        Optimizer {
            kind: OptimizerKind::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            weight_decay,
            clip_grad_norm: None,
        }
    }

    /// The same optimizer with weight decay `wd`.
    pub fn with_weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }

    /// The same optimizer clipping gradients to global norm `max_norm`.
    pub fn with_clip_grad_norm(mut self, max_norm: f64) -> Self {
        self.clip_grad_norm = Some(max_norm);
        self
    }

    /// A short name: `sgd`, `momentum`, `nesterov`, `adam` or `adamw`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Momentum { nesterov: false, .. } => "momentum",
            OptimizerKind::Momentum { nesterov: true, .. } => "nesterov",
            OptimizerKind::Adam { .. } => "adam",
            OptimizerKind::AdamW { .. } => "adamw",
        }
    }

    /// Builds the updates of every `(name, parameter, gradient)` for learning rate `lr` (a
    /// scalar of the parameters' dtype): the new parameters first, then the new state.
    #[track_caller]
    pub fn apply<'b>(
        &self,
        b: &'b Builder,
        params: &[(String, Tensor<'b>, Tensor<'b>)],
        lr: Tensor<'b>,
    ) -> Vec<Update<'b>> {
        let mut grads: Vec<Tensor<'b>> = params.iter().map(|(_, _, g)| *g).collect();
        if let Some(max_norm) = self.clip_grad_norm {
            let sq = grads.iter().map(|g| g.square().sum_all()).reduce(|a, c| a + c);
            if let Some(sq) = sq {
                let scale = ((sq.sqrt() + 1e-6).recip() * max_norm).minimum(sq.full_like(1.0));
                grads = grads.iter().map(|g| *g * scale).collect();
            }
        }
        let float = lr.dtype();
        let mut out = Vec::new();
        let mut state = Vec::new();
        let state_input = |name: String, ty: TensorType| b.input(&name, ty.dtype, ty.dims().to_vec());
        // Adam's step count and bias corrections, shared by all parameters, made on first use.
        let mut adam_corrections: Option<(Tensor<'b>, Tensor<'b>)> = None;
        for ((name, p, _), g) in params.iter().zip(grads) {
            let decoupled = matches!(self.kind, OptimizerKind::AdamW { .. });
            let g = if self.weight_decay != 0.0 && !decoupled { g + *p * self.weight_decay } else { g };
            let delta = match self.kind {
                OptimizerKind::Sgd => g,
                OptimizerKind::Momentum { momentum, nesterov } => {
                    let vname = format!("momentum.{name}");
                    let v = state_input(vname.clone(), p.ty());
                    let v1 = v * momentum + g;
                    state.push(Update { value: v1, replaces: vname, is_state: true });
                    if nesterov { g + v1 * momentum } else { v1 }
                }
                OptimizerKind::Adam { beta1, beta2, eps } | OptimizerKind::AdamW { beta1, beta2, eps } => {
                    let (mname, vname) = (format!("adam.m.{name}"), format!("adam.v.{name}"));
                    let m = state_input(mname.clone(), p.ty());
                    let v = state_input(vname.clone(), p.ty());
                    let m1 = m * beta1 + g * (1.0 - beta1);
                    let v1 = v * beta2 + g.square() * (1.0 - beta2);
                    state.push(Update { value: m1, replaces: mname, is_state: true });
                    state.push(Update { value: v1, replaces: vname, is_state: true });
                    let (c1, c2) = *adam_corrections.get_or_insert_with(|| {
                        let t = state_input("adam.step".into(), TensorType::new(float, []));
                        let t1 = t + 1.0;
                        state.push(Update { value: t1, replaces: "adam.step".into(), is_state: true });
                        // Bias corrections 1 - β^t as scalars.
                        (1.0 - t1.full_like(beta1).pow(t1), 1.0 - t1.full_like(beta2).pow(t1))
                    });
                    let mhat = m1 / c1;
                    let vhat = v1 / c2;
                    let mut d = mhat / (vhat.sqrt() + eps);
                    if decoupled && self.weight_decay != 0.0 {
                        d = d + *p * self.weight_decay;
                    }
                    d
                }
            };
            out.push(Update { value: *p - delta * lr, replaces: name.clone(), is_state: false });
        }
        out.extend(state);
        out
    }
}
