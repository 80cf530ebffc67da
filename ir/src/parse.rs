//! Parser for the text form printed by [`crate::print`]. Errors carry line and column.
//!
//! A module is a sequence of `func` definitions. Value names in a function body are labels:
//! the printer's `%N` numbers are honoured when they fit (so print → parse → print is the
//! identity), and any other names are numbered in order. `;` starts a comment.

use std::collections::HashMap;

use thiserror::Error;

use crate::dtype::DType;
use crate::graph::{Graph, NodeId};
use crate::op::{BinaryOp, CmpOp, ConvAttrs, Distribution, Init, Literal, Op, ReduceOp, UnaryOp};
use crate::shape::TensorType;

/// A syntax or typing error in `.kir` text, at a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("line {line}, column {col}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// `%name`
    Value(String),
    /// `@name`
    Func(String),
    Ident(String),
    Number(String),
    Punct(&'static str),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Value(v) => format!("`%{v}`"),
            Tok::Func(v) => format!("`@{v}`"),
            Tok::Ident(v) | Tok::Number(v) => format!("`{v}`"),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::Eof => "end of input".into(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Pos {
    line: usize,
    col: usize,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

fn lex(text: &str) -> Result<Vec<(Tok, Pos)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let (mut i, mut line, mut col) = (0, 1, 1);
    let take_name = |i: &mut usize, col: &mut usize| {
        let start = *i;
        while *i < chars.len() && is_name_char(chars[*i]) {
            *i += 1;
            *col += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, col };
        if c == '\n' {
            i += 1;
            line += 1;
            col = 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            col += 1;
            continue;
        }
        if c == ';' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let next = chars.get(i + 1).copied();
        if c == '%' || c == '@' {
            i += 1;
            col += 1;
            let name = take_name(&mut i, &mut col);
            if name.is_empty() {
                return Err(ParseError { line, col, message: format!("expected a name after `{c}`") });
            }
            toks.push((if c == '%' { Tok::Value(name) } else { Tok::Func(name) }, pos));
            continue;
        }
        if c == '-' && next == Some('>') {
            i += 2;
            col += 2;
            toks.push((Tok::Punct("->"), pos));
            continue;
        }
        let starts_number = c.is_ascii_digit()
            || ((c == '-' || c == '+') && next.is_some_and(|n| n.is_ascii_digit() || n == 'i' || n == 'N' || n == 'n'));
        if starts_number {
            let start = i;
            i += 1;
            col += 1;
            while i < chars.len() {
                let d = chars[i];
                let exp_sign = (d == '-' || d == '+') && matches!(chars[i - 1], 'e' | 'E');
                if is_name_char(d) || exp_sign {
                    i += 1;
                    col += 1;
                } else {
                    break;
                }
            }
            toks.push((Tok::Number(chars[start..i].iter().collect()), pos));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let name = take_name(&mut i, &mut col);
            toks.push((Tok::Ident(name), pos));
            continue;
        }
        let punct = match c {
            '(' => "(",
            ')' => ")",
            '[' => "[",
            ']' => "]",
            '{' => "{",
            '}' => "}",
            ',' => ",",
            ':' => ":",
            '=' => "=",
            _ => {
                return Err(ParseError { line, col, message: format!("unexpected character `{c}`") });
            }
        };
        i += 1;
        col += 1;
        toks.push((Tok::Punct(punct), pos));
    }
    toks.push((Tok::Eof, Pos { line, col }));
    Ok(toks)
}

/// An attribute value as written: a number, a name, or a list of numbers.
#[derive(Clone, Debug)]
enum AttrValue {
    Number(String),
    Ident(String),
    List(Vec<usize>),
}

struct Stmt {
    name: String,
    name_pos: Pos,
    op: String,
    op_pos: Pos,
    literal: Option<(String, Pos)>,
    args: Vec<(String, Pos)>,
    attrs: Vec<(String, AttrValue, Pos)>,
    ty: TensorType,
}

struct Leaf {
    name: String,
    pos: Pos,
    ty: TensorType,
    init: Option<Init>,
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    at: usize,
}

type PResult<T> = Result<T, ParseError>;

fn err_at<T>(pos: Pos, message: impl Into<String>) -> PResult<T> {
    Err(ParseError { line: pos.line, col: pos.col, message: message.into() })
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].0
    }

    fn pos(&self) -> Pos {
        self.toks[self.at].1
    }

    fn bump(&mut self) -> (Tok, Pos) {
        let t = self.toks[self.at].clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn eat(&mut self, p: &'static str) -> bool {
        if *self.peek() == Tok::Punct(p) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &'static str) -> PResult<Pos> {
        let pos = self.pos();
        if self.eat(p) { Ok(pos) } else { err_at(pos, format!("expected `{p}`, found {}", self.peek().describe())) }
    }

    fn ident(&mut self, what: &str) -> PResult<(String, Pos)> {
        match self.bump() {
            (Tok::Ident(s), p) => Ok((s, p)),
            (t, p) => err_at(p, format!("expected {what}, found {}", t.describe())),
        }
    }

    fn keyword(&mut self, kw: &str) -> PResult<()> {
        let (s, p) = self.ident(&format!("`{kw}`"))?;
        if s != kw {
            return err_at(p, format!("expected `{kw}`, found `{s}`"));
        }
        Ok(())
    }

    fn usize_(&mut self) -> PResult<usize> {
        match self.bump() {
            (Tok::Number(s), p) => {
                s.parse().or_else(|_| err_at(p, format!("expected a non-negative integer, found `{s}`")))
            }
            (t, p) => err_at(p, format!("expected a non-negative integer, found {}", t.describe())),
        }
    }

    fn number(&mut self) -> PResult<(String, Pos)> {
        match self.bump() {
            (Tok::Number(s) | Tok::Ident(s), p) => Ok((s, p)),
            (t, p) => err_at(p, format!("expected a number, found {}", t.describe())),
        }
    }

    fn float(&mut self) -> PResult<f64> {
        let (s, p) = self.number()?;
        parse_float(&s, p)
    }

    fn usize_list(&mut self) -> PResult<Vec<usize>> {
        self.expect("[")?;
        let mut v = Vec::new();
        while !self.eat("]") {
            v.push(self.usize_()?);
            if !self.eat(",") {
                self.expect("]")?;
                break;
            }
        }
        Ok(v)
    }

    fn ty(&mut self) -> PResult<TensorType> {
        let (name, p) = self.ident("a type such as `f32[2,3]`")?;
        let dtype: DType = name.parse().or_else(|e: String| err_at(p, e))?;
        let dims = self.usize_list()?;
        Ok(TensorType::new(dtype, dims))
    }

    fn init(&mut self) -> PResult<Init> {
        let (name, p) = self.ident("an initializer")?;
        let pair = |s: &mut Self| -> PResult<(f64, f64)> {
            s.expect("(")?;
            let a = s.float()?;
            s.expect(",")?;
            let b = s.float()?;
            s.expect(")")?;
            Ok((a, b))
        };
        match name.as_str() {
            "zeros" => Ok(Init::Zeros),
            "ones" => Ok(Init::Ones),
            "uniform" => {
                let (low, high) = pair(self)?;
                Ok(Init::Uniform { low: Literal(low), high: Literal(high) })
            }
            "normal" => {
                let (mean, std) = pair(self)?;
                Ok(Init::Normal { mean: Literal(mean), std: Literal(std) })
            }
            _ => err_at(
                p,
                format!("unknown initializer `{name}` (expected zeros, ones, uniform(a, b) or normal(mean, std))"),
            ),
        }
    }

    fn leaf(&mut self) -> PResult<Leaf> {
        let (name, pos) = match self.bump() {
            (Tok::Value(v), p) => (v, p),
            (t, p) => {
                return err_at(p, format!("expected a parameter such as `%x`, found {}", t.describe()));
            }
        };
        self.expect(":")?;
        let ty = self.ty()?;
        let init = if *self.peek() == Tok::Ident("param".into()) {
            self.bump();
            Some(self.init()?)
        } else {
            None
        };
        Ok(Leaf { name, pos, ty, init })
    }

    fn attr_value(&mut self) -> PResult<AttrValue> {
        match self.peek().clone() {
            Tok::Punct("[") => Ok(AttrValue::List(self.usize_list()?)),
            Tok::Number(s) => {
                self.bump();
                Ok(AttrValue::Number(s))
            }
            Tok::Ident(s) => {
                self.bump();
                Ok(AttrValue::Ident(s))
            }
            t => err_at(self.pos(), format!("expected an attribute value, found {}", t.describe())),
        }
    }

    fn stmt(&mut self, name: String, name_pos: Pos) -> PResult<Stmt> {
        self.expect("=")?;
        let (op, op_pos) = self.ident("an op name")?;
        let literal = if op == "const" { Some(self.number()?) } else { None };
        let mut args = Vec::new();
        while let Tok::Value(v) = self.peek().clone() {
            let p = self.pos();
            self.bump();
            args.push((v, p));
            if !self.eat(",") {
                break;
            }
        }
        let mut attrs = Vec::new();
        if self.eat("{") {
            while !self.eat("}") {
                let (key, p) = self.ident("an attribute name")?;
                self.expect("=")?;
                attrs.push((key, self.attr_value()?, p));
                if !self.eat(",") {
                    self.expect("}")?;
                    break;
                }
            }
        }
        self.expect(":")?;
        let ty = self.ty()?;
        Ok(Stmt { name, name_pos, op, op_pos, literal, args, attrs, ty })
    }

    fn func(&mut self) -> PResult<Graph> {
        self.keyword("func")?;
        let (fname, fpos) = match self.bump() {
            (Tok::Func(n), p) => (n, p),
            (t, p) => {
                return err_at(p, format!("expected a function name such as `@mlp`, found {}", t.describe()));
            }
        };
        self.expect("(")?;
        let mut leaves = Vec::new();
        while !self.eat(")") {
            leaves.push(self.leaf()?);
            if !self.eat(",") {
                self.expect(")")?;
                break;
            }
        }
        self.expect("->")?;
        self.expect("(")?;
        let mut outs = Vec::new();
        while !self.eat(")") {
            let (name, p) = self.ident("an output name")?;
            self.expect(":")?;
            outs.push((name, p, self.ty()?));
            if !self.eat(",") {
                self.expect(")")?;
                break;
            }
        }
        self.expect("{")?;
        let mut stmts = Vec::new();
        let rets = loop {
            match self.bump() {
                (Tok::Value(name), p) => stmts.push(self.stmt(name, p)?),
                (Tok::Ident(k), _) if k == "return" => {
                    let mut rets = Vec::new();
                    while let Tok::Value(v) = self.peek().clone() {
                        rets.push((v, self.pos()));
                        self.bump();
                        if !self.eat(",") {
                            break;
                        }
                    }
                    break rets;
                }
                (t, p) => {
                    return err_at(
                        p,
                        format!("expected a statement `%name = ...` or `return`, found {}", t.describe()),
                    );
                }
            }
        };
        self.expect("}")?;
        build(fname, fpos, leaves, stmts, outs, rets)
    }
}

fn parse_float(s: &str, p: Pos) -> PResult<f64> {
    s.parse::<f64>().or_else(|_| err_at(p, format!("`{s}` is not a number")))
}

/// Builds the graph, honouring the printer's `%N` numbering where it fits: slot `i` of the
/// arena goes to the statement named `%i` if there is one, otherwise to the next leaf.
fn build(
    fname: String,
    fpos: Pos,
    leaves: Vec<Leaf>,
    stmts: Vec<Stmt>,
    outs: Vec<(String, Pos, TensorType)>,
    rets: Vec<(String, Pos)>,
) -> PResult<Graph> {
    if !crate::types::is_identifier(&fname) {
        return err_at(fpos, format!("`{fname}` is not a valid function name"));
    }
    let mut g = Graph::new(fname);
    let mut names: HashMap<String, NodeId> = HashMap::new();
    let mut leaf_index: HashMap<&str, usize> = HashMap::new();
    for (i, l) in leaves.iter().enumerate() {
        if leaf_index.insert(&l.name, i).is_some() {
            return err_at(l.pos, format!("`%{}` is declared twice", l.name));
        }
    }
    let mut placed = vec![false; leaves.len()];
    let mut next_leaf = 0;

    fn place_leaf(g: &mut Graph, names: &mut HashMap<String, NodeId>, l: &Leaf) -> PResult<()> {
        let r = match l.init {
            Some(init) => g.param(l.name.clone(), l.ty.clone(), init),
            None => g.input(l.name.clone(), l.ty.clone()),
        };
        let id = r.or_else(|e| err_at(l.pos, e.to_string()))?;
        names.insert(l.name.clone(), id);
        Ok(())
    }

    for s in &stmts {
        // Fill the slots before this statement's number with leaves, as the printer laid them out.
        if let Ok(n) = s.name.parse::<usize>() {
            while g.len() < n && next_leaf < leaves.len() {
                if !placed[next_leaf] {
                    place_leaf(&mut g, &mut names, &leaves[next_leaf])?;
                    placed[next_leaf] = true;
                }
                next_leaf += 1;
            }
        }
        let mut args = Vec::with_capacity(s.args.len());
        for (a, p) in &s.args {
            if let Some(&id) = names.get(a) {
                args.push(id);
            } else if let Some(&li) = leaf_index.get(a.as_str()) {
                // A leaf used before its printed slot: place it now, with every leaf before it,
                // so the signature keeps its order.
                while next_leaf <= li {
                    if !placed[next_leaf] {
                        place_leaf(&mut g, &mut names, &leaves[next_leaf])?;
                        placed[next_leaf] = true;
                    }
                    next_leaf += 1;
                }
                args.push(names[a]);
            } else {
                return err_at(*p, format!("`%{a}` is not defined before this use"));
            }
        }
        if names.contains_key(&s.name) || leaf_index.contains_key(s.name.as_str()) {
            return err_at(s.name_pos, format!("`%{}` is defined twice", s.name));
        }
        let op = op_from_stmt(s)?;
        let id = g.add_typed(op, &args, s.ty.clone()).or_else(|e| err_at(s.op_pos, e.to_string()))?;
        names.insert(s.name.clone(), id);
    }
    for (i, l) in leaves.iter().enumerate() {
        if !placed[i] {
            place_leaf(&mut g, &mut names, l)?;
        }
    }
    if rets.len() != outs.len() {
        let p = rets.first().map(|r| r.1).unwrap_or(fpos);
        return err_at(p, format!("the signature declares {} output(s) but `return` gives {}", outs.len(), rets.len()));
    }
    for ((oname, opos, oty), (r, rpos)) in outs.into_iter().zip(rets) {
        let id = *names.get(&r).ok_or(()).or_else(|_| err_at(rpos, format!("`%{r}` is not defined")))?;
        if *g.ty(id) != oty {
            return err_at(rpos, format!("output `{oname}` is declared {oty} but `%{r}` is {}", g.ty(id)));
        }
        g.add_output(oname, id).or_else(|e| err_at(opos, e.to_string()))?;
    }
    Ok(g)
}

/// Looks up the attributes of one statement, rejecting unknown and missing ones.
struct Attrs<'a> {
    stmt: &'a Stmt,
    used: Vec<bool>,
}

