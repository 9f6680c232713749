//! Which split and which bucket a row belongs to, from a stable hash of its group key.
//!
//! The hash is XXH3-64 with a fixed seed over the key's canonical bytes: the UTF-8 bytes of a
//! string, the raw bytes of a binary value, or the 8-byte little-endian two's complement of an
//! integer. The hash `h` picks the first split whose cumulative ratio bound exceeds `h / 2^64`, and
//! the bucket `h % buckets`. Both depend on the key alone, so appending rows never moves a row.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{DataError, Result};

/// Seed of the split hash (ASCII "LiVO"); part of the format, never change it.
pub const SPLIT_HASH_SEED: u64 = 0x4C69_564F;

/// One split and the share of groups it receives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitRatio {
    pub name: String,
    pub ratio: f64,
}

/// Maps group-key hashes to (split index, bucket).
#[derive(Clone, Debug)]
pub struct SplitAssigner {
    splits: Vec<SplitRatio>,
    /// Exclusive upper bound of each split in hash space; the last split takes the rest.
    bounds: Vec<u64>,
    buckets: u32,
}

impl SplitAssigner {
    /// Validates the splits (names of letters, digits and `_`, unique; ratios positive, summing
    /// to 1 within 1e-6) and the bucket count (at least 1).
    pub fn new(splits: &[SplitRatio], buckets: u32) -> Result<Self> {
        if splits.is_empty() {
            return Err(DataError::parameter(
                "splits",
                "[]",
                "at least one split is needed",
            ));
        }
        for (i, s) in splits.iter().enumerate() {
            let valid_name = !s.name.is_empty()
                && s.name.len() <= 64
                && s.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(DataError::parameter(
                    "splits",
                    &s.name,
                    "a split name must be 1-64 ASCII letters, digits or '_'",
                ));
            }
            if splits[..i].iter().any(|o| o.name == s.name) {
                return Err(DataError::parameter(
                    "splits",
                    &s.name,
                    "split names must be unique",
                ));
            }
            if !(s.ratio.is_finite() && s.ratio > 0.0) {
                return Err(DataError::parameter(
                    "splits",
                    format!("{}={}", s.name, s.ratio),
                    "a split ratio must be positive",
                ));
            }
        }
        let total: f64 = splits.iter().map(|s| s.ratio).sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(DataError::parameter(
                "splits",
                total,
                "split ratios must sum to 1",
            ));
        }
        if buckets == 0 {
            return Err(DataError::parameter("buckets", 0, "must be at least 1"));
        }
        let mut cumulative = 0.0;
        let mut bounds = Vec::with_capacity(splits.len());
        for (i, s) in splits.iter().enumerate() {
            cumulative += s.ratio / total;
            bounds.push(if i + 1 == splits.len() {
                u64::MAX
            } else {
                // `as` saturates, and 2^64 is exact in f64.
                (cumulative * 18_446_744_073_709_551_616.0) as u64
            });
        }
        Ok(Self {
            splits: splits.to_vec(),
            bounds,
            buckets,
        })
    }

    pub fn splits(&self) -> &[SplitRatio] {
        &self.splits
    }

    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// The (split index, bucket) of a key hash.
    pub fn assign(&self, hash: u64) -> (usize, u32) {
        let split = self
            .bounds
            .iter()
            .position(|&b| hash < b)
            .unwrap_or(self.bounds.len() - 1);
        (split, (hash % u64::from(self.buckets)) as u32)
    }
}

/// The split hash of one key's canonical bytes.
pub fn key_hash(bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, SPLIT_HASH_SEED)
}

/// Whether a column of this type can be a group key.
pub fn is_key_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

/// Hashes every value of a key column; `None` at the first null (keys must be present).
pub fn key_hashes(column: &ArrayRef) -> std::result::Result<Vec<u64>, usize> {
    if let Some(first_null) = (0..column.len()).find(|&i| column.is_null(i)) {
        return Err(first_null);
    }
    macro_rules! ints {
        ($t:ty) => {
            column
                .as_primitive::<$t>()
                .values()
                .iter()
                .map(|&v| key_hash(&(v as i64).to_le_bytes()))
                .collect()
        };
    }
    Ok(match column.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Utf8 => column.as_string::<i32>().iter().map(bytes_hash).collect(),
        DataType::LargeUtf8 => column.as_string::<i64>().iter().map(bytes_hash).collect(),
        DataType::Utf8View => column.as_string_view().iter().map(bytes_hash).collect(),
        DataType::Binary => column.as_binary::<i32>().iter().map(bytes_hash).collect(),
        DataType::LargeBinary => column.as_binary::<i64>().iter().map(bytes_hash).collect(),
        DataType::BinaryView => column.as_binary_view().iter().map(bytes_hash).collect(),
        other => unreachable!("group key type {other} was checked by is_key_type"),
    })
}

fn bytes_hash(value: Option<impl AsRef<[u8]>>) -> u64 {
    key_hash(value.expect("nulls were checked").as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn train_val() -> Vec<SplitRatio> {
        vec![
            SplitRatio {
                name: "train".into(),
                ratio: 0.9,
            },
            SplitRatio {
                name: "val".into(),
                ratio: 0.1,
            },
        ]
    }

    #[test]
    fn ratios_are_respected_over_many_keys() {
        let a = SplitAssigner::new(&train_val(), 1).unwrap();
        let n = 100_000i64;
        let val = (0..n)
            .filter(|k| a.assign(key_hash(&k.to_le_bytes())).0 == 1)
            .count();
        let share = val as f64 / n as f64;
        assert!((share - 0.1).abs() < 0.005, "val share {share}");
    }

    #[test]
    fn integer_keys_hash_the_same_whatever_their_width() {
        let wide: ArrayRef = Arc::new(Int64Array::from(vec![7, 42]));
        let narrow: ArrayRef = Arc::new(arrow_array::Int32Array::from(vec![7, 42]));
        assert_eq!(key_hashes(&wide).unwrap(), key_hashes(&narrow).unwrap());
    }

    #[test]
    fn string_keys_hash_their_utf8_bytes() {
        let keys: ArrayRef = Arc::new(StringArray::from(vec!["a", "é"]));
        assert_eq!(
            key_hashes(&keys).unwrap(),
            vec![key_hash(b"a"), key_hash("é".as_bytes())]
        );
    }

    #[test]
    fn a_null_key_is_reported_by_row() {
        let keys: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        assert_eq!(key_hashes(&keys), Err(1));
    }

    #[test]
    fn ratios_not_summing_to_one_are_rejected() {
        let bad = vec![
            SplitRatio {
                name: "train".into(),
                ratio: 0.9,
            },
            SplitRatio {
                name: "val".into(),
                ratio: 0.2,
            },
        ];
        assert!(SplitAssigner::new(&bad, 1).is_err());
    }

    #[test]
    fn split_names_must_be_safe_file_name_parts() {
        let bad = vec![SplitRatio {
            name: "../x".into(),
            ratio: 1.0,
        }];
        assert!(SplitAssigner::new(&bad, 1).is_err());
    }

    #[test]
    fn extreme_hashes_land_in_the_first_and_last_split() {
        let a = SplitAssigner::new(&train_val(), 4).unwrap();
        assert_eq!(a.assign(0), (0, 0));
        assert_eq!(a.assign(u64::MAX).0, 1);
    }
}
