//! A resuming client's own consumer: reads the topic from the client's id until the client has
//! caught up with the shared consumer, then is dropped (see `stream::client`).
//!
//! It starts at the offset after the id's in every partition. When the id is older than what
//! the topic still holds (retention deleted the messages after it) or names offsets the topic
//! never reached (the topic was recreated), the partition is read from its earliest message
//! and the client is told with a `gap` message before anything else.

use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use fleetstream_kafka::KafkaConfig;
use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use serde_json::json;

use crate::stream::fanout::{assign, reader, watermarks};
use crate::stream::id::Cursor;

/// A partition whose messages after the id are not all in the topic any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub partition: usize,
    /// The first offset the id asked for.
    pub wanted: i64,
    /// The earliest offset the topic holds (where reading starts).
    pub earliest: i64,
    pub latest: i64,
}

pub struct CatchUp {
    consumer: Arc<StreamConsumer>,
    /// The earliest offset of each partition when reading started.
    pub earliest: Vec<i64>,
    pub gaps: Vec<Gap>,
}

/// One message read.
pub struct Read {
    pub partition: usize,
    pub offset: i64,
    pub payload: Bytes,
}

impl CatchUp {
    /// A consumer of `topic` from the offsets after `from`.
    pub async fn start(kafka: &KafkaConfig, topic: &str, from: &Cursor) -> anyhow::Result<CatchUp> {
        let consumer = Arc::new(reader(kafka, "fleetstream-api-resume")?);
        let marks = watermarks(&consumer, topic).await?;
        anyhow::ensure!(!marks.is_empty(), "topic {topic} does not exist");
        let gaps = gaps(from, &marks);
        let starts = (0..marks.len()).map(|p| from.get(p) + 1).collect();
        assign(&consumer, topic, starts).await?;
        Ok(CatchUp { consumer, earliest: marks.iter().map(|&(low, _)| low).collect(), gaps })
    }

    pub async fn next(&self) -> anyhow::Result<Read> {
        let message = self.consumer.recv().await.context("read the topic from the resumed id")?;
        let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
        Ok(Read { partition: message.partition() as usize, offset: message.offset(), payload })
    }
}

/// The partitions where resuming after `from` cannot give every message: the next offset
/// wanted is before the earliest one kept, or beyond the end.
pub fn gaps(from: &Cursor, marks: &[(i64, i64)]) -> Vec<Gap> {
    let gap = |(partition, &(low, high)): (usize, &(i64, i64))| {
        let wanted = from.get(partition) + 1;
        (wanted < low || wanted > high).then_some(Gap { partition, wanted, earliest: low, latest: high })
    };
    marks.iter().enumerate().filter_map(gap).collect()
}

/// The `gap` message's data.
pub fn gap_notice(gaps: &[Gap]) -> serde_json::Value {
    let partitions: Vec<_> = gaps
        .iter()
        .map(|g| json!({"partition": g.partition, "wanted_offset": g.wanted, "earliest_offset": g.earliest, "end_offset": g.latest}))
        .collect();
    json!({
        "message": "messages after the id are no longer kept (or the topic was recreated); streaming from the earliest kept",
        "partitions": partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_where_the_topic_no_longer_holds_the_next_message() {
        let from = Cursor(vec![9, 4, -1, 50]);
        let marks = [(10, 20), (10, 20), (0, 0), (0, 20)];
        let found = gaps(&from, &marks);
        // Partition 0 resumes at 10, the earliest kept: no gap. 1 wants 5 (gone). 2 is empty.
        // 3 names offset 50 of a partition that ends at 20: recreated.
        assert_eq!(found.iter().map(|g| g.partition).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(found[0], Gap { partition: 1, wanted: 5, earliest: 10, latest: 20 });
        assert!(gap_notice(&found)["partitions"][1]["wanted_offset"] == 51);
        assert!(gaps(&Cursor::default(), &[(0, 5)]).is_empty(), "from the start of a full partition");
        assert_eq!(gaps(&Cursor::default(), &[(3, 5)]).len(), 1, "its start was deleted");
    }
}
