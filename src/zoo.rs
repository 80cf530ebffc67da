//! The model zoo: the models people learn deep learning with, each a function of the batch
//! size returning its forward graph with named inputs and parameters.
//!
//! Every model's graph has one input `x` (ids for the LSTM) and one output; [`Model::loss`]
//! and [`Model::labels`] say how it is trained. The GAN is two graphs.

use kiln_frontend::nn::{Conv2d, Dropout, Embedding, LayerNorm, Linear, Lstm, MaxPool2d, MultiHeadAttention};
use kiln_frontend::{BuildError, Builder, Mode, Tensor, init};
use kiln_ir::{DType, Graph, TensorType};

/// How a model's output is compared with its labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Mean squared error against float targets of the output's shape.
    Mse,
    /// Cross entropy of logits against integer class labels `[batch]`.
    CrossEntropy,
    /// Binary cross entropy of probabilities against float targets of the output's shape.
    BinaryCrossEntropy,
    /// Mean absolute error against float targets of the output's shape.
    Mae,
}

/// One zoo graph with what its training needs.
#[derive(Clone, Debug)]
pub struct Model {
    /// The forward graph (inputs and parameters named, one output).
    pub graph: Graph,
    /// The loss it is trained with.
    pub loss: Loss,
    /// The type of the labels the loss takes.
    pub labels: TensorType,
}

/// A zoo entry: name, one-line summary, and its builder.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The name used on the command line.
    pub name: &'static str,
    /// What the model is.
    pub summary: &'static str,
    /// Builds the model's graphs for a batch size and float dtype (`f32` or `f64`).
    pub build: fn(usize, DType) -> Result<Vec<Model>, BuildError>,
}

/// Every model of the zoo, in the order `kiln models` lists them.
pub const CATALOG: &[Entry] = &[
    Entry {
        name: "xor_mlp",
        summary: "2 -> 2 (sigmoid) -> 1 (sigmoid), MSE: the XOR problem",
        build: |b, f| Ok(vec![xor_mlp_in(b, f)?]),
    },
    Entry {
        name: "mnist_mlp",
        summary: "784 -> 256 -> 128 -> 10, ReLU, cross entropy",
        build: |b, f| Ok(vec![mnist_mlp_in(b, f)?]),
    },
    Entry {
        name: "lenet5",
        summary: "LeNet-5 on 1x28x28: two conv+pool stages, 400 -> 120 -> 84 -> 10",
        build: |b, f| Ok(vec![lenet5_in(b, f)?]),
    },
    Entry {
        name: "cifar_cnn",
        summary: "CNN on 3x32x32: conv 32, conv 64, each ReLU + maxpool, -> 64 -> 10",
        build: |b, f| Ok(vec![cifar_cnn_in(b, f)?]),
    },
    Entry {
        name: "lstm_classifier",
        summary: "embedding 10000x128 -> LSTM 128 over 32 steps -> 64 ReLU -> 2",
        build: |b, f| Ok(vec![lstm_classifier_in(b, f)?]),
    },
    Entry {
        name: "transformer_block",
        summary: "pre-norm encoder block: d_model 128, 4 heads, FFN 512 (GELU), seq 64",
        build: |b, f| Ok(vec![transformer_block_in(b, f)?]),
    },
    Entry {
        name: "gan",
        summary: "generator 64 -> 256 -> 784 (tanh) and discriminator 784 -> 256 -> 1 (sigmoid)",
        build: |b, f| {
            let g = gan_in(b, f)?;
            Ok(vec![g.generator, g.discriminator])
        },
    },
];

/// The zoo entry called `name`.
pub fn entry(name: &str) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.name == name)
}

fn model(b: Builder, loss: Loss, labels: TensorType) -> Result<Model, BuildError> {
    Ok(Model { graph: b.finish()?, loss, labels })
}

/// XOR: `x: [batch, 2]` → `prob: [batch, 1]`, trained with MSE.
pub fn xor_mlp(batch: usize) -> Result<Model, BuildError> {
    xor_mlp_in(batch, DType::F32)
}

fn xor_mlp_in(batch: usize, float: DType) -> Result<Model, BuildError> {
    let b = Builder::new("xor_mlp").with_float(float);
    let x = b.input("x", float, [batch, 2]);
    let h = Linear::with_init(&b, "hidden", 2, 2, init::xavier_uniform(2, 2), true).forward(x).sigmoid();
    let y = Linear::with_init(&b, "out", 2, 1, init::xavier_uniform(2, 1), true).forward(h).sigmoid();
    b.output("prob", y);
    model(b, Loss::Mse, TensorType::new(float, [batch, 1]))
}

