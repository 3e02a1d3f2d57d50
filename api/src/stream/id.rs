//! Stream message ids: where in the output topic a client is, so that it can resume.
//!
//! An id is a [`Cursor`]: for every partition of the topic, the offset of the last message the
//! client has been sent or that its filters skipped. Written `p/0:1841,3:77` (`p` for
//! `/v1/stream/positions`, `e` for `/v1/stream/events`, then `partition:offset` pairs, ascending by
//! partition). A partition not listed has given nothing yet: resuming reads it from its start.
//! Resuming from an id reads each partition from the offset after the one listed, so the client
//! gets exactly the messages it has not had, in order per device (a device's messages share a
//! partition).

use std::fmt::Write as _;

/// Which stream an id belongs to: an id of one is refused by the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Positions,
    Events,
    Alerts,
}

impl StreamKind {
    pub const ALL: [StreamKind; 3] = [StreamKind::Positions, StreamKind::Events, StreamKind::Alerts];

    pub fn prefix(self) -> char {
        match self {
            StreamKind::Positions => 'p',
            StreamKind::Events => 'e',
            StreamKind::Alerts => 'a',
        }
    }

    /// The path of the stream, for messages.
    pub fn path(self) -> &'static str {
        match self {
            StreamKind::Positions => "/v1/stream/positions",
            StreamKind::Events => "/v1/stream/events",
            StreamKind::Alerts => "/v1/stream/alerts",
        }
    }

    /// The SSE `event:` name of its messages.
    pub fn event_name(self) -> &'static str {
        match self {
            StreamKind::Positions => "position",
            StreamKind::Events => "geofence",
            StreamKind::Alerts => "alert",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            StreamKind::Positions => "positions",
            StreamKind::Events => "events",
            StreamKind::Alerts => "alerts",
        }
    }
}

/// Most partitions an id may name (a topic of fleetstream has 8 by default).
pub const MAX_PARTITIONS: usize = 4_096;

/// The largest offset an id may name: far beyond any real topic (2^53, a million messages a
/// second for 285 years), and far enough from `i64::MAX` that the offset after it is one too.
pub const MAX_OFFSET: i64 = 1 << 53;

/// Per partition (by index), the offset of the last message accounted for; `-1`: none yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor(pub Vec<i64>);

impl Cursor {
    /// `partitions` partitions with nothing read yet.
    pub fn empty(partitions: usize) -> Cursor {
        Cursor(vec![-1; partitions])
    }

    /// The offset accounted for in `partition` (`-1` when none or beyond the known partitions).
    pub fn get(&self, partition: usize) -> i64 {
        self.0.get(partition).copied().unwrap_or(-1)
    }

    /// Records `offset` as accounted for in `partition`, growing the cursor if needed.
    pub fn set(&mut self, partition: usize, offset: i64) {
        if self.0.len() <= partition {
            self.0.resize(partition + 1, -1);
        }
        self.0[partition] = offset;
    }

    /// Whether every partition of `other` is accounted for here too.
    pub fn covers(&self, other: &Cursor) -> bool {
        other.0.iter().enumerate().all(|(p, &o)| self.get(p) >= o)
    }

    /// The later of both, partition by partition.
    pub fn max(&self, other: &Cursor) -> Cursor {
        let len = self.0.len().max(other.0.len());
        Cursor((0..len).map(|p| self.get(p).max(other.get(p))).collect())
    }

    /// Without trailing partitions that hold nothing: equal cursors encode alike.
    pub fn normalized(mut self) -> Cursor {
        while self.0.last() == Some(&-1) {
            self.0.pop();
        }
        self
    }

    /// The id of this cursor on stream `kind`.
    pub fn encode(&self, kind: StreamKind) -> String {
        let mut out = String::with_capacity(2 + self.0.len() * 10);
        out.push(kind.prefix());
        out.push('/');
        let mut first = true;
        for (p, &o) in self.0.iter().enumerate().filter(|(_, o)| **o >= 0) {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{p}:{o}");
        }
        out
    }

