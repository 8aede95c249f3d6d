//! Integer columns: both backends store counts, versions, blocks and sequence numbers as
//! signed BIGINT, while the domain keeps them as `u64`. These two functions are the one
//! conversion between the two, so every layer reads and writes them alike.

/// A column's value as the domain's count. merit never stores a negative one; a row
/// that holds one (written by hand) reads as 0 rather than wrapping to a huge count.
pub fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A domain count as a column's value, saturating at `i64::MAX` (beyond any count merit
/// reaches) rather than wrapping negative.
pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip_and_out_of_range_values_saturate() {
        for v in [0, 1, 42, i64::MAX as u64] {
            assert_eq!(to_u64(to_i64(v)), v);
        }
        assert_eq!(to_u64(-1), 0);
        assert_eq!(to_u64(i64::MIN), 0);
        assert_eq!(to_i64(u64::MAX), i64::MAX);
        assert_eq!(to_i64(i64::MAX as u64 + 1), i64::MAX);
    }
}
