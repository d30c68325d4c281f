//! Rows in the sorter's format: each row's sort key encoded once in the Arrow row format
//! (compared as bytes), the other columns encoded alongside as an opaque payload. Batches
//! are encoded when they enter the sorter and decoded back to Arrow only when the sorted
//! output leaves it; in between, sorting, spilling and merging move contiguous row bytes
//! instead of gathering every column from scattered arrays.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BinaryArray, RecordBatch};
use arrow_row::{Row, RowConverter, Rows, SortField};
use arrow_schema::{DataType, Field, Schema, SchemaRef, SortOptions};

use crate::error::Result;

/// Sorted rows: their keys and, when some columns are not keys, those columns.
pub struct RowChunk {
    pub keys: Rows,
    pub payload: Option<Rows>,
}

impl RowChunk {
    pub fn num_rows(&self) -> usize {
        self.keys.num_rows()
    }

    /// Bytes held (row bytes and offsets).
    pub fn size(&self) -> usize {
        self.keys.size() + self.payload.as_ref().map_or(0, Rows::size)
    }
}

/// How internal batches map to rows and back.
pub struct RowLayout {
    pub schema: SchemaRef,
    pub keys: Vec<usize>,
    pub key_conv: RowConverter,
    /// Columns that are not keys, in schema order.
    pub payload: Vec<usize>,
    pub payload_conv: Option<RowConverter>,
    /// Schema of spilled runs: the key rows and the payload rows as binary columns.
    pub spill_schema: SchemaRef,
}

impl RowLayout {
    pub fn new(schema: SchemaRef, keys: &[usize], options: &[SortOptions]) -> Result<Self> {
        let fields = keys
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let dt = schema.field(k).data_type().clone();
                SortField::new_with_options(dt, options.get(i).copied().unwrap_or_default())
            })
            .collect();
        let key_conv = RowConverter::new(fields)?;
        let payload: Vec<usize> = (0..schema.fields().len())
            .filter(|c| !keys.contains(c))
            .collect();
        let payload_conv = if payload.is_empty() {
            None
        } else {
            let fields = payload
                .iter()
                .map(|&c| SortField::new(schema.field(c).data_type().clone()))
                .collect();
            Some(RowConverter::new(fields)?)
        };
        let mut spill_fields = vec![Field::new("k", DataType::Binary, false)];
        if payload_conv.is_some() {
            spill_fields.push(Field::new("p", DataType::Binary, false));
        }
        Ok(RowLayout {
            schema,
            keys: keys.to_vec(),
            key_conv,
            payload,
            payload_conv,
            spill_schema: Arc::new(Schema::new(spill_fields)),
        })
    }

    /// Encodes a batch.
    pub fn encode(&self, batch: &RecordBatch) -> Result<RowChunk> {
        let cols = |idx: &[usize]| -> Vec<ArrayRef> {
            idx.iter().map(|&c| batch.column(c).clone()).collect()
        };
        let keys = self.key_conv.convert_columns(&cols(&self.keys))?;
        let payload = match &self.payload_conv {
            Some(conv) => Some(conv.convert_columns(&cols(&self.payload))?),
            None => None,
        };
        Ok(RowChunk { keys, payload })
    }

    /// Decodes rows (each a key and, if the layout has one, a payload) into a batch.
    pub fn decode<'a>(
        &self,
        keys: Vec<Row<'a>>,
        payload: Option<Vec<Row<'a>>>,
    ) -> Result<RecordBatch> {
        let mut columns: Vec<Option<ArrayRef>> = vec![None; self.schema.fields().len()];
        for (&c, a) in self.keys.iter().zip(self.key_conv.convert_rows(keys)?) {
            columns[c] = Some(a);
        }
        if let (Some(conv), Some(rows)) = (&self.payload_conv, payload) {
            for (&c, a) in self.payload.iter().zip(conv.convert_rows(rows)?) {
                columns[c] = Some(a);
            }
        }
        let columns = columns
            .into_iter()
            .map(|c| c.expect("every column is a key or payload"))
            .collect();
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Decodes a whole chunk.
    pub fn decode_chunk(&self, chunk: &RowChunk) -> Result<RecordBatch> {
        self.decode(
            chunk.keys.iter().collect(),
            chunk.payload.as_ref().map(|p| p.iter().collect()),
        )
    }

    /// The chunk as a batch of the spill schema.
    pub fn to_spill(&self, chunk: RowChunk) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = vec![Arc::new(chunk.keys.try_into_binary()?)];
        if let Some(p) = chunk.payload {
            cols.push(Arc::new(p.try_into_binary()?));
        }
        Ok(RecordBatch::try_new(self.spill_schema.clone(), cols)?)
    }

    /// A spilled batch back as rows.
    pub fn from_spill(&self, batch: RecordBatch) -> Result<RowChunk> {
        let mut binary: Vec<BinaryArray> = batch
            .columns()
            .iter()
            .map(|c| c.as_binary::<i32>().clone())
            .collect();
        // The batch no longer shares the buffers, so the rows can take them without a copy.
        drop(batch);
        let payload = match (&self.payload_conv, binary.len()) {
            (Some(c), 2) => Some(c.from_binary(binary.pop().expect("two columns"))),
            _ => None,
        };
        let keys = self
            .key_conv
            .from_binary(binary.pop().expect("a key column"));
        Ok(RowChunk { keys, payload })
    }

    /// An empty chunk to push rows into.
    pub fn empty_chunk(&self, rows: usize, key_bytes: usize, payload_bytes: usize) -> RowChunk {
        RowChunk {
            keys: self.key_conv.empty_rows(rows, key_bytes),
            payload: self
                .payload_conv
                .as_ref()
                .map(|c| c.empty_rows(rows, payload_bytes)),
        }
    }
}
