//! LSTM layer, unrolled over the (static) sequence length.

use crate::builder::{Builder, Tensor};
use crate::init::uniform;

/// A single-layer LSTM with gates ordered (input, forget, cell, output), as in PyTorch.
#[derive(Clone, Copy, Debug)]
pub struct Lstm<'b> {
    /// Input weights `[input, 4·hidden]`.
    pub w_ih: Tensor<'b>,
    /// Recurrent weights `[hidden, 4·hidden]`.
    pub w_hh: Tensor<'b>,
    /// Bias `[4·hidden]`.
    pub bias: Tensor<'b>,
    input: usize,
    hidden: usize,
}

/// Hidden states of every step and the final cell state.
#[derive(Clone, Debug)]
pub struct LstmOutput<'b> {
    /// `h_t` for every step, each `[batch, hidden]`.
    pub hidden: Vec<Tensor<'b>>,
    /// The final cell state `[batch, hidden]`.
    pub cell: Tensor<'b>,
}

impl<'b> LstmOutput<'b> {
    /// The last hidden state `[batch, hidden]`.
    pub fn last(&self) -> Option<Tensor<'b>> {
        self.hidden.last().copied()
    }

    /// All hidden states stacked as `[batch, seq, hidden]`.
    #[track_caller]
    pub fn stacked(&self, b: &'b Builder) -> Tensor<'b> {
        let steps: Vec<Tensor<'b>> = self
            .hidden
            .iter()
            .map(|h| {
                let s = h.shape();
                h.reshape(&[s[0], 1, s[1]])
            })
            .collect();
        b.concat(&steps, 1)
    }
}

impl<'b> Lstm<'b> {
    /// A layer `name` mapping `input` features to `hidden` units; weights uniform in ±1/√hidden.
    #[track_caller]
    pub fn new(b: &'b Builder, name: &str, input: usize, hidden: usize) -> Self {
        let init = uniform(1.0 / (hidden.max(1) as f64).sqrt());
        Lstm {
            w_ih: b.param(&format!("{name}.w_ih"), [input, 4 * hidden], init),
            w_hh: b.param(&format!("{name}.w_hh"), [hidden, 4 * hidden], init),
            bias: b.param(&format!("{name}.bias"), [4 * hidden], init),
            input,
            hidden,
        }
    }

    /// Runs over `x: [batch, seq, input]` from zero initial states.
    #[track_caller]
    pub fn forward(&self, x: Tensor<'b>) -> LstmOutput<'b> {
        let s = x.shape();
        let bld = x.b;
        if x.is_poisoned() || s.len() != 3 || s[2] != self.input {
            if !x.is_poisoned() {
                bld.fail("Lstm", format!("expects input [batch, seq, {}], got {}", self.input, x.ty()));
            }
            return LstmOutput { hidden: vec![], cell: bld.handle(None) };
        }
        let (batch, seq, h) = (s[0], s[1], self.hidden);
        // The input projection of every step in one matmul.
        let xw = (x.reshape(&[batch * seq, self.input]).matmul(self.w_ih) + self.bias).reshape(&[batch, seq, 4 * h]);
        let mut hs = Vec::with_capacity(seq);
        let mut h_t = bld.constant(0.0, x.dtype(), [batch, h]);
        let mut c_t = h_t;
        for t in 0..seq {
            let gates = xw.slice(1, t, t + 1, 1).reshape(&[batch, 4 * h]) + h_t.matmul(self.w_hh);
            let gate = |i: usize| gates.slice(1, i * h, (i + 1) * h, 1);
            let (ig, fg, gg, og) = (gate(0).sigmoid(), gate(1).sigmoid(), gate(2).tanh(), gate(3).sigmoid());
            c_t = fg * c_t + ig * gg;
            h_t = og * c_t.tanh();
            hs.push(h_t);
        }
        LstmOutput { hidden: hs, cell: c_t }
    }
}