impl<'a> Attrs<'a> {
    fn new(stmt: &'a Stmt) -> Self {
        Attrs { stmt, used: vec![false; stmt.attrs.len()] }
    }

    fn get(&mut self, key: &str) -> PResult<(&'a AttrValue, Pos)> {
        for (i, (k, v, p)) in self.stmt.attrs.iter().enumerate() {
            if k == key {
                self.used[i] = true;
                return Ok((v, *p));
            }
        }
        err_at(self.stmt.op_pos, format!("`{}` needs the attribute `{key}`", self.stmt.op))
    }

    fn list(&mut self, key: &str) -> PResult<Vec<usize>> {
        match self.get(key)? {
            (AttrValue::List(v), _) => Ok(v.clone()),
            (_, p) => err_at(p, format!("`{key}` must be a list such as [0,1]")),
        }
    }

    fn pair(&mut self, key: &str) -> PResult<[usize; 2]> {
        let v = self.list(key)?;
        let p = self.get(key)?.1;
        <[usize; 2]>::try_from(v.as_slice()).or_else(|_| err_at(p, format!("`{key}` must have two entries")))
    }

    fn usize_(&mut self, key: &str) -> PResult<usize> {
        match self.get(key)? {
            (AttrValue::Number(s), p) => {
                s.parse().or_else(|_| err_at(p, format!("`{key}` must be a non-negative integer")))
            }
            (_, p) => err_at(p, format!("`{key}` must be a non-negative integer")),
        }
    }

