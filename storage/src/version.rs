//! The `version` column of `positions` and `geofence_events`: which stored copy of a row wins.
//!
//! Both tables are `ReplacingMergeTree(version)`: of the copies of one row (same sorting key:
//! `device_id, fix_time_ms` for positions), readers with `FINAL` see the one with the highest
//! version. Copies arise from retransmitting devices, redelivered Kafka messages and
//! corrections, and the rule that must hold is: **a copy computed with the device's history
//! beats one computed without it, and among equals the most recent computation wins**. So the
//! version is a tier in the top byte and a sequence below it:
//!
//! | tier | what | sequence |
//! |---|---|---|
//! | [`LATE`] | a fix that arrived too late to be placed in its device's history (no deltas) | `2^56 - 1 - offset`: the *first* copy wins, so a retransmission never replaces what was stored |
//! | [`MIGRATED`] | rows stored before versions existed (migration 0006) | 0 |
//! | [`CURRENT`] | a fix placed in its device's history, or an event | the Kafka offset of the message being processed when the copy was written: a redelivery writes the same version (identical copy), a correction written later a higher one |
//!
//! Offsets are per partition, and every message of one device is in one partition (keyed by
//! device id), so sequences of one device's copies are comparable.

const TIER_SHIFT: u32 = 56;
const MAX_SEQUENCE: i64 = (1 << TIER_SHIFT) - 1;

/// Tier of copies computed without the device's history.
pub const LATE: u64 = 1;
/// Tier of rows from before versions existed.
pub const MIGRATED: u64 = 2;
/// Tier of copies computed in the device's history.
pub const CURRENT: u64 = 3;

/// The version of rows that migration 0006 copied (`2 << 56`; the migration spells it out).
pub const MIGRATED_VERSION: u64 = MIGRATED << TIER_SHIFT;

/// A copy placed in its device's history, written while processing the message at `offset`.
pub fn current(offset: i64) -> u64 {
    (CURRENT << TIER_SHIFT) | offset.clamp(0, MAX_SEQUENCE) as u64
}

/// A late copy from the message at `offset`: earlier offsets win.
pub fn late(offset: i64) -> u64 {
    (LATE << TIER_SHIFT) | (MAX_SEQUENCE - offset.clamp(0, MAX_SEQUENCE)) as u64
}

/// The tier of a version.
pub fn tier(version: u64) -> u64 {
    version >> TIER_SHIFT
}

/// The offset a [`CURRENT`] version was written at.
pub fn sequence(version: u64) -> i64 {
    (version & MAX_SEQUENCE as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_migration_spells_the_migrated_version() {
        let sql = fleetstream_schemas::migrations::MIGRATIONS.iter().find(|m| m.version == 6).unwrap().sql;
        assert!(sql.contains(&MIGRATED_VERSION.to_string()), "0006 must write {MIGRATED_VERSION}");
        assert_eq!(tier(MIGRATED_VERSION), MIGRATED);
    }

    proptest! {
        #[test]
        fn history_beats_late_and_migrated_whatever_the_offsets(a in any::<i64>(), b in any::<i64>()) {
            prop_assert!(current(a) > late(b));
            prop_assert!(current(a) > MIGRATED_VERSION);
            prop_assert!(MIGRATED_VERSION > late(b));
            prop_assert_eq!(tier(current(a)), CURRENT);
            prop_assert_eq!(sequence(current(a)), a.clamp(0, MAX_SEQUENCE));
            prop_assert_eq!(tier(late(a)), LATE);
        }

        #[test]
        fn later_computations_win_and_first_late_copies_win(a in 0i64..MAX_SEQUENCE, b in 0i64..MAX_SEQUENCE) {
            prop_assume!(a < b);
            prop_assert!(current(b) > current(a));
            prop_assert!(late(a) > late(b));
        }
    }
}