    /// Reads an id of stream `kind`; the error says what is wrong with it.
    pub fn decode(kind: StreamKind, id: &str) -> Result<Cursor, String> {
        let Some(pairs) = id.strip_prefix(kind.prefix()).and_then(|rest| rest.strip_prefix('/')) else {
            let other = StreamKind::ALL.into_iter().find(|k| id.starts_with(k.prefix()) && id[1..].starts_with('/'));
            if let Some(other) = other {
                return Err(format!("is an id of {}, not of {}", other.path(), kind.path()));
            }
            return Err(format!("must be an id this stream sent (`{}/0:17,1:42`), got {id:?}", kind.prefix()));
        };
        let mut cursor = Cursor::default();
        if pairs.is_empty() {
            return Ok(cursor);
        }
        for pair in pairs.split(',') {
            let parsed =
                pair.split_once(':').and_then(|(p, o)| Some((p.parse::<usize>().ok()?, o.parse::<i64>().ok()?)));
            let Some((partition, offset)) = parsed.filter(|&(_, o)| o >= 0) else {
                return Err(format!("{pair:?} is not partition:offset with both non-negative integers"));
            };
            if partition >= MAX_PARTITIONS {
                return Err(format!("partition {partition} is beyond the {MAX_PARTITIONS} an id may name"));
            }
            if offset > MAX_OFFSET {
                return Err(format!("offset {offset} is beyond any a topic reaches"));
            }
            if cursor.get(partition) >= 0 {
                return Err(format!("partition {partition} is named twice"));
            }
            cursor.set(partition, offset);
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_read_back() {
        let cursor = Cursor(vec![17, -1, 42]);
        assert_eq!(cursor.encode(StreamKind::Positions), "p/0:17,2:42");
        assert_eq!(Cursor::decode(StreamKind::Positions, "p/0:17,2:42").unwrap(), cursor);
        assert_eq!(Cursor::decode(StreamKind::Events, "e/").unwrap(), Cursor::default());
        assert_eq!(Cursor::decode(StreamKind::Events, "e/2:5,0:1").unwrap(), Cursor(vec![1, -1, 5]));
    }

    #[test]
    fn malformed_ids_say_why() {
        let refused = |id: &str| Cursor::decode(StreamKind::Positions, id).unwrap_err();
        assert!(refused("e/0:1").contains("an id of /v1/stream/events"), "{}", refused("e/0:1"));
        for bad in ["", "0:1", "p", "p0:1", "x/0:1"] {
            assert!(refused(bad).starts_with("must be an id this stream sent"), "{bad:?}: {}", refused(bad));
        }
        for bad in
            ["p/0", "p/0:", "p/:1", "p/0:-1", "p/-1:3", "p/0:1,", "p/a:b", "p/0:1;1:2", "p/0:99999999999999999999"]
        {
            assert!(refused(bad).contains("is not partition:offset"), "{bad:?}: {}", refused(bad));
        }
        assert!(refused("p/0:1,0:2").contains("named twice"));
        assert!(refused("p/99999:1").contains("beyond"));
        assert!(refused(&format!("p/0:{}", i64::MAX)).contains("beyond any a topic reaches"));
        assert_eq!(
            Cursor::decode(StreamKind::Positions, &format!("p/0:{MAX_OFFSET}")).unwrap(),
            Cursor(vec![MAX_OFFSET])
        );
    }

    #[test]
    fn covering_and_max() {
        let a = Cursor(vec![5, 3]);
        let b = Cursor(vec![4, 3, -1]);
        assert!(a.covers(&b) && !b.covers(&a));
        assert!(!a.covers(&Cursor(vec![5, 3, 0])));
        assert_eq!(a.max(&Cursor(vec![1, 9, 2])), Cursor(vec![5, 9, 2]));
    }

    proptest! {
        #[test]
        fn every_cursor_round_trips(offsets in proptest::collection::vec(-1i64..=MAX_OFFSET, 0..64), events in any::<bool>()) {
            let kind = if events { StreamKind::Events } else { StreamKind::Positions };
            let cursor = Cursor(offsets).normalized();
            let id = cursor.encode(kind);
            prop_assert_eq!(Cursor::decode(kind, &id).unwrap(), cursor);
            prop_assert!(id.bytes().all(|b| b.is_ascii_graphic()), "ids fit a header and an SSE line: {}", id);
        }

        #[test]
        fn any_text_is_an_id_or_a_reason(text in ".{0,40}") {
            match Cursor::decode(StreamKind::Events, &text) {
                // Every offset may be stepped past, and the id is one this stream would send.
                Ok(cursor) => {
                    prop_assert!(cursor.0.iter().all(|&o| (-1..=MAX_OFFSET).contains(&o)));
                    prop_assert!(cursor.0.len() <= MAX_PARTITIONS);
                    let again = cursor.clone().normalized().encode(StreamKind::Events);
                    prop_assert_eq!(Cursor::decode(StreamKind::Events, &again).unwrap().normalized(), cursor.normalized());
                }
                Err(reason) => prop_assert!(!reason.is_empty()),
            }
        }
    }
}
