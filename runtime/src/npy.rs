//! `.npy` files in and out for any tensor, checked against the type the graph expects.
//!
//! Reading is kiln's own: the header is parsed by a bounded, linear parser that accepts what
//! numpy writes for a simple dtype (a dict of `descr`, `fortran_order` and `shape`, at most
//! [`MAX_HEADER_BYTES`]) and nothing else, and the size the header claims is checked against
//! the file's length before anything is allocated. Writing uses `ndarray-npy`.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;

use kiln_ir::{DType, TensorType, Value};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::WriteNpyExt;
use thiserror::Error;

/// The longest header kiln reads, as numpy's own reader (`max_header_size`).
pub const MAX_HEADER_BYTES: usize = 10_000;

/// Errors reading or writing `.npy` files.
#[derive(Debug, Error)]
pub enum NpyError {
    /// The file could not be opened or created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a well-formed `.npy` file.
    #[error("{path}: not a valid .npy file: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong, and where.
        message: String,
    },
    /// The file holds another element type than the graph expects.
    #[error("{path}: expected a .npy array of {dtype}, the file holds `{found}` elements")]
    Read {
        /// The file.
        path: String,
        /// The dtype the graph expects.
        dtype: DType,
        /// The file's numpy type string.
        found: String,
    },
    /// The file holds an array of the wrong shape.
    #[error("{path}: expected {expected}, the file holds {got}")]
    Shape {
        /// The file.
        path: String,
        /// The type the graph expects.
        expected: TensorType,
        /// The type in the file.
        got: TensorType,
    },
    /// Writing failed.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// What the writer reported.
        source: ndarray_npy::WriteNpyError,
    },
}

/// An element type a `.npy` file may hold: kiln's dtypes, and bytes for images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stored {
    Typed(DType),
    U8,
}

impl Stored {
    fn size(self) -> usize {
        match self {
            Stored::Typed(d) => d.size_bytes(),
            Stored::U8 => 1,
        }
    }
}

/// What a header says: element type, byte order, layout and shape.
#[derive(Debug)]
struct Header {
    descr: String,
    stored: Stored,
    big_endian: bool,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A cursor over the header's characters; every step consumes input, so parsing is linear.
struct HeaderParser<'a> {
    text: &'a [u8],
    at: usize,
}

impl HeaderParser<'_> {
    fn error<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("header column {}: {what}", self.at + 1))
    }

    fn skip_space(&mut self) {
        while self.text.get(self.at).is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        let hit = self.text.get(self.at) == Some(&c);
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { self.error(&format!("expected `{}`", c as char)) }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let Some(&quote) = self.text.get(self.at).filter(|q| **q == b'\'' || **q == b'"') else {
            return self.error("expected a quoted string");
        };
        let begin = self.at + 1;
        let Some(len) = self.text[begin..].iter().position(|c| *c == quote) else {
            return self.error("unterminated string");
        };
        self.at = begin + len + 1;
        let s = &self.text[begin..begin + len];
        if s.iter().any(|c| !c.is_ascii_graphic() && *c != b' ' || *c == b'\\') {
            return self.error("unexpected character in a string");
        }
        Ok(String::from_utf8_lossy(s).into_owned())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        self.skip_space();
        for (word, value) in [("True", true), ("False", false)] {
            if self.text[self.at..].starts_with(word.as_bytes()) {
                self.at += word.len();
                return Ok(value);
            }
        }
        self.error("expected True or False")
    }

    fn integer(&mut self) -> Result<usize, String> {
        self.skip_space();
        let begin = self.at;
        let mut v: usize = 0;
        while let Some(d) = self.text.get(self.at).filter(|c| c.is_ascii_digit()) {
            v = match v.checked_mul(10).and_then(|v| v.checked_add(usize::from(d - b'0'))) {
                Some(v) => v,
                None => return self.error("an extent too large"),
            };
            self.at += 1;
        }
        if self.at == begin { self.error("expected a non-negative integer") } else { Ok(v) }
    }

    /// `(a, b, ...)`, `(a,)` or `()`.
    fn shape(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(b')') {
                break;
            }
            dims.push(self.integer()?);
            if dims.len() > kiln_ir::types::MAX_RANK {
                return self.error(&format!("more than {} axes", kiln_ir::types::MAX_RANK));
            }
            if !self.eat(b',') {
                self.expect(b')')?;
                if dims.len() == 1 {
                    return self.error("a one-axis shape is written `(n,)`");
                }
                break;
            }
        }
        Ok(dims)
    }

    /// The dict numpy writes: each of the three keys once, in any order.
    fn header(&mut self) -> Result<Header, String> {
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        self.expect(b'{')?;
        loop {
            if self.eat(b'}') {
                break;
            }
            let key = self.string()?;
            self.expect(b':')?;
            let fresh = match key.as_str() {
                "descr" => descr.replace(self.string()?).is_none(),
                "fortran_order" => fortran.replace(self.boolean()?).is_none(),
                "shape" => shape.replace(self.shape()?).is_none(),
                _ => return self.error(&format!("unknown key `{key}`")),
            };
            if !fresh {
                return self.error(&format!("key `{key}` given twice"));
            }
            if !self.eat(b',') {
                self.expect(b'}')?;
                break;
            }
        }
        self.skip_space();
        if self.at != self.text.len() {
            return self.error("unexpected text after the header");
        }
        let (Some(descr), Some(fortran_order), Some(shape)) = (descr, fortran, shape) else {
            return self.error("the header needs `descr`, `fortran_order` and `shape`");
        };
        let (big_endian, stored) = match descr_type(&descr) {
            Some(t) => t,
            None => return Err(format!("unsupported element type `{descr}` (kiln reads f4, f8, i4, i8, b1, u1)")),
        };
        Ok(Header { descr, stored, big_endian, fortran_order, shape })
    }
}