/// MNIST MLP: `x: [batch, 784]` → `logits: [batch, 10]`.
pub fn mnist_mlp(batch: usize) -> Result<Model, BuildError> {
    mnist_mlp_in(batch, DType::F32)
}

fn mnist_mlp_in(batch: usize, float: DType) -> Result<Model, BuildError> {
    mnist_mlp_with(batch, float, 0.0, Mode::Eval)
}

/// MNIST MLP with dropout `p` after each hidden layer, built for `mode` (in [`Mode::Eval`], or
/// with `p = 0`, exactly the zoo's `mnist_mlp`).
pub fn mnist_mlp_with(batch: usize, float: DType, p: f64, mode: Mode) -> Result<Model, BuildError> {
    let b = Builder::new("mnist_mlp").with_float(float).with_mode(mode);
    let drop = Dropout::new(p);
    let x = b.input("x", float, [batch, 784]);
    let h = drop.forward(Linear::new(&b, "fc1", 784, 256).forward(x).relu());
    let h = drop.forward(Linear::new(&b, "fc2", 256, 128).forward(h).relu());
    let y = Linear::new(&b, "fc3", 128, 10).forward(h);
    b.output("logits", y);
    model(b, Loss::CrossEntropy, TensorType::new(DType::I32, [batch]))
}

/// LeNet-5: `x: [batch, 1, 28, 28]` → `logits: [batch, 10]`.
pub fn lenet5(batch: usize) -> Result<Model, BuildError> {
    lenet5_in(batch, DType::F32)
}

fn lenet5_in(batch: usize, float: DType) -> Result<Model, BuildError> {
    lenet5_with(batch, float, 0.0, Mode::Eval)
}

/// LeNet-5 with dropout `p` after each hidden dense layer, built for `mode` (in
/// [`Mode::Eval`], or with `p = 0`, exactly the zoo's `lenet5`).
pub fn lenet5_with(batch: usize, float: DType, p: f64, mode: Mode) -> Result<Model, BuildError> {
    let b = Builder::new("lenet5").with_float(float).with_mode(mode);
    let drop = Dropout::new(p);
    let pool = MaxPool2d::new(2, 2, 0);
    let x = b.input("x", float, [batch, 1, 28, 28]);
    let h = pool.forward(Conv2d::new(&b, "conv1", 1, 6, 5, 2).forward(x).relu());
    let h = pool.forward(Conv2d::new(&b, "conv2", 6, 16, 5, 0).forward(h).relu());
    let h = h.flatten(1);
    let h = drop.forward(Linear::new(&b, "fc1", 400, 120).forward(h).relu());
    let h = drop.forward(Linear::new(&b, "fc2", 120, 84).forward(h).relu());
    let y = Linear::new(&b, "fc3", 84, 10).forward(h);
    b.output("logits", y);
    model(b, Loss::CrossEntropy, TensorType::new(DType::I32, [batch]))
}

/// CIFAR CNN: `x: [batch, 3, 32, 32]` → `logits: [batch, 10]` (unpadded 3×3 convolutions, so
/// the feature map is 64×6×6 before the dense layers).
pub fn cifar_cnn(batch: usize) -> Result<Model, BuildError> {
    cifar_cnn_in(batch, DType::F32)
}

fn cifar_cnn_in(batch: usize, float: DType) -> Result<Model, BuildError> {
    let b = Builder::new("cifar_cnn").with_float(float);
    let pool = MaxPool2d::new(2, 2, 0);
    let x = b.input("x", float, [batch, 3, 32, 32]);
    let h = pool.forward(Conv2d::new(&b, "conv1", 3, 32, 3, 0).forward(x).relu());
    let h = pool.forward(Conv2d::new(&b, "conv2", 32, 64, 3, 0).forward(h).relu());
    let h = h.flatten(1);
    let h = Linear::new(&b, "fc1", 64 * 6 * 6, 64).forward(h).relu();
    let y = Linear::new(&b, "fc2", 64, 10).forward(h);
    b.output("logits", y);
    model(b, Loss::CrossEntropy, TensorType::new(DType::I32, [batch]))
}

/// LSTM classifier: token ids `x: i32[batch, 32]` → `logits: [batch, 2]`.
pub fn lstm_classifier(batch: usize) -> Result<Model, BuildError> {
    lstm_classifier_in(batch, DType::F32)
}

