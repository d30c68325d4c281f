//! Value partitioners compatible with Pinot's `segmentPartitionConfig`: `Modulo` of an
//! integer column and `Murmur` (Kafka's murmur2 of the value's string form, masked positive).
//!
//! Pure functions over arrays; nulls go to partition 0.

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use minion_contract::PartitionFunction;

use crate::error::{Result, WorkerError};

/// Kafka's murmur2 (seed `0x9747b28c`), as Pinot's `MurmurPartitionFunction` uses it.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

fn murmur_partition(bytes: &[u8], n: u32) -> u32 {
    ((murmur2(bytes) & 0x7fff_ffff) as u32) % n
}

/// Java's `Double.toString` for the common cases (integral values keep a `.0`).
fn java_float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e7 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// The partition of every row of `array`.
///
/// # Errors
/// [`WorkerError::BadSpec`] when `Modulo` is used on a non-integer column or the type is not
/// supported.
pub fn partitions(array: &ArrayRef, function: PartitionFunction, n: u32) -> Result<UInt32Array> {
    let n = n.max(1);
    let len = array.len();
    let mut out = Vec::with_capacity(len);
    let unsupported = || {
        WorkerError::BadSpec(format!(
            "partition function {function:?} does not support column type {}",
            array.data_type()
        ))
    };
    macro_rules! each {
        ($arr:expr, $f:expr) => {{
            let a = $arr;
            for i in 0..len {
                out.push(if a.is_null(i) { 0 } else { $f(a.value(i)) });
            }
        }};
    }
    match (function, array.data_type()) {
        (PartitionFunction::Modulo, DataType::Int32) => {
            each!(array.as_primitive::<Int32Type>(), |v: i32| {
                i64::from(v).rem_euclid(i64::from(n)) as u32
            })
        }
        (PartitionFunction::Modulo, DataType::Int64) => {
            each!(array.as_primitive::<Int64Type>(), |v: i64| {
                v.rem_euclid(i64::from(n)) as u32
            })
        }
        (PartitionFunction::Modulo, _) => return Err(unsupported()),
        (PartitionFunction::Murmur, DataType::Utf8) => {
            each!(array.as_string::<i32>(), |v: &str| murmur_partition(
                v.as_bytes(),
                n
            ))
        }
        (PartitionFunction::Murmur, DataType::Binary) => {
            each!(array.as_binary::<i32>(), |v: &[u8]| murmur_partition(v, n))
        }
        (PartitionFunction::Murmur, DataType::Int32) => {
            each!(
                array.as_primitive::<Int32Type>(),
                |v: i32| murmur_partition(v.to_string().as_bytes(), n)
            )
        }
        (PartitionFunction::Murmur, DataType::Int64) => {
            each!(
                array.as_primitive::<Int64Type>(),
                |v: i64| murmur_partition(v.to_string().as_bytes(), n)
            )
        }
        (PartitionFunction::Murmur, DataType::Timestamp(_, _)) => {
            each!(
                array.as_primitive::<TimestampMicrosecondType>(),
                |v: i64| murmur_partition(v.to_string().as_bytes(), n)
            )
        }
        (PartitionFunction::Murmur, DataType::Float32) => {
            each!(array.as_primitive::<Float32Type>(), |v: f32| {
                murmur_partition(java_float(f64::from(v)).as_bytes(), n)
            })
        }
        (PartitionFunction::Murmur, DataType::Float64) => {
            each!(array.as_primitive::<Float64Type>(), |v: f64| {
                murmur_partition(java_float(v).as_bytes(), n)
            })
        }
        (PartitionFunction::Murmur, DataType::Boolean) => {
            each!(array.as_boolean(), |v: bool| murmur_partition(
                v.to_string().as_bytes(),
                n
            ))
        }
        (PartitionFunction::Murmur, _) => return Err(unsupported()),
    }
    Ok(UInt32Array::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn murmur2_matches_kafka_reference_values() {
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn modulo_is_non_negative_and_nulls_go_to_partition_zero() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(7), Some(-1), None]));
        let p = partitions(&a, PartitionFunction::Modulo, 4).unwrap();
        assert_eq!(p.values().to_vec(), vec![3, 3, 0]);
    }

    #[test]
    fn murmur_of_a_string_and_of_its_integer_form_agree() {
        let s: ArrayRef = Arc::new(StringArray::from(vec!["21"]));
        let i: ArrayRef = Arc::new(Int64Array::from(vec![21]));
        let ps = partitions(&s, PartitionFunction::Murmur, 8).unwrap();
        let pi = partitions(&i, PartitionFunction::Murmur, 8).unwrap();
        assert_eq!(ps.value(0), pi.value(0));
        assert_eq!(ps.value(0), ((-973932308i32 & 0x7fff_ffff) as u32) % 8);
    }

    #[test]
    fn modulo_of_a_string_column_is_rejected() {
        let s: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        assert!(partitions(&s, PartitionFunction::Modulo, 2).is_err());
    }
}