    fn float(&mut self, key: &str) -> PResult<f64> {
        match self.get(key)? {
            (AttrValue::Number(s) | AttrValue::Ident(s), p) => parse_float(s, p),
            (_, p) => err_at(p, format!("`{key}` must be a number")),
        }
    }

    fn ident(&mut self, key: &str) -> PResult<(String, Pos)> {
        match self.get(key)? {
            (AttrValue::Ident(s), p) => Ok((s.clone(), p)),
            (_, p) => err_at(p, format!("`{key}` must be a name")),
        }
    }

    fn conv(&mut self) -> PResult<ConvAttrs> {
        Ok(ConvAttrs {
            stride: self.pair("stride")?,
            padding: self.pair("padding")?,
            dilation: self.pair("dilation")?,
            groups: self.usize_("groups")?,
            layout: self.layout()?,
        })
    }

    /// The optional `layout` of a convolution: `nchw` (the default) or `nhwc`.
    fn layout(&mut self) -> PResult<crate::ConvLayout> {
        if !self.stmt.attrs.iter().any(|(k, _, _)| k == "layout") {
            return Ok(crate::ConvLayout::Nchw);
        }
        match self.ident("layout")? {
            (s, _) if s == "nchw" => Ok(crate::ConvLayout::Nchw),
            (s, _) if s == "nhwc" => Ok(crate::ConvLayout::Nhwc),
            (_, p) => err_at(p, "`layout` must be `nchw` or `nhwc`".to_string()),
        }
    }