fn lstm_classifier_in(batch: usize, float: DType) -> Result<Model, BuildError> {
    let b = Builder::new("lstm_classifier").with_float(float);
    let ids = b.input("x", DType::I32, [batch, 32]);
    let e = Embedding::new(&b, "embed", 10000, 128).forward(ids);
    let out = Lstm::new(&b, "lstm", 128, 128).forward(e);
    let last = out.last().unwrap_or(e);
    let h = Linear::new(&b, "fc1", 128, 64).forward(last).relu();
    let y = Linear::new(&b, "fc2", 64, 2).forward(h);
    b.output("logits", y);
    model(b, Loss::CrossEntropy, TensorType::new(DType::I32, [batch]))
}

/// Transformer encoder block (pre-norm): `x: [batch, 64, 128]` → `y: [batch, 64, 128]`,
/// `y = h + FFN(LN2(h))` with `h = x + MHA(LN1(x))`. Trained here with MSE to a target.
pub fn transformer_block(batch: usize) -> Result<Model, BuildError> {
    transformer_block_in(batch, DType::F32)
}

fn transformer_block_in(batch: usize, float: DType) -> Result<Model, BuildError> {
    let (seq, d) = (64, 128);
    let b = Builder::new("transformer_block").with_float(float);
    let x = b.input("x", float, [batch, seq, d]);
    let y = transformer_block_on(&b, x);
    b.output("y", y);
    model(b, Loss::Mse, TensorType::new(float, [batch, seq, d]))
}

/// The zoo's transformer block applied to `x: [batch, seq, d_model]` inside `b` (4 heads, FFN
/// 4·d_model with GELU, pre-norm), for models that put it between their own layers.
pub fn transformer_block_on<'b>(b: &'b Builder, x: Tensor<'b>) -> Tensor<'b> {
    let d = x.shape().last().copied().unwrap_or(1);
    let attn = MultiHeadAttention::new(b, "attn", d, 4);
    let h = x + attn.forward(LayerNorm::new(b, "ln1", d).forward(x));
    let f = Linear::new(b, "ffn1", d, 4 * d).forward(LayerNorm::new(b, "ln2", d).forward(h)).gelu();
    h + Linear::new(b, "ffn2", 4 * d, d).forward(f)
}

/// The two graphs of a GAN.
#[derive(Clone, Debug)]
pub struct Gan {
    /// `z: [batch, 64]` → `image: [batch, 784]` in `[-1, 1]`; alone, trained with MSE against
    /// target images.
    pub generator: Model,
    /// `x: [batch, 784]` → `prob: [batch, 1]` that `x` is real.
    pub discriminator: Model,
}

/// A GAN for 28×28 images.
pub fn gan(batch: usize) -> Result<Gan, BuildError> {
    gan_in(batch, DType::F32)
}

fn gan_in(batch: usize, float: DType) -> Result<Gan, BuildError> {
    let g = Builder::new("gan_generator").with_float(float);
    let z = g.input("z", float, [batch, GAN_LATENT]);
    let img = gan_generator_on(&g, z);
    g.output("image", img);
    // On its own the generator is trained like a decoder, against target images; adversarial
    // training composes it with the discriminator.
    let generator = model(g, Loss::Mse, TensorType::new(float, [batch, 784]))?;

    let d = Builder::new("gan_discriminator").with_float(float);
    let x = d.input("x", float, [batch, 784]);
    let p = gan_discriminator_on(&d, x);
    d.output("prob", p);
    let discriminator = model(d, Loss::BinaryCrossEntropy, TensorType::new(float, [batch, 1]))?;
    Ok(Gan { generator, discriminator })
}

/// The length of the GAN generator's latent vector.
pub const GAN_LATENT: usize = 64;

/// The GAN's generator inside `b`: `z: [batch, 64]` → images `[batch, 784]` in `[-1, 1]`
/// (parameters `g1.*`, `g2.*`).
pub fn gan_generator_on<'b>(b: &'b Builder, z: Tensor<'b>) -> Tensor<'b> {
    let h = Linear::new(b, "g1", GAN_LATENT, 256).forward(z).relu();
    Linear::with_init(b, "g2", 256, 784, init::xavier_uniform(256, 784), true).forward(h).tanh()
}

/// The GAN's discriminator inside `b`: images `[batch, 784]` → probability `[batch, 1]` that
/// each is real (parameters `d1.*`, `d2.*`).
pub fn gan_discriminator_on<'b>(b: &'b Builder, x: Tensor<'b>) -> Tensor<'b> {
    let h = Linear::new(b, "d1", 784, 256).forward(x).leaky_relu(0.2);
    Linear::with_init(b, "d2", 256, 1, init::xavier_uniform(256, 1), true).forward(h).sigmoid()
}
