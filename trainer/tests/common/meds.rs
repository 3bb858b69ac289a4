//! MEDS shards written with the parquet crate's own writer (as a MEDS ETL would write them with pyarrow).

use parquet::data_type::{ByteArray, ByteArrayType, DataType, FloatType, Int64Type};
use parquet::file::writer::SerializedFileWriter;
use std::path::Path;
use std::sync::Arc;

pub type RowGroup<'a> = parquet::file::writer::SerializedRowGroupWriter<'a, std::fs::File>;

/// Writes the next column of a row group (definition and repetition levels where the column has them).
pub fn col<T: DataType>(rg: &mut RowGroup, values: &[T::T], def: Option<&[i16]>, rep: Option<&[i16]>) {
    let mut c = rg.next_column().unwrap().unwrap();
    c.typed::<T>().write_batch(values, def, rep).unwrap();
    c.close().unwrap();
}

/// A parquet writer of `schema` (a message type) at `path`, its parent directories made.
pub fn writer(path: &Path, schema: &str) -> SerializedFileWriter<std::fs::File> {
    writer_compressed(path, schema, parquet::basic::Compression::UNCOMPRESSED)
}

/// [`writer`], its pages compressed by `compression`.
pub fn writer_compressed(
    path: &Path,
    schema: &str,
    compression: parquet::basic::Compression,
) -> SerializedFileWriter<std::fs::File> {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let props = Arc::new(parquet::file::properties::WriterProperties::builder().set_compression(compression).build());
    SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap()
}

/// (subject_id, time in the shard's unit, code, numeric_value, text_value)
pub type Row<'a> = (i64, Option<i64>, &'a str, Option<f32>, Option<&'a str>);

/// One MEDS data shard at `path`, its time column a timestamp in `unit` (`MICROS`, `NANOS`, `MILLIS`).
pub fn shard(path: &Path, unit: &str, rows: &[Row]) {
    shard_compressed(path, unit, rows, parquet::basic::Compression::UNCOMPRESSED)
}

/// [`shard`], its pages compressed by `compression` (pyarrow's snappy by default; LZ4, Brotli, zstd and
/// gzip where an ETL asks).
pub fn shard_compressed(path: &Path, unit: &str, rows: &[Row], compression: parquet::basic::Compression) {
    let mut w = writer_compressed(
        path,
        &format!(
            "message meds {{ required int64 subject_id; optional int64 time (TIMESTAMP({unit},false)); required \
             binary code (STRING); optional float numeric_value; optional binary text_value (STRING); }}"
        ),
        compression,
    );
    let mut rg = w.next_row_group().unwrap();
    let def = |present: Vec<bool>| present.iter().map(|&p| p as i16).collect::<Vec<i16>>();
    col::<Int64Type>(&mut rg, &rows.iter().map(|r| r.0).collect::<Vec<_>>(), None, None);
    let times: Vec<i64> = rows.iter().filter_map(|r| r.1).collect();
    col::<Int64Type>(&mut rg, &times, Some(&def(rows.iter().map(|r| r.1.is_some()).collect())), None);
    col::<ByteArrayType>(&mut rg, &rows.iter().map(|r| ByteArray::from(r.2)).collect::<Vec<_>>(), None, None);
    let vals: Vec<f32> = rows.iter().filter_map(|r| r.3).collect();
    col::<FloatType>(&mut rg, &vals, Some(&def(rows.iter().map(|r| r.3.is_some()).collect())), None);
    let texts: Vec<ByteArray> = rows.iter().filter_map(|r| r.4).map(ByteArray::from).collect();
    col::<ByteArrayType>(&mut rg, &texts, Some(&def(rows.iter().map(|r| r.4.is_some()).collect())), None);
    rg.close().unwrap();
    w.close().unwrap();
}

/// splitmix64: the same dataset for the same seed (the MEDS tests' generated shards).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// `metadata/codes.parquet` giving `code` the parent `parent`.
pub fn code_parent(root: &Path, code: &str, parent: &str) {
    let mut w = writer(
        &root.join("metadata/codes.parquet"),
        "message c { required binary code (STRING); optional group parent_codes (LIST) { repeated group list { optional binary element (STRING); } } }",
    );
    let mut rg = w.next_row_group().unwrap();
    col::<ByteArrayType>(&mut rg, &[ByteArray::from(code)], None, None);
    col::<ByteArrayType>(&mut rg, &[ByteArray::from(parent)], Some(&[3]), Some(&[0]));
    rg.close().unwrap();
    w.close().unwrap();
}
