//! Row hashes: one 64-bit hash per row over its column values (nulls distinct from every
//! value), summed into an order-independent multiset hash by the digests.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_row::{RowConverter, SortField};

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const NULL: u64 = 0x1319_8a2e_0370_7344;

/// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
#[inline]
pub(super) fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// Folds one value (or its hash) into a row's hash: a bijection of the value for a given row
/// state, and order-dependent across columns; the row's hash is finished with [`fmix64`].
#[inline]
fn combine(row: u64, value: u64) -> u64 {
    (row ^ value)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
}

/// A hash of a byte string: short ones (most dimension values) mixed from their words and
/// length, longer ones by XXH3.
#[inline]
pub(super) fn hash_bytes(b: &[u8]) -> u64 {
    let n = b.len();
    if n > 16 {
        return twox_hash::XxHash3_64::oneshot(b);
    }
    let mut buf = [0u8; 16];
    buf[..n].copy_from_slice(b);
    let lo = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    let hi = u64::from_le_bytes(buf[8..].try_into().expect("8 bytes"));
    combine(combine(n as u64 ^ 0x5bd1_e995, lo), hi)
}

fn fold_values(hashes: &mut [u64], array: &dyn Array, value: impl Fn(usize) -> u64) {
    if array.null_count() == 0 {
        for (i, h) in hashes.iter_mut().enumerate() {
            *h = combine(*h, value(i));
        }
    } else {
        for (i, h) in hashes.iter_mut().enumerate() {
            let v = if array.is_valid(i) { value(i) } else { NULL };
            *h = combine(*h, v);
        }
    }
}

/// Folds a primitive column: without nulls, one pass over the values slice (vectorizes).
fn fold_primitive<T: Copy>(
    hashes: &mut [u64],
    array: &dyn Array,
    values: &[T],
    bits: impl Fn(T) -> u64,
) {
    if array.null_count() == 0 {
        for (h, &v) in hashes.iter_mut().zip(values) {
            *h = combine(*h, bits(v));
        }
    } else {
        fold_values(hashes, array, |i| bits(values[i]));
    }
}

/// The low `n` bytes of a little-endian word (`n` ≤ 8).
#[inline]
fn low_bytes(word: u64, n: usize) -> u64 {
    if n >= 8 {
        word
    } else {
        word & ((1u64 << (8 * n)) - 1)
    }
}

/// [`hash_bytes`] of `data[start..end]`, reading short values as two unaligned words where the
/// buffer allows (no copy): the same value as `hash_bytes` of the slice.
#[inline]
pub(super) fn hash_in(data: &[u8], start: usize, end: usize) -> u64 {
    let n = end - start;
    if n <= 16 && start + 16 <= data.len() {
        let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let (lo, hi) = if n > 8 {
            (word(start), low_bytes(word(start + 8), n - 8))
        } else {
            (low_bytes(word(start), n), 0)
        };
        return combine(combine(n as u64 ^ 0x5bd1_e995, lo), hi);
    }
    hash_bytes(&data[start..end])
}

/// Folds a column of byte strings, reading its offsets and bytes directly.
fn fold_bytes(hashes: &mut [u64], array: &dyn Array, offsets: &[i32], data: &[u8], salt: u64) {
    let value = |i: usize| hash_in(data, offsets[i] as usize, offsets[i + 1] as usize) ^ salt;
    fold_values(hashes, array, value);
}

fn fold_column(hashes: &mut [u64], column: &ArrayRef) {
    let a = column.as_ref();
    match column.data_type() {
        DataType::Int32 => {
            let v = column.as_primitive::<Int32Type>().values();
            fold_primitive(hashes, a, v, |x| x as i64 as u64);
        }
        DataType::Int64 => {
            let v = column.as_primitive::<Int64Type>().values();
            fold_primitive(hashes, a, v, |x| x as u64);
        }
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => {
            let v = column.as_primitive::<TimestampMicrosecondType>().values();
            fold_primitive(hashes, a, v, |x| x as u64);
        }
        DataType::Float32 => {
            let v = column.as_primitive::<Float32Type>().values();
            fold_primitive(hashes, a, v, |x| u64::from(x.to_bits()) ^ 0xf32);
        }
        DataType::Float64 => {
            let v = column.as_primitive::<Float64Type>().values();
            fold_primitive(hashes, a, v, |x| x.to_bits() ^ 0xf64);
        }
        DataType::Boolean => {
            let v = column.as_boolean();
            fold_values(hashes, a, |i| 2 + u64::from(v.value(i)));
        }
        DataType::Utf8 => {
            let v = column.as_string::<i32>();
            fold_bytes(hashes, a, v.value_offsets(), v.value_data(), 0);
        }
        DataType::Binary => {
            let v = column.as_binary::<i32>();
            fold_bytes(hashes, a, v.value_offsets(), v.value_data(), 0xb1);
        }
        // Tables have no other types; anything else is hashed through its row encoding.
        other => match RowConverter::new(vec![SortField::new(other.clone())])
            .and_then(|c| c.convert_columns(std::slice::from_ref(column)))
        {
            Ok(rows) => fold_values(hashes, a, |i| {
                twox_hash::XxHash3_64::oneshot(rows.row(i).as_ref())
            }),
            Err(_) => fold_values(hashes, a, |_| 0),
        },
    }
}

/// The 64-bit hash of each row of the first `columns` columns of `batch`.
pub fn row_hashes(batch: &RecordBatch, columns: usize) -> Vec<u64> {
    let mut hashes = vec![SEED; batch.num_rows()];
    for column in &batch.columns()[..columns] {
        fold_column(&mut hashes, column);
    }
    for h in &mut hashes {
        *h = fmix64(*h);
    }
    hashes
}
