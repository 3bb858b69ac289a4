//! Readers that hold an input file to the `[read]` bounds while it streams ([`super::ReadLimits`]):
//! a `.gz` file may inflate only so far and only so fast, and a CSV record only so long. A file that
//! passes a bound fails with an I/O error that names the config key; the caller adds the file's path.

use super::ReadLimits;
use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

/// Counts the bytes read through it into a shared cell.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// The inflated stream of a `.gz` file, refused once it passes `max_decompressed_bytes` or inflates
/// more than `max_gz_ratio` times the compressed bytes read so far.
struct GzBound<R> {
    inner: R,
    compressed: Rc<Cell<u64>>,
    inflated: u64,
    limits: ReadLimits,
}

impl<R: Read> Read for GzBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inflated += n as u64;
        if self.inflated > self.limits.max_decompressed_bytes {
            return Err(std::io::Error::other(format!(
                "inflates to more than read.max_decompressed_bytes ({} bytes); raise the key if this file is genuine",
                self.limits.max_decompressed_bytes
            )));
        }
        // the compressed count runs ahead of what the decoder consumed (read-ahead buffer), so the
        // ratio seen here is never above the true one
        let ratio = self.inflated as f64 / self.compressed.get().max(1) as f64;
        if self.inflated > ReadLimits::GZ_RATIO_GRACE_BYTES && ratio > self.limits.max_gz_ratio {
            return Err(std::io::Error::other(format!(
                "inflates more than read.max_gz_ratio ({}) times its compressed size (a decompression bomb?); raise the key if this file is genuine",
                self.limits.max_gz_ratio
            )));
        }
        Ok(n)
    }
}

/// An input file for reading: inflated and bounded when its name ends in `.gz` (in any case) and it
/// holds any byte (an empty `.ndjson.gz`, as an export writes for a type it has none of, is an empty
/// file, not a gzip stream cut short).
pub fn open(path: &Path, file: std::fs::File, limits: ReadLimits) -> Box<dyn Read> {
    if !super::has_ext(path, &[".gz"]) || file.metadata().is_ok_and(|m| m.len() == 0) {
        return Box::new(file);
    }
    let compressed = Rc::new(Cell::new(0));
    let counted = Counting { inner: file, count: compressed.clone() };
    let members =
        Members { cur: Some(flate2::bufread::GzDecoder::new(std::io::BufReader::with_capacity(1 << 20, counted))) };
    Box::new(GzBound { inner: members, compressed, inflated: 0, limits })
}

/// The members of a gzip file one after the other (as `gzip -d` and flate2's `MultiGzDecoder` read
/// them), and zero bytes after the last ignored, as `gzip -d` ignores them: a file padded to a block
/// size by a tape or a copy tool was an error, `invalid gzip header`, after its last line.
struct Members<R: std::io::BufRead> {
    /// the member being read (`None` once the input has ended)
    cur: Option<flate2::bufread::GzDecoder<R>>,
}

impl<R: std::io::BufRead> Read for Members<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(dec) = self.cur.as_mut() else { return Ok(0) };
            let n = dec.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // a member ended: another follows, or the end (zeros only, or nothing)
            let Some(dec) = self.cur.take() else { return Ok(0) };
            let mut rest = dec.into_inner();
            loop {
                let bytes = rest.fill_buf()?;
                if bytes.is_empty() {
                    return Ok(0);
                }
                if bytes[0] != 0 {
                    break;
                }
                let zeros = bytes.iter().take_while(|b| **b == 0).count();
                if zeros < bytes.len() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "bytes that are no gzip member after zero bytes past the end of the gzip stream",
                    ));
                }
                rest.consume(zeros);
            }
            // another member starts with gzip's magic bytes; anything else is no gzip data (said as such,
            // not as the stream cut short that a decoder reading it as a header would say)
            let head = rest.fill_buf()?;
            if !(head.starts_with(&[0x1f, 0x8b]) || head == [0x1f]) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "bytes that are no gzip member after the end of the gzip stream",
                ));
            }
            self.cur = Some(flate2::bufread::GzDecoder::new(rest));
        }
    }
}

/// The bytes a CSV reader has pulled since the last record boundary, bounded: a record (a quoted note
/// may span lines) that passes `max_line_bytes` plus the parser's buffer fails the read. Call
/// [`CsvBudget::record_done`] after each record.
#[derive(Clone)]
pub struct CsvBudget {
    pulled: Rc<Cell<u64>>,
    limit: u64,
}

/// The buffer the CSV parser reads through: the budget allows for it, since the parser may have read
/// this far past the end of a record.
pub const CSV_BUFFER: usize = 1 << 20;

impl CsvBudget {
    pub fn new(max_line_bytes: u64) -> Self {
        CsvBudget { pulled: Rc::new(Cell::new(0)), limit: max_line_bytes.saturating_add(CSV_BUFFER as u64) }
    }

    /// A reader over `inner` charged to this budget.
    pub fn reader<R: Read>(&self, inner: R) -> impl Read {
        CsvBounded { inner, budget: self.clone() }
    }

    pub fn record_done(&self) {
        self.pulled.set(0);
    }
}

struct CsvBounded<R> {
    inner: R,
    budget: CsvBudget,
}

/// The message of the error a record over the bound raises (readers match on it).
pub const CSV_RECORD_TOO_LONG: &str = "a CSV record longer than read.max_line_bytes";

impl<R: Read> Read for CsvBounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.budget.pulled.get() > self.budget.limit {
            return Err(std::io::Error::other(CSV_RECORD_TOO_LONG));
        }
        let n = self.inner.read(buf)?;
        self.budget.pulled.set(self.budget.pulled.get() + n as u64);
        Ok(n)
    }
}
