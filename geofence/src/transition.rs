//! Enter/exit transitions of one device against one fence, with hysteresis against GPS jitter.
//!
//! A device's confirmed state (inside or outside) changes only after its fixes have been on the
//! other side of the boundary for at least `min_time_ms` AND at least `min_distance_m` past it;
//! a fix back on the confirmed side cancels the pending change. The transition is dated at the
//! first fix seen on the new side (when the device really crossed), so dwell times are not
//! inflated by the confirmation delay. Fixes must arrive in event-time order (the caller drops
//! late ones), so transitions are ordered and enter/exit strictly alternate.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hysteresis {
    pub min_time_ms: i64,
    pub min_distance_m: f64,
}

impl Hysteresis {
    pub const NONE: Hysteresis = Hysteresis { min_time_ms: 0, min_distance_m: 0.0 };
}

/// The state of one (device, fence) pair; absent means confirmed outside, nothing pending.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FenceState {
    pub inside: bool,
    /// When the current confirmed state began (the enter time while inside).
    pub since_ms: i64,
    /// First fix on the other side of the boundary, while a change is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    Enter { at_ms: i64 },
    Exit { at_ms: i64, dwell_ms: i64 },
}

impl FenceState {
    /// Applies one fix: `inside` is whether the fence contains it, `past_boundary_m` how far from
    /// the boundary it is. Returns the transition this fix confirms, if any.
    pub fn step(&mut self, inside: bool, past_boundary_m: f64, fix_ms: i64, h: Hysteresis) -> Option<Transition> {
        if inside == self.inside {
            self.pending_since_ms = None;
            return None;
        }
        let first = *self.pending_since_ms.get_or_insert(fix_ms);
        if fix_ms - first < h.min_time_ms || past_boundary_m < h.min_distance_m {
            return None;
        }
        Some(self.confirm(inside, first))
    }

    /// Confirms the other side at `at_ms` regardless of hysteresis (a deleted fence, say).
    pub fn confirm(&mut self, inside: bool, at_ms: i64) -> Transition {
        let transition = if inside {
            Transition::Enter { at_ms }
        } else {
            Transition::Exit { at_ms, dwell_ms: at_ms - self.since_ms }
        };
        *self = FenceState { inside, since_ms: at_ms, pending_since_ms: None };
        transition
    }

    /// True when the pair carries no information (outside, nothing pending): it need not be kept.
    pub fn is_idle(&self) -> bool {
        !self.inside && self.pending_since_ms.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: Hysteresis = Hysteresis { min_time_ms: 30_000, min_distance_m: 20.0 };

    #[test]
    fn without_hysteresis_every_crossing_counts() {
        let mut s = FenceState::default();
        assert_eq!(s.step(true, 1.0, 1_000, Hysteresis::NONE), Some(Transition::Enter { at_ms: 1_000 }));
        assert_eq!(s.step(true, 1.0, 2_000, Hysteresis::NONE), None);
        assert_eq!(
            s.step(false, 1.0, 5_000, Hysteresis::NONE),
            Some(Transition::Exit { at_ms: 5_000, dwell_ms: 4_000 })
        );
        assert!(s.is_idle());
    }

    #[test]
    fn jitter_across_the_boundary_does_not_count() {
        let mut s = FenceState::default();
        for (i, inside) in [true, false, true, false, true, false].into_iter().enumerate() {
            assert_eq!(s.step(inside, 50.0, i as i64 * 10_000, H), None);
        }
        assert!(!s.inside);
    }

    #[test]
    fn staying_inside_long_and_deep_enough_enters_at_the_first_fix() {
        let mut s = FenceState::default();
        assert_eq!(s.step(true, 25.0, 100_000, H), None);
        assert_eq!(s.step(true, 25.0, 120_000, H), None);
        assert_eq!(s.step(true, 30.0, 130_000, H), Some(Transition::Enter { at_ms: 100_000 }));
        // Exit likewise, and dwell runs from the first inside fix to the first outside fix.
        assert_eq!(s.step(false, 40.0, 200_000, H), None);
        assert_eq!(s.step(false, 40.0, 231_000, H), Some(Transition::Exit { at_ms: 200_000, dwell_ms: 100_000 }));
    }

    #[test]
    fn time_alone_is_not_enough_when_too_close_to_the_boundary() {
        let mut s = FenceState::default();
        assert_eq!(s.step(true, 5.0, 0, H), None);
        assert_eq!(s.step(true, 5.0, 60_000, H), None);
        assert_eq!(s.step(true, 21.0, 61_000, H), Some(Transition::Enter { at_ms: 0 }));
    }

    #[test]
    fn forced_confirmation_for_a_deleted_fence() {
        let mut s = FenceState::default();
        s.step(true, 100.0, 0, Hysteresis::NONE);
        assert_eq!(s.confirm(false, 9_000), Transition::Exit { at_ms: 9_000, dwell_ms: 9_000 });
    }

    proptest! {
        /// Whatever the fixes (in time order), transitions alternate enter/exit starting with
        /// enter, are dated in order, no later than the fix that confirms them, and every
        /// dwell is the time since the matching enter.
        #[test]
        fn transitions_alternate_and_dwell_adds_up(
            steps in proptest::collection::vec((any::<bool>(), 0.0f64..100.0, 0i64..60_000), 1..200),
            min_time in 0i64..90_000,
            min_distance in 0.0f64..50.0,
        ) {
            let h = Hysteresis { min_time_ms: min_time, min_distance_m: min_distance };
            let mut s = FenceState::default();
            let (mut t, mut last_at, mut entered_at): (i64, i64, Option<i64>) = (0, i64::MIN, None);
            for (inside, dist, gap) in steps {
                t += gap + 1;
                match s.step(inside, dist, t, h) {
                    Some(Transition::Enter { at_ms }) => {
                        prop_assert!(entered_at.is_none(), "enter while inside");
                        prop_assert!(at_ms >= last_at && at_ms <= t);
                        entered_at = Some(at_ms);
                        last_at = at_ms;
                    }
                    Some(Transition::Exit { at_ms, dwell_ms }) => {
                        let enter = entered_at.take();
                        prop_assert!(enter.is_some(), "exit without enter");
                        prop_assert_eq!(dwell_ms, at_ms - enter.unwrap());
                        prop_assert!(at_ms >= last_at && at_ms <= t);
                        last_at = at_ms;
                    }
                    None => {}
                }
                prop_assert_eq!(s.inside, entered_at.is_some());
            }
        }

        /// With no hysteresis the confirmed state always equals the last fix's side.
        #[test]
        fn without_hysteresis_state_follows_the_fixes(sides in proptest::collection::vec(any::<bool>(), 1..100)) {
            let mut s = FenceState::default();
            for (i, inside) in sides.iter().enumerate() {
                s.step(*inside, 0.0, i as i64, Hysteresis::NONE);
                prop_assert_eq!(s.inside, *inside);
            }
        }
    }
}