    fn finish(self, op: Op) -> PResult<Op> {
        if let Some(i) = self.used.iter().position(|u| !u) {
            let (k, _, p) = &self.stmt.attrs[i];
            return err_at(*p, format!("`{}` has no attribute `{k}`", self.stmt.op));
        }
        Ok(op)
    }
}

fn op_from_stmt(s: &Stmt) -> PResult<Op> {
    let mut a = Attrs::new(s);
    let name = s.op.as_str();
    let op = if let Some(u) = UnaryOp::from_name(name) {
        Op::Unary(u)
    } else if let Some(b) = BinaryOp::from_name(name) {
        Op::Binary(b)
    } else if let Some(c) = CmpOp::from_name(name) {
        Op::Compare(c)
    } else if let Some(r) = ReduceOp::from_name(name) {
        Op::Reduce { op: r, axes: a.list("axes")? }
    } else {
        match name {
            "const" => {
                let (lit, p) = s.literal.as_ref().expect("the statement parser reads a literal after `const`");
                Op::Const { value: Literal(parse_float(lit, *p)?) }
            }
            "iota" => Op::Iota { axis: a.usize_("axis")? },
            "rng" => {
                let (d, p) = a.ident("dist")?;
                let dist = match d.as_str() {
                    "uniform" => Distribution::Uniform,
                    "normal" => Distribution::Normal,
                    _ => {
                        return err_at(p, format!("unknown distribution `{d}` (expected uniform or normal)"));
                    }
                };
                let stream =
                    u32::try_from(a.usize_("stream")?).or_else(|_| err_at(s.op_pos, "`stream` must fit in 32 bits"))?;
                Op::Rng { dist, stream }
            }
            "stop_gradient" => Op::StopGradient,
            "select" => Op::Select,
            "cast" => Op::Cast,
            "reshape" => Op::Reshape,
            "permute" => Op::Permute { perm: a.list("perm")? },
            "broadcast" => Op::Broadcast { dims: a.list("dims")? },
            "slice" => Op::Slice { start: a.list("start")?, stop: a.list("stop")?, step: a.list("step")? },
            "pad" => Op::Pad { low: a.list("low")?, high: a.list("high")?, value: Literal(a.float("value")?) },
            "concat" => Op::Concat { axis: a.usize_("axis")? },
            "matmul" => Op::Matmul,
            "conv2d" => Op::Conv2d(a.conv()?),
            "conv2d_grad_input" => Op::Conv2dGradInput(a.conv()?),
            "conv2d_grad_weight" => Op::Conv2dGradWeight(a.conv()?),
            "gather" => Op::Gather { axis: a.usize_("axis")? },
            "scatter_add" => Op::ScatterAdd { axis: a.usize_("axis")? },
            "input" | "param" => {
                return err_at(s.op_pos, format!("`{name}` values are declared in the function signature"));
            }
            _ => return err_at(s.op_pos, format!("unknown op `{name}`")),
        }
    };
    a.finish(op)
}

/// Parses a module: one or more `func` definitions.
pub fn parse_module(text: &str) -> Result<Vec<Graph>, ParseError> {
    let mut p = Parser { toks: lex(text)?, at: 0 };
    let mut graphs = Vec::new();
    while *p.peek() != Tok::Eof {
        let pos = p.pos();
        let g = p.func()?;
        if graphs.iter().any(|h: &Graph| h.name() == g.name()) {
            return err_at(pos, format!("function `@{}` is defined twice", g.name()));
        }
        graphs.push(g);
    }
    if graphs.is_empty() {
        return err_at(p.pos(), "expected at least one `func`");
    }
    Ok(graphs)
}

/// Parses text holding exactly one `func`.
pub fn parse_graph(text: &str) -> Result<Graph, ParseError> {
    let mut graphs = parse_module(text)?;
    if graphs.len() != 1 {
        return Err(ParseError { line: 1, col: 1, message: format!("expected one function, found {}", graphs.len()) });
    }
    Ok(graphs.remove(0))
}
