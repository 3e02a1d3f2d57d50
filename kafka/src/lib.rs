//! fleetstream's Kafka plumbing, shared by ingest and the processors: connection settings
//! (including TLS and SASL, see [`security`]), creating our topics when they are missing, and the
//! command line of the local broker ([`nisshi`]).

pub mod nisshi;
pub mod security;

use std::time::Duration;

use clap::Args;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

pub use security::{KafkaSecurity, SaslMechanism, SecurityProtocol, SettingsError};

#[derive(Debug, Clone, Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long = "brokers", env = "FLEETSTREAM_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic of validated positions (keyed by device_id).
    #[arg(long = "positions-topic", env = "FLEETSTREAM_POSITIONS_TOPIC", default_value = fleetstream_schemas::topics::POSITIONS_RAW)]
    pub positions_topic: String,
    /// Topic of rejected items and the reasons (dead letters).
    #[arg(long = "dlq-topic", env = "FLEETSTREAM_DLQ_TOPIC", default_value = fleetstream_schemas::topics::POSITIONS_DLQ)]
    pub dlq_topic: String,
    /// Topic of enriched positions, for other consumers.
    #[arg(long = "enriched-topic", env = "FLEETSTREAM_ENRICHED_TOPIC", default_value = fleetstream_schemas::topics::POSITIONS_ENRICHED)]
    pub enriched_topic: String,
    /// Topic of geofence enter/exit events, for other consumers.
    #[arg(long = "events-topic", env = "FLEETSTREAM_EVENTS_TOPIC", default_value = fleetstream_schemas::topics::GEOFENCE_EVENTS)]
    pub events_topic: String,
    /// Topic of the alerts the alert rules fire, for other consumers.
    #[arg(long = "alerts-topic", env = "FLEETSTREAM_ALERTS_TOPIC", default_value = fleetstream_schemas::topics::ALERTS)]
    pub alerts_topic: String,
    /// Topic of positions the processors could not store or decode, with the reason.
    #[arg(long = "processing-dlq-topic", env = "FLEETSTREAM_PROCESSING_DLQ_TOPIC", default_value = fleetstream_schemas::topics::PROCESSING_DLQ)]
    pub processing_dlq_topic: String,
    /// Partitions for topics that fleetstream creates itself (existing topics are left alone).
    #[arg(long = "topic-partitions", env = "FLEETSTREAM_TOPIC_PARTITIONS", default_value_t = 8)]
    pub topic_partitions: i32,
    /// Replication factor for topics that fleetstream creates itself (3 on a production cluster).
    #[arg(long = "topic-replication", env = "FLEETSTREAM_TOPIC_REPLICATION", default_value_t = 1)]
    pub topic_replication: i32,
    /// `min.insync.replicas` of topics that fleetstream creates itself: with `acks=all`, a write
    /// succeeds only once this many replicas have it (2 with replication 3 survives one broker
    /// down without losing an acknowledged position). Default: the broker's.
    #[arg(long = "topic-min-insync-replicas", env = "FLEETSTREAM_TOPIC_MIN_INSYNC_REPLICAS")]
    pub topic_min_insync_replicas: Option<i32>,
    #[command(flatten)]
    pub security: KafkaSecurity,
}

impl KafkaConfig {
    /// The default topics on `brokers`: the embedded stack of `fleetstream up`.
    pub fn local(brokers: &str) -> Self {
        fleetstream_schemas::settings::from_flags(&[&format!("--brokers={brokers}")])
    }

    /// The default topic names with `.{suffix}` appended: one private set of topics per test.
    pub fn with_topic_suffix(brokers: &str, suffix: &str) -> Self {
        let mut config = KafkaConfig::local(brokers);
        for topic in [
            &mut config.positions_topic,
            &mut config.dlq_topic,
            &mut config.enriched_topic,
            &mut config.events_topic,
            &mut config.alerts_topic,
            &mut config.processing_dlq_topic,
        ] {
            topic.push_str(&format!(".{suffix}"));
        }
        config
    }

    /// A producer whose acknowledgement means durable: every in-sync replica has the message
    /// (`acks=all`), and retries never duplicate or reorder within a partition (idempotence).
    pub fn durable_producer_config(&self, client_id: &str) -> ClientConfig {
        let mut config = self.client_config(client_id);
        config.set("acks", "all").set("enable.idempotence", "true").set("compression.type", "lz4");
        config
    }

