//! One shard file being written, with the columns of each row group encoded in parallel.
//!
//! `ArrowWriter` encodes the columns of a row group one after another. A pair record is dominated
//! by two image columns, so encoding and compressing the columns of a row group on rayon's pool
//! roughly halves the time of the expensive part. Rows are buffered (as Arrow slices) until the row
//! group reaches its target size, then encoded. An encoded row group is appended to the file (the
//! write system calls and the BLAKE3 hashing, serial work) while the next row group is encoded, so
//! the two overlap; at most one encoded row group waits in memory. A full shard is sealed: its last
//! row group and footer are written later, on the committer's thread.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowLeafColumn, ArrowRowGroupWriterFactory,
};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::errors::Result as ParquetResult;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

use super::files::HashingFile;

pub struct ShardFile {
    writer: SerializedFileWriter<HashingFile>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    row_group_bytes: u64,
    pending: Vec<RecordBatch>,
    pending_rows: u64,
    pending_bytes: u64,
    /// The last encoded row group, appended to the file once the next one is encoded (or at finish).
    encoded: Vec<ArrowColumnChunk>,
    encoded_bytes: u64,
    row_groups: Vec<u64>,
}

impl ShardFile {
    /// Starts a Parquet file on `file` with the Arrow schema embedded (as `ArrowWriter` does).
    pub fn new(
        file: HashingFile,
        schema: SchemaRef,
        props: &WriterProperties,
        row_group_bytes: u64,
    ) -> ParquetResult<Self> {
        let mut props = props.clone();
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let parquet_schema = ArrowSchemaConverter::new()
            .with_coerce_types(props.coerce_types())
            .convert(&schema)?;
        let writer =
            SerializedFileWriter::new(file, parquet_schema.root_schema_ptr(), Arc::new(props))?;
        let factory = ArrowRowGroupWriterFactory::new(&writer, schema.clone());
        Ok(Self {
            writer,
            factory,
            schema,
            row_group_bytes,
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            encoded: Vec::new(),
            encoded_bytes: 0,
            row_groups: Vec::new(),
        })
    }

    /// Buffers rows (`bytes` is their estimated size); encodes a row group once enough are buffered.
    pub fn push(&mut self, rows: RecordBatch, bytes: u64) -> ParquetResult<()> {
        self.pending_rows += rows.num_rows() as u64;
        self.pending_bytes += bytes;
        self.pending.push(rows);
        if self.pending_bytes >= self.row_group_bytes {
            self.flush_row_group()?;
        }
        Ok(())
    }

    /// Bytes written plus bytes encoded or buffered: what the file will roughly weigh if closed now.
    pub fn size(&self) -> u64 {
        self.writer.bytes_written() as u64 + self.encoded_bytes + self.pending_bytes
    }

    fn flush_row_group(&mut self) -> ParquetResult<()> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        let writers = self.factory.create_column_writers(self.row_groups.len())?;
        let mut leaves: Vec<Vec<ArrowLeafColumn>> = writers.iter().map(|_| Vec::new()).collect();
        for batch in std::mem::take(&mut self.pending) {
            let mut leaf = 0;
            for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
                for encoded in compute_leaves(field, column)? {
                    leaves[leaf].push(encoded);
                    leaf += 1;
                }
            }
        }
        // Append the previous row group (serial: write calls, hashing) while this one is encoded.
        let previous = std::mem::take(&mut self.encoded);
        let writer = &mut self.writer;
        let (appended, chunks) = rayon::join(
            || append_row_group(writer, previous),
            || {
                writers
                    .into_par_iter()
                    .zip(leaves)
                    .map(|(mut writer, leaves)| {
                        for leaf in &leaves {
                            writer.write(leaf)?;
                        }
                        writer.close()
                    })
                    .collect::<ParquetResult<Vec<_>>>()
            },
        );
        appended?;
        self.encoded = chunks?;
        self.encoded_bytes = self.encoded.iter().map(|c| c.close().bytes_written).sum();
        self.row_groups.push(self.pending_rows);
        self.pending_rows = 0;
        self.pending_bytes = 0;
        Ok(())
    }

    /// Encodes what is still buffered. The last row group's bytes and the footer are written by
    /// [`SealedShard::complete`], which the committer thread runs while the next shard encodes.
    pub fn seal(mut self) -> ParquetResult<SealedShard> {
        self.flush_row_group()?;
        Ok(SealedShard {
            writer: self.writer,
            last: self.encoded,
            row_groups: self.row_groups,
        })
    }
}

/// A shard whose rows are all encoded; its last row group waits in memory.
pub struct SealedShard {
    writer: SerializedFileWriter<HashingFile>,
    last: Vec<ArrowColumnChunk>,
    row_groups: Vec<u64>,
}

impl SealedShard {
    /// Rows of each row group, in file order.
    pub fn row_groups(&self) -> &[u64] {
        &self.row_groups
    }

    /// Appends the last row group and the footer; returns the file, not yet synced.
    pub fn complete(mut self) -> ParquetResult<HashingFile> {
        append_row_group(&mut self.writer, self.last)?;
        self.writer.into_inner()
    }
}

/// Appends an encoded row group (nothing if `chunks` is empty) to the file.
fn append_row_group(
    writer: &mut SerializedFileWriter<HashingFile>,
    chunks: Vec<ArrowColumnChunk>,
) -> ParquetResult<()> {
    if chunks.is_empty() {
        return Ok(());
    }
    let mut row_group = writer.next_row_group()?;
    for chunk in chunks {
        chunk.append_to_row_group(&mut row_group)?;
    }
    row_group.close()?;
    Ok(())
}
