//! Topic creation against the real broker `scripts/test` started (`FLEETSTREAM_TEST_BROKERS`):
//! the topics fleetstream creates carry the configured partitions and `min.insync.replicas`.

use std::time::Duration;

use fleetstream_kafka::{KafkaConfig, ensure_topics};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

fn brokers() -> String {
    std::env::var("FLEETSTREAM_TEST_BROKERS").unwrap_or_else(|_| {
        panic!("FLEETSTREAM_TEST_BROKERS is not set: this test needs a real broker; run it with scripts/test")
    })
}

#[tokio::test]
async fn created_topics_carry_partitions_and_min_insync_replicas() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let mut kafka = KafkaConfig::with_topic_suffix(&brokers(), &format!("isr_{}_{nanos}", std::process::id()));
    kafka.topic_partitions = 3;
    // nisshi is one broker that accepts any replication factor (Apache Kafka would refuse 3 on
    // one broker) and keeps the topic's configuration, so what we ask for can be read back.
    kafka.topic_replication = 3;
    kafka.topic_min_insync_replicas = Some(2);
    kafka.validate().unwrap();
    let topic = kafka.positions_topic.clone();
    ensure_topics(&kafka, &[&topic]).await.unwrap();
    // A second call finds the topic there and leaves it alone.
    ensure_topics(&kafka, &[&topic]).await.unwrap();

    let consumer: BaseConsumer = kafka.client_config("topics-test").create().unwrap();
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 3);

    assert_eq!(min_insync_replicas(&kafka, &topic).await.as_deref(), Some("2"));

    // Without the setting, the topic keeps the broker's default.
    let default_topic = kafka.dlq_topic.clone();
    kafka.topic_min_insync_replicas = None;
    ensure_topics(&kafka, &[&default_topic]).await.unwrap();
    assert_ne!(min_insync_replicas(&kafka, &default_topic).await.as_deref(), Some("2"));
}

async fn min_insync_replicas(kafka: &KafkaConfig, topic: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config("topics-test-admin").create().unwrap();
    let described = admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()).await.unwrap();
    let resource = described.into_iter().next().unwrap().expect("the topic's configuration");
    resource.get("min.insync.replicas").and_then(|e| e.value.clone())
}
