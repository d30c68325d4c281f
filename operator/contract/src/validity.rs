//! The upsert validity file (`<segment path>.validity`): a worker of kind validity writes it,
//! the operator's refresh planner reads its counts and clean-up keeps it while its segment
//! is live. Little endian:
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `MNVALID1` |
//! | 8..16 | row count (u64) |
//! | 16..24 | invalid row count (u64) |
//! | 24.. | bitmap, `ceil(rows / 8)` bytes, bit `i % 8` of byte `i / 8` set when row `i` is valid |

/// Suffix of validity files, appended to the segment path.
pub const VALIDITY_SUFFIX: &str = ".validity";
/// The first eight bytes of every validity file.
pub const VALIDITY_MAGIC: &[u8; 8] = b"MNVALID1";
/// Bytes before the bitmap.
pub const VALIDITY_HEADER_BYTES: usize = 24;

/// Rows and invalid rows a validity file states, checked against its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidityCounts {
    pub rows: u64,
    pub invalid: u64,
}

impl ValidityCounts {
    /// The counts of a whole validity file.
    ///
    /// # Errors
    /// Not a validity file, a bitmap of the wrong length, or more invalid rows than rows.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < VALIDITY_HEADER_BYTES || &bytes[..8] != VALIDITY_MAGIC {
            return Err("not a validity file".into());
        }
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let (rows, invalid) = (word(8), word(16));
        let bits = bytes.len() - VALIDITY_HEADER_BYTES;
        if bits as u64 != rows.div_ceil(8) {
            return Err(format!("bitmap of {bits} bytes for {rows} rows"));
        }
        if invalid > rows {
            return Err(format!("{invalid} invalid rows of {rows}"));
        }
        Ok(ValidityCounts { rows, invalid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_from_the_header_and_checked_against_the_length() {
        let mut file = VALIDITY_MAGIC.to_vec();
        file.extend_from_slice(&10u64.to_le_bytes());
        file.extend_from_slice(&3u64.to_le_bytes());
        file.extend_from_slice(&[0b1110_1101, 0b10]);
        assert_eq!(
            ValidityCounts::decode(&file),
            Ok(ValidityCounts {
                rows: 10,
                invalid: 3
            })
        );
        assert!(ValidityCounts::decode(&file[..25]).is_err());
        assert!(ValidityCounts::decode(b"nonsense").is_err());
    }
}