    /// Settings every fleetstream client starts from.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            .set("socket.keepalive.enable", "true");
        self.security.apply(&mut config);
        config
    }

    /// Checks the settings that can be checked without a broker (see [`KafkaSecurity::validate`]).
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(min) = self.topic_min_insync_replicas
            && !(1..=self.topic_replication).contains(&min)
        {
            return Err(SettingsError(format!(
                "--topic-min-insync-replicas {min} must be between 1 and --topic-replication ({})",
                self.topic_replication
            )));
        }
        self.security.validate()
    }

    /// Where the brokers are and how we reach them, for logs: never a password.
    /// The environment that gives a fleetstream process these brokers and topics (the variables
    /// of the flags above; security settings not included): for the tests and benchmarks that
    /// start the binary.
    pub fn topic_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FLEETSTREAM_BROKERS", self.brokers.clone()),
            ("FLEETSTREAM_POSITIONS_TOPIC", self.positions_topic.clone()),
            ("FLEETSTREAM_DLQ_TOPIC", self.dlq_topic.clone()),
            ("FLEETSTREAM_ENRICHED_TOPIC", self.enriched_topic.clone()),
            ("FLEETSTREAM_EVENTS_TOPIC", self.events_topic.clone()),
            ("FLEETSTREAM_ALERTS_TOPIC", self.alerts_topic.clone()),
            ("FLEETSTREAM_PROCESSING_DLQ_TOPIC", self.processing_dlq_topic.clone()),
        ]
    }

    pub fn describe(&self) -> String {
        format!("Kafka at {} ({})", self.brokers, self.security.describe())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("Kafka at {brokers}: {context}: {source}")]
    Kafka {
        brokers: String,
        context: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka at {brokers}: creating topic {topic}: {code}")]
    CreateTopic { brokers: String, topic: String, code: RDKafkaErrorCode },
}

/// Creates each topic that does not exist yet, with the configured partitions and replication.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[&str]) -> Result<(), KafkaSetupError> {
    let wrap = |context: &str| {
        let brokers = config.brokers.clone();
        let context = context.to_string();
        move |source| KafkaSetupError::Kafka { brokers, context, source }
    };
    let admin: AdminClient<DefaultClientContext> =
        config.client_config("fleetstream-admin").create().map_err(wrap("create admin client"))?;
    let min_insync = config.topic_min_insync_replicas.map(|n| n.to_string());
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(t, config.topic_partitions, TopicReplication::Fixed(config.topic_replication));
            match &min_insync {
                Some(n) => topic.set("min.insync.replicas", n),
                None => topic,
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(&new_topics, &options).await.map_err(wrap("create topics"))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions = config.topic_partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaSetupError::CreateTopic { brokers: config.brokers.clone(), topic, code });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each variable `topic_env` names is the one of the flag holding that value.
    #[test]
    fn topic_env_names_the_flags_variables() {
        use clap::Args;
        let config = KafkaConfig::with_topic_suffix("b:1", "x");
        let command = KafkaConfig::augment_args(clap::Command::new("t"));
        for (name, value) in config.topic_env() {
            let arg = command
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == name))
                .unwrap_or_else(|| panic!("no flag reads {name}"));
            let flag = format!("--{}={value}", arg.get_long().unwrap());
            let parsed: KafkaConfig = fleetstream_schemas::settings::from_flags(&[&flag]);
            assert!(parsed.topic_env().contains(&(name, value.clone())), "{name}: {flag}");
        }
    }

    #[test]
    fn min_insync_replicas_must_fit_the_replication() {
        let mut config = KafkaConfig { topic_replication: 3, ..KafkaConfig::local("127.0.0.1:9092") };
        config.topic_min_insync_replicas = Some(2);
        assert_eq!(config.validate(), Ok(()));
        config.topic_min_insync_replicas = Some(4);
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("--topic-min-insync-replicas 4 must be between 1 and --topic-replication (3)"),
            "{error}"
        );
        config.topic_min_insync_replicas = Some(0);
        assert!(config.validate().is_err());
    }

    #[test]
    fn describe_names_the_brokers_and_security_without_secrets() {
        let mut config = KafkaConfig::local("kafka1:9093");
        config.security.protocol = SecurityProtocol::SaslSsl;
        config.security.sasl_mechanism = Some(SaslMechanism::ScramSha512);
        config.security.sasl_username = Some("fleet".into());
        config.security.sasl_password = Some("pa55word".into());
        assert_eq!(config.describe(), "Kafka at kafka1:9093 (SASL_SSL SCRAM-SHA-512 as fleet, system CAs)");
        assert!(!format!("{config:?}").contains("pa55word"));
    }
}
