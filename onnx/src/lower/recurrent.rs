//! `LSTM`, unrolled over its (static) sequence: forward, reverse or both directions, with
//! biases, initial states, peepholes, `clip`, `input_forget`, the `layout` attribute and the
//! activations kiln composes (`Sigmoid`, `Tanh`, `Relu`). The input projection of the whole
//! sequence is one product per direction; each step adds the recurrent product.

use kiln_frontend::Tensor;

use super::{Cx, Fail, Lowered};

/// An activation named by the `activations` attribute.
fn activation<'b>(name: &str, x: Tensor<'b>) -> Result<Tensor<'b>, Fail> {
    match name {
        "Sigmoid" => Ok(x.sigmoid()),
        "Tanh" => Ok(x.tanh()),
        "Relu" => Ok(x.relu()),
        other => Err(Fail::Unsupported(format!("LSTM activation {other}"))),
    }
}

/// `LSTM`: outputs `Y` `[seq, dirs, batch, hidden]`, `Y_h` and `Y_c` `[dirs, batch, hidden]`
/// (batch first with `layout = 1`).
pub(crate) fn lstm<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let direction = cx.attr_s("direction", "forward")?;
    let dirs = match direction.as_str() {
        "forward" | "reverse" => 1,
        "bidirectional" => 2,
        other => return Err(Fail::Bad(format!("direction \"{other}\""))),
    };
    let batch_first = cx.attr_i("layout", 0)? != 0;
    let mut x = cx.float(0)?;
    if batch_first {
        x = x.permute(&[1, 0, 2]);
    }
    let (w, r) = (cx.float(1)?, cx.float(2)?);
    let xs = x.shape();
    let (seq, batch, input) = (xs[0], xs[1], xs[2]);
    let hidden = r.shape().get(2).copied().ok_or_else(|| Fail::Bad(format!("R is {}", r.ty())))?;
    if w.shape() != [dirs, 4 * hidden, input] || r.shape() != [dirs, 4 * hidden, hidden] {
        return Err(Fail::Bad(format!(
            "W {} and R {} do not fit X {} with {dirs} direction(s)",
            w.ty(),
            r.ty(),
            x.ty()
        )));
    }
    if cx.has(4) {
        let lens = cx.ints(4)?;
        if lens.iter().any(|&l| l != seq as i64) {
            return cx.unsupported("LSTM sequence_lens shorter than the sequence");
        }
    }
    let names = cx.node.attribute.iter().find(|a| a.name() == "activations").map(|a| a.strings.clone());
    let names: Vec<String> = match names {
        Some(v) => v.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect(),
        None => ["Sigmoid", "Tanh", "Tanh"].repeat(dirs).iter().map(|s| s.to_string()).collect(),
    };
    if names.len() != 3 * dirs {
        return Err(Fail::Bad(format!("{} activations for {dirs} direction(s)", names.len())));
    }
    let clip = cx.has_attr("clip").then(|| cx.attr_f("clip", 0.0)).transpose()?;
    let couple = cx.attr_i("input_forget", 0)? != 0;
    let state = |i: usize, d: usize| -> Result<Tensor<'b>, Fail> {
        Ok(match cx.opt_tensor(i)? {
            Some(t) => {
                let t = if batch_first { t.permute(&[1, 0, 2]) } else { t };
                t.slice(0, d, d + 1, 1).reshape(&[batch, hidden])
            }
            None => cx.b.constant(0.0, x.dtype(), [batch, hidden]),
        })
    };
    let mut ys = Vec::with_capacity(dirs);
    let (mut hs, mut cs) = (Vec::with_capacity(dirs), Vec::with_capacity(dirs));
    for d in 0..dirs {
        let reverse = direction == "reverse" || d == 1;
        let wd = w.slice(0, d, d + 1, 1).reshape(&[4 * hidden, input]);
        let rd = r.slice(0, d, d + 1, 1).reshape(&[4 * hidden, hidden]).transpose();
        // The whole sequence's input projection in one product, biases added.
        let mut proj = x.reshape(&[seq * batch, input]).matmul(wd.transpose()).reshape(&[seq, batch, 4 * hidden]);
        if let Some(b) = cx.opt_tensor(3)? {
            let bd = b.slice(0, d, d + 1, 1).reshape(&[8 * hidden]);
            proj = proj + (bd.slice(0, 0, 4 * hidden, 1) + bd.slice(0, 4 * hidden, 8 * hidden, 1));
        }
        let peephole = |k: usize| -> Result<Option<Tensor<'b>>, Fail> {
            Ok(cx
                .opt_tensor(7)?
                .map(|p| p.slice(0, d, d + 1, 1).reshape(&[3 * hidden]).slice(0, k * hidden, (k + 1) * hidden, 1)))
        };
        let (pi, po, pf) = (peephole(0)?, peephole(1)?, peephole(2)?);
        let act = &names[3 * d..3 * d + 3];
        let (mut h, mut c) = (state(5, d)?, state(6, d)?);
        let mut outs = vec![None; seq];
        for step in 0..seq {
            let t = if reverse { seq - 1 - step } else { step };
            let mut gates = proj.slice(0, t, t + 1, 1).reshape(&[batch, 4 * hidden]) + h.matmul(rd);
            if let Some(limit) = clip {
                gates = gates.maximum(gates.full_like(-limit)).minimum(gates.full_like(limit));
            }
            let gate = |k: usize| gates.slice(1, k * hidden, (k + 1) * hidden, 1);
            let with_peephole = |g: Tensor<'b>, p: Option<Tensor<'b>>, state: Tensor<'b>| match p {
                Some(p) => g + state * p,
                None => g,
            };
            let i = activation(&act[0], with_peephole(gate(0), pi, c))?;
            let f = if couple { 1.0 - i } else { activation(&act[0], with_peephole(gate(2), pf, c))? };
            let candidate = activation(&act[1], gate(3))?;
            c = f * c + i * candidate;
            let o = activation(&act[0], with_peephole(gate(1), po, c))?;
            h = o * activation(&act[2], c)?;
            outs[t] = Some(h);
        }
        let steps: Vec<Tensor<'b>> =
            outs.into_iter().map(|o| o.expect("every step ran").reshape(&[1, batch, hidden])).collect();
        ys.push(cx.b.concat(&steps, 0).reshape(&[seq, 1, batch, hidden]));
        hs.push(h.reshape(&[1, batch, hidden]));
        cs.push(c.reshape(&[1, batch, hidden]));
    }
    let join = |v: &[Tensor<'b>], axis: isize| if v.len() == 1 { v[0] } else { cx.b.concat(v, axis) };
    let (mut y, mut yh, mut yc) = (join(&ys, 1), join(&hs, 0), join(&cs, 0));
    if batch_first {
        y = y.permute(&[2, 0, 1, 3]);
        yh = yh.permute(&[1, 0, 2]);
        yc = yc.permute(&[1, 0, 2]);
    }
    Ok(vec![y.into(), yh.into(), yc.into()])
}
