//! Convolution configurations and their one-op graphs, shared by the differential tests of
//! both activation layouts.

use kiln::ir::{Graph, parse_graph};

/// One convolution configuration: (n, c, h, w), (o, kh, kw), stride, padding, dilation, groups.
pub type ConvCase = ([usize; 4], [usize; 3], [usize; 2], [usize; 2], [usize; 2], usize);

/// Every shape class the convolution kernels have a path for: one channel, odd sizes, strides,
/// padding, dilation, groups (depthwise too), LeNet-5's layers, taps that fall wholly in the
/// padding for some kernel columns, and mixed strides with dilation.
pub const CONV_CASES: &[ConvCase] = &[
    ([1, 1, 5, 5], [1, 3, 3], [1, 1], [0, 0], [1, 1], 1),
    ([2, 3, 8, 7], [4, 3, 3], [1, 1], [1, 1], [1, 1], 1),
    ([2, 3, 9, 9], [5, 3, 2], [2, 3], [1, 0], [1, 1], 1),
    ([1, 2, 9, 10], [2, 3, 3], [1, 1], [2, 2], [2, 3], 1),
    ([2, 4, 6, 6], [6, 3, 3], [1, 2], [1, 1], [1, 1], 2),
    ([1, 6, 5, 5], [6, 1, 1], [1, 1], [0, 0], [1, 1], 6),
    ([3, 1, 28, 28], [6, 5, 5], [1, 1], [2, 2], [1, 1], 1),
    ([9, 6, 14, 14], [16, 5, 5], [1, 1], [0, 0], [1, 1], 1),
    ([1, 1, 2, 2], [1, 5, 5], [1, 1], [3, 3], [1, 1], 1),
    ([1, 2, 3, 4], [2, 3, 3], [2, 2], [2, 2], [2, 2], 2),
    ([5, 7, 11, 9], [3, 3, 3], [2, 1], [1, 2], [1, 2], 1),
];

/// The forward, input-gradient and weight-gradient graphs of `case` in dtype `dt`,
/// channels-first or (`nhwc`) channels-last.
pub fn conv_graphs(dt: &str, case: ConvCase, nhwc: bool) -> [Graph; 3] {
    let ([n, c, h, w], [o, kh, kw], s, p, d, g) = case;
    let oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) / s[0] + 1;
    let ow = (w + 2 * p[1] - d[1] * (kw - 1) - 1) / s[1] + 1;
    let layout = if nhwc { ", layout=nhwc" } else { "" };
    let attrs = format!(
        "{{stride=[{},{}], padding=[{},{}], dilation=[{},{}], groups={g}{layout}}}",
        s[0], s[1], p[0], p[1], d[0], d[1]
    );
    let act = |ch: usize, y: usize, x: usize| {
        if nhwc { format!("{dt}[{n},{y},{x},{ch}]") } else { format!("{dt}[{n},{ch},{y},{x}]") }
    };
    let (xt, wt, yt) = (act(c, h, w), format!("{dt}[{o},{},{kh},{kw}]", c / g), act(o, oh, ow));
    let one = |args: &str, op: &str, ty: &str| {
        let text = format!("func @t({args}) -> (y: {ty}) {{\n  %2 = {op} {attrs} : {ty}\n  return %2\n}}\n");
        parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    [
        one(&format!("%x: {xt}, %w: {wt}"), "conv2d %x, %w", &yt),
        one(&format!("%dy: {yt}, %w: {wt}"), "conv2d_grad_input %dy, %w", &xt),
        one(&format!("%x: {xt}, %dy: {yt}"), "conv2d_grad_weight %x, %dy", &wt),
    ]
}