/// Byte order and element type of a numpy type string.
fn descr_type(descr: &str) -> Option<(bool, Stored)> {
    let (order, code) = descr.split_at_checked(1)?;
    let stored = match code {
        "f4" => Stored::Typed(DType::F32),
        "f8" => Stored::Typed(DType::F64),
        "i4" => Stored::Typed(DType::I32),
        "i8" => Stored::Typed(DType::I64),
        "b1" => Stored::Typed(DType::Bool),
        "u1" => Stored::U8,
        _ => return None,
    };
    let big_endian = match order {
        "<" | "=" => false,
        ">" => true,
        "|" if stored.size() == 1 => false,
        _ => return None,
    };
    Some((big_endian, stored))
}

/// The largest element count an array may have.
const ISIZE_MAX: usize = isize::MAX as usize;

/// Reads a whole `.npy` file: its header, and exactly the data bytes the header claims.
fn read_file(path: &Path) -> Result<(Header, Vec<u8>), NpyError> {
    let p = path.display().to_string();
    let io = |source| NpyError::Io { path: p.clone(), source };
    let mut f = File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    read_from(&mut f, file_len, &p)
}

/// Reads `.npy` content of `file_len` bytes from `f` (`p` names it in errors).
fn read_from(f: &mut impl Read, file_len: u64, p: &str) -> Result<(Header, Vec<u8>), NpyError> {
    let format = |message: String| NpyError::Format { path: p.to_string(), message };
    let io = |source| NpyError::Io { path: p.to_string(), source };
    let mut preamble = [0u8; 8];
    f.read_exact(&mut preamble).map_err(|_| format("shorter than the 8-byte preamble".into()))?;
    if &preamble[..6] != b"\x93NUMPY" {
        return Err(format("no `\\x93NUMPY` magic".into()));
    }
    let header_len = match preamble[6] {
        1 => {
            let mut b = [0u8; 2];
            f.read_exact(&mut b).map_err(|_| format("truncated header length".into()))?;
            usize::from(u16::from_le_bytes(b))
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            f.read_exact(&mut b).map_err(|_| format("truncated header length".into()))?;
            u32::from_le_bytes(b) as usize
        }
        v => return Err(format(format!("unknown format version {v}"))),
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(format(format!("a header of {header_len} bytes (at most {MAX_HEADER_BYTES})")));
    }
    let mut text = vec![0u8; header_len];
    f.read_exact(&mut text).map_err(|_| format("truncated header".into()))?;
    let header = HeaderParser { text: &text, at: 0 }.header().map_err(format)?;
    let data_at = (if preamble[6] == 1 { 10 } else { 12 }) + header_len as u64;
    let numel = header.shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
    let bytes = numel.and_then(|n| n.checked_mul(header.stored.size())).filter(|b| *b <= isize::MAX as usize);
    // ndarray also needs the product of the nonzero extents to fit `isize` (an empty array of
    // shape [0, 2^62, 2^62] has no data but no such array either: found by fuzzing).
    let nonzero = header.shape.iter().filter(|d| **d != 0).try_fold(1usize, |n, d| n.checked_mul(*d));
    let (Some(bytes), Some(..=ISIZE_MAX)) = (bytes, nonzero) else {
        return Err(format(format!("shape {:?} is too large to address", header.shape)));
    };
    let available = file_len.saturating_sub(data_at);
    if available != bytes as u64 {
        return Err(format(format!(
            "shape {:?} of `{}` needs {bytes} data bytes, the file has {available}",
            header.shape, header.descr
        )));
    }
    let mut data = vec![0u8; bytes];
    f.read_exact(&mut data).map_err(io)?;
    Ok((header, data))
}

