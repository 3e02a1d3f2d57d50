//! Telling a device state that belongs to another incarnation of its partition.
//!
//! A device's state says "every message up to offset N of partition P is applied", and a message
//! at or before N is skipped as a redelivery. When `positions.raw` is deleted and recreated, or
//! the broker loses its data, offsets start again from 0: every new message of the device up to N
//! would be skipped, and its positions silently dropped.
//!
//! A message is a redelivery *candidate* when it is on the state's partition at or before its
//! applied offset. A candidate is proved to come from another incarnation when:
//! - the applied offset is at or beyond the partition's high watermark, asked of the broker after
//!   the message was consumed: within one incarnation the log's end only moves past every offset
//!   ever delivered (a log truncated below it lost those messages, and will reuse their offsets:
//!   the same answer is right);
//! - or the message's fix is newer than every fix the state has applied: applying a message moves
//!   the device's newest fix to at least its fix time, so a message already applied cannot be
//!   newer than the newest.
//!
//! Neither can hold for a real redelivery, so restarts and rebalances still skip those (which is
//! what keeps the output of a crash equal to an uninterrupted run). Not used as evidence: the low
//! watermark (above the applied offset it means retention removed old messages, in this
//! incarnation as well as another; and then nothing at or before the offset can be delivered, so
//! nothing is skipped anyway), and the topic id (rdkafka 0.39 exposes it only through the raw
//! `DescribeTopics` bindings, not its safe API). What still escapes: a new incarnation already
//! longer than the applied offset, whose message carries a fix no newer than the device's newest
//! (a device resending old fixes): skipped as before.

use crate::enrich::{DeviceState, Source};

/// Why a stored state cannot have applied a message it would skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The state's applied offset is at or beyond the partition's end.
    BeyondEnd { applied_offset: i64, high_watermark: i64 },
    /// The message's fix is newer than every fix the state has applied.
    NewerFix { applied_offset: i64 },
}

impl Evidence {
    /// Every label [`Evidence::as_str`] gives.
    pub const LABELS: [&'static str; 2] = ["beyond_end", "newer_fix"];

    /// A label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Evidence::BeyondEnd { .. } => "beyond_end",
            Evidence::NewerFix { .. } => "newer_fix",
        }
    }
}

/// True when `state` would skip the message at `source` as already applied.
pub fn would_skip(state: &DeviceState, source: Source) -> bool {
    state.applied.is_some_and(|done| done.partition == source.partition && source.offset <= done.offset)
}