/// Decodes the data bytes of `header` as `T`, `N` bytes an element, into a row-major array.
fn decode<T, const N: usize>(
    header: &Header,
    data: &[u8],
    from: fn([u8; N]) -> T,
    from_be: fn([u8; N]) -> T,
) -> ArrayD<T>
where
    T: Clone,
{
    let read = if header.big_endian { from_be } else { from };
    let elems: Vec<T> = data
        .chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            read(b)
        })
        .collect();
    if header.fortran_order {
        let reversed: Vec<usize> = header.shape.iter().rev().copied().collect();
        // The element count matches the shape, and the shape fits ndarray: read_from checked
        // both.
        let a = ArrayD::from_shape_vec(IxDyn(&reversed), elems).expect("length checked against the shape");
        a.reversed_axes().as_standard_layout().into_owned()
    } else {
        // As above.
        ArrayD::from_shape_vec(IxDyn(&header.shape), elems).expect("length checked against the shape")
    }
}

/// Reads `path`, which must hold elements of `stored`.
fn read_stored(path: &Path, want: Stored, dtype: DType) -> Result<(Header, Vec<u8>), NpyError> {
    let (header, data) = read_file(path)?;
    if header.stored != want {
        return Err(NpyError::Read { path: path.display().to_string(), dtype, found: header.descr });
    }
    Ok((header, data))
}

/// Reads `path` as a value of type `expected` (dtype and shape must match exactly).
pub fn read(path: &Path, expected: &TensorType) -> Result<Value, NpyError> {
    let v = read_dtype(path, expected.dtype)?;
    if v.ty() != *expected {
        return Err(NpyError::Shape { path: path.display().to_string(), expected: expected.clone(), got: v.ty() });
    }
    Ok(v)
}

/// Reads `path` as an array of `dtype`, of any shape.
pub fn read_dtype(path: &Path, dtype: DType) -> Result<Value, NpyError> {
    let (h, data) = read_stored(path, Stored::Typed(dtype), dtype)?;
    typed(path, &h, &data, dtype)
}

/// The array of `dtype` that a file's header `h` and data bytes hold.
fn typed(path: &Path, h: &Header, data: &[u8], dtype: DType) -> Result<Value, NpyError> {
    Ok(match dtype {
        DType::F32 => decode(h, data, f32::from_le_bytes, f32::from_be_bytes).into(),
        DType::F64 => decode(h, data, f64::from_le_bytes, f64::from_be_bytes).into(),
        DType::I32 => decode(h, data, i32::from_le_bytes, i32::from_be_bytes).into(),
        DType::I64 => decode(h, data, i64::from_le_bytes, i64::from_be_bytes).into(),
        DType::Bool => {
            if let Some(i) = data.iter().position(|b| *b > 1) {
                let message = format!("bool element {i} is the byte {}, not 0 or 1", data[i]);
                return Err(NpyError::Format { path: path.display().to_string(), message });
            }
            decode(h, data, |[b]: [u8; 1]| b != 0, |[b]: [u8; 1]| b != 0).into()
        }
    })
}

/// Reads `path` as whatever array it holds, of any shape: kiln's dtypes as themselves, bytes
/// (`u1`) as `i32` values 0 to 255.
pub fn read_any(path: &Path) -> Result<Value, NpyError> {
    let (header, data) = read_file(path)?;
    any_value(path, header, &data)
}

/// [`read_any`] of the bytes of a `.npy` file in memory (`name` stands for the file in
/// errors): the same checks, the same values.
pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Value, NpyError> {
    let (header, data) = read_from(&mut std::io::Cursor::new(bytes), bytes.len() as u64, name)?;
    any_value(Path::new(name), header, &data)
}

/// The value a file's header and data bytes hold, as [`read_any`] gives it.
fn any_value(path: &Path, header: Header, data: &[u8]) -> Result<Value, NpyError> {
    match header.stored {
        Stored::Typed(dtype) => typed(path, &header, data, dtype),
        Stored::U8 => Ok(decode(&header, data, |[b]: [u8; 1]| i32::from(b), |[b]: [u8; 1]| i32::from(b)).into()),
    }
}

/// Reads `path` as an array of bytes (`u8`, any shape) and scales it to `f32` in `[0, 1]`:
/// images as they are usually stored.
pub fn read_pixels(path: &Path) -> Result<Value, NpyError> {
    let (h, data) = read_stored(path, Stored::U8, DType::F32)?;
    let bytes = decode(&h, &data, |[b]: [u8; 1]| b, |[b]: [u8; 1]| b);
    Ok(Value::F32(bytes.mapv(|b| f32::from(b) / 255.0)))
}

/// Writes `value` to `path` as a standard `.npy` file (through a partial file and a rename:
/// never seen half written).
pub fn write(path: &Path, value: &Value) -> Result<(), NpyError> {
    let p = path.display().to_string();
    crate::files::replace(
        path,
        |partial| {
            let f = File::create(partial).map_err(|source| NpyError::Io { path: p.clone(), source })?;
            let w = BufWriter::new(f);
            let r = match value {
                Value::F32(a) => a.write_npy(w),
                Value::F64(a) => a.write_npy(w),
                Value::I32(a) => a.write_npy(w),
                Value::I64(a) => a.write_npy(w),
                Value::Bool(a) => a.write_npy(w),
            };
            r.map_err(|source| NpyError::Write { path: p.clone(), source })
        },
        |source| NpyError::Io { path: p.clone(), source },
    )
}