/// Why the message at `source` with a fix at `fix_time_ms`, which `state` would skip, was not
/// applied by it; `None` when it may be a real redelivery (or would not be skipped at all).
/// `high_watermark` is the partition's end, asked after the message was consumed, when known.
pub fn other_incarnation(
    state: &DeviceState,
    fix_time_ms: i64,
    source: Source,
    high_watermark: Option<i64>,
) -> Option<Evidence> {
    let applied = state.applied.filter(|_| would_skip(state, source))?;
    if let Some(high_watermark) = high_watermark
        && applied.offset >= high_watermark
    {
        return Some(Evidence::BeyondEnd { applied_offset: applied.offset, high_watermark });
    }
    if state.history.head.last.is_none_or(|newest| fix_time_ms > newest.fix_time_ms) {
        return Some(Evidence::NewerFix { applied_offset: applied.offset });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::{Settings, Tracker};
    use crate::history::Context;
    use fleetstream_geofence::FenceIndex;
    use fleetstream_schemas::Position;

    fn pos(t: i64) -> Position {
        crate::enrich::tests::pos("d", t, 40.7, -74.0, None)
    }

    fn at(partition: i32, offset: i64) -> Source {
        Source { partition, offset }
    }

    /// The state of device "d" after fixes at 1 000, 2 000 ... 10 000 ms, offsets 100 to 109 of
    /// partition 3 (and one late fix at 500 ms, offset 110).
    fn state() -> DeviceState {
        let mut tracker = Tracker::default();
        let (fences, settings) = (FenceIndex::default(), Settings::default());
        for i in 0..10 {
            tracker.apply(&pos((i + 1) * 1_000), at(3, 100 + i), &Context::without_rules(&fences), &settings);
        }
        tracker.apply(&pos(500), at(3, 110), &Context::without_rules(&fences), &settings);
        tracker.state("d").unwrap().clone()
    }

    #[test]
    fn real_redeliveries_are_never_taken_for_another_incarnation() {
        let s = state();
        // Every message the state applied, whatever the end of the log (it lies past them).
        for (i, t) in (1..=10).map(|i| i * 1_000).chain([500]).enumerate() {
            let source = at(3, 100 + i as i64);
            assert!(would_skip(&s, source));
            for high_watermark in [None, Some(111), Some(5_000)] {
                assert_eq!(other_incarnation(&s, t, source, high_watermark), None, "offset {}", source.offset);
            }
        }
    }

    #[test]
    fn an_applied_offset_beyond_the_end_of_the_log_is_another_incarnation() {
        let s = state();
        // The recreated topic holds 4 messages; this one's fix is old (a resend), so only the
        // end of the log tells.
        let evidence = other_incarnation(&s, 2_000, at(3, 1), Some(4));
        assert_eq!(evidence, Some(Evidence::BeyondEnd { applied_offset: 110, high_watermark: 4 }));
        assert_eq!(other_incarnation(&s, 2_000, at(3, 1), Some(110)).map(|e| e.as_str()), Some("beyond_end"));
        assert_eq!(other_incarnation(&s, 2_000, at(3, 1), Some(111)), None, "offset 110 may be in this log");
        assert_eq!(other_incarnation(&s, 2_000, at(3, 1), None), None, "end unknown");
    }

    #[test]
    fn a_fix_newer_than_every_applied_one_was_never_applied() {
        let s = state();
        // The recreated topic already holds more than 110 messages: its end proves nothing.
        let evidence = other_incarnation(&s, 10_001, at(3, 7), Some(5_000));
        assert_eq!(evidence, Some(Evidence::NewerFix { applied_offset: 110 }));
        assert_eq!(other_incarnation(&s, 10_000, at(3, 7), Some(5_000)), None, "the newest fix itself");
        assert_eq!(other_incarnation(&s, 9_999, at(3, 7), None), None);
    }

    proptest::proptest! {
        /// Whatever the fixes and their arrival order (late, beyond the lateness bound, copies),
        /// every message a state has applied is a redelivery to it, never another incarnation.
        #[test]
        fn no_applied_message_is_evidence(
            fix_times in proptest::collection::vec(0i64..2_000, 1..80),
            max_lateness_ms in 0i64..1_000,
        ) {
            let settings = Settings { max_lateness_ms, max_history_fixes: 16, ..Settings::default() };
            let (mut tracker, fences) = (Tracker::default(), FenceIndex::default());
            for (offset, t) in fix_times.iter().enumerate() {
                tracker.apply(&pos(*t), at(0, offset as i64), &Context::without_rules(&fences), &settings);
            }
            let end = fix_times.len() as i64;
            for (offset, t) in fix_times.iter().enumerate() {
                let source = at(0, offset as i64);
                proptest::prop_assert!(tracker.restart_other_incarnation(&pos(*t), source, Some(end)).is_none());
                proptest::prop_assert!(tracker.apply(&pos(*t), source, &Context::without_rules(&fences), &settings) == crate::enrich::Applied::Redelivered);
            }
        }
    }

    #[test]
    fn messages_that_would_not_be_skipped_need_no_evidence() {
        let s = state();
        assert!(!would_skip(&s, at(3, 111)));
        assert_eq!(other_incarnation(&s, 99_000, at(3, 111), Some(0)), None, "after the applied offset");
        assert!(!would_skip(&s, at(2, 5)));
        assert_eq!(other_incarnation(&s, 99_000, at(2, 5), Some(0)), None, "another partition");
        let fresh = DeviceState::default();
        assert!(!would_skip(&fresh, at(3, 0)));
        assert_eq!(other_incarnation(&fresh, 99_000, at(3, 0), Some(0)), None, "nothing applied");
    }
}
