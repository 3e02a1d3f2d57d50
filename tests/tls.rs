//! TLS and SASL against real servers, with certificates the test makes itself (`openssl`):
//! - ClickHouse 18.16 serving HTTPS: storage opens, inserts and reads through `https://` with
//!   `--clickhouse-ca-file`; a wrong CA, or none (the public CAs), is refused with an error that
//!   says why.
//! - nisshi serving TLS only and requiring SASL SCRAM: ingest's and the processors' client
//!   settings (`SASL_SSL`, `SCRAM-SHA-256`, `--kafka-ssl-ca-location`) create topics, produce
//!   with `acks=all` and consume; a wrong password, a wrong CA or PLAINTEXT are refused.
//!
//! Both start servers of their own (`scripts/test` provides the binaries).

mod support;

use std::time::Duration;

use fleetstream_kafka::{KafkaConfig, KafkaSecurity, SaslMechanism, SecurityProtocol};
use fleetstream_storage::{ClickHouseConfig, PositionRow, Store, StoreError};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::pki::TestPki;
use support::{OwnBroker, OwnClickHouse, nisshi, unique};

fn position(device: &str, fix_ms: i64) -> PositionRow {
    PositionRow { speed_mps: Some(3.5), kafka_offset: fix_ms, ..PositionRow::at(device, fix_ms, 40.7, -74.0) }
}

#[tokio::test]
async fn storage_over_https_trusts_exactly_the_ca_file() {
    let dir = std::env::temp_dir().join(unique("https_pki"));
    let pki = TestPki::create(&dir);
    let server = OwnClickHouse::start_https("https_clickhouse", &pki.server_cert, &pki.server_key);
    let https = |host: &str, ca: Option<&std::path::Path>| ClickHouseConfig {
        ca_file: ca.map(|p| p.to_path_buf()),
        ..ClickHouseConfig::local(&format!("https://{host}:{}", server.https_port()), &unique("fs_https"))
    };

    // The right CA: migrations, an insert (RowBinary, lz4) and a read, all over TLS.
    let store = Store::open(&https("localhost", Some(&pki.ca))).await.expect("storage over HTTPS with the test CA");
    let rows = vec![position("tls-truck", 1_700_000_000_000), position("tls-truck", 1_700_000_005_000)];
    store.insert_positions(&rows).await.unwrap();
    let track = store.track("tls-truck", 0, i64::MAX, 10).await.unwrap();
    assert_eq!(track.iter().map(|r| r.fix_time_ms).collect::<Vec<_>>(), [1_700_000_000_000, 1_700_000_005_000]);
    // The IP address is in the certificate too.
    Store::open(&https("127.0.0.1", Some(&pki.ca))).await.expect("by IP address");

    // A CA that did not sign the server's certificate: refused, and the error says so.
    let error = Store::open(&https("localhost", Some(&pki.other_ca))).await.err().expect("the wrong CA is refused");
    let message = error.to_string();
    assert!(matches!(error, StoreError::Unreachable { .. }), "{message}");
    assert!(message.contains("invalid peer certificate"), "{message}");
    assert!(message.contains("not signed by a CA in --clickhouse-ca-file"), "{message}");

    // No CA file: the public CAs do not know the test CA either.
    let error = Store::open(&https("localhost", None)).await.err().expect("a self-signed CA is not public");
    let message = error.to_string();
    assert!(message.contains("pass its CA with --clickhouse-ca-file"), "{message}");

    // A CA file that holds no certificate fails before any connection, naming the flag.
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let error = Store::open(&https("localhost", Some(&empty))).await.err().expect("an unusable CA file");
    let message = error.to_string();
    assert!(matches!(error, StoreError::Tls(_)), "{message}");
    assert!(message.contains("--clickhouse-ca-file") && message.contains("no PEM certificate"), "{message}");

    // Plain HTTP still works on the HTTP port. (Not tested: https:// to the plain HTTP port.
    // 18.16 may wait for the rest of a request there, and the TLS handshake has no timeout of
    // its own, so the test could hang for the server's receive timeout.)
    let plain = ClickHouseConfig::local(&format!("http://127.0.0.1:{}", server.http_port), &unique("fs_plain"));
    Store::open(&plain).await.expect("plain HTTP");
    let _ = std::fs::remove_dir_all(&dir);
}

const USER: &str = "fleet-ingest";
const PASSWORD: &str = "correct horse battery staple";

/// A nisshi broker serving TLS only (the test CA's certificate for `localhost`) and requiring
/// SCRAM, with the user [`USER`] created while it still listened in plaintext.
fn secure_broker(pki: &TestPki) -> OwnBroker {
    let mut broker = OwnBroker::start("kafka_tls");
    for mechanism in ["scram256", "scram512"] {
        let output = std::process::Command::new(nisshi())
            .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{}", broker.port)])
            .args(["--mechanism", mechanism, USER, PASSWORD])
            .output()
            .expect("nisshi user create");
        assert!(output.status.success(), "nisshi user create: {}", String::from_utf8_lossy(&output.stderr));
    }
    broker.kill();
    broker.tls = Some((pki.server_cert.clone(), pki.server_key.clone()));
    broker.authentication = true;
    broker.restart();
    broker
}

fn sasl_ssl(pki: &TestPki, mechanism: SaslMechanism, password: &str) -> KafkaSecurity {
    KafkaSecurity {
        protocol: SecurityProtocol::SaslSsl,
        sasl_mechanism: Some(mechanism),
        sasl_username: Some(USER.into()),
        sasl_password: Some(password.into()),
        ssl_ca_location: Some(pki.ca.clone()),
        ..KafkaSecurity::default()
    }
}

/// Whether a client with these settings gets the cluster's metadata within a few seconds.
async fn metadata_error(kafka: &KafkaConfig) -> Option<String> {
    let config = kafka.client_config("fleetstream-tls-probe");
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().expect("client");
        consumer.fetch_metadata(None, Duration::from_secs(5)).err().map(|e| e.to_string())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn kafka_over_sasl_ssl_with_scram() {
    support::init_logs();
    let dir = std::env::temp_dir().join(unique("kafka_pki"));
    let pki = TestPki::create(&dir);
    let broker = secure_broker(&pki);

    for mechanism in [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
        let mut kafka = KafkaConfig::with_topic_suffix(&broker.brokers(), &unique("tls"));
        kafka.security = sasl_ssl(&pki, mechanism, PASSWORD);
        kafka.validate().unwrap();
        assert_eq!(metadata_error(&kafka).await, None, "{}", kafka.describe());

        // What ingest and the processors do: create the topic, produce durably, consume.
        let topic = kafka.positions_topic.clone();
        fleetstream_kafka::ensure_topics(&kafka, &[&topic]).await.expect("topics over SASL_SSL");
        let producer: FutureProducer = kafka.durable_producer_config("tls-producer").create().unwrap();
        let payload = format!("a position over SASL_SSL with {}", mechanism.as_str());
        producer
            .send(FutureRecord::to(&topic).key("truck-1").payload(&payload), Duration::from_secs(15))
            .await
            .expect("acknowledged over SASL_SSL");
        let mut config = kafka.client_config("tls-consumer");
        config.set("group.id", unique("tls_group")).set("auto.offset.reset", "earliest");
        let consumer: StreamConsumer = config.create().unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a message within 30 s")
            .unwrap();
        assert_eq!(message.payload(), Some(payload.as_bytes()));
    }

    // Each of these must be refused by the broker or by our TLS check.
    let base = KafkaConfig::with_topic_suffix(&broker.brokers(), "refused");
    let refused = [
        ("a wrong password", sasl_ssl(&pki, SaslMechanism::ScramSha256, "wrong password")),
        (
            "a CA that did not sign the broker's certificate",
            KafkaSecurity {
                ssl_ca_location: Some(pki.other_ca.clone()),
                ..sasl_ssl(&pki, SaslMechanism::ScramSha256, PASSWORD)
            },
        ),
        ("PLAINTEXT", KafkaSecurity::default()),
        (
            "TLS without SASL",
            KafkaSecurity {
                protocol: SecurityProtocol::Ssl,
                ssl_ca_location: Some(pki.ca.clone()),
                ..KafkaSecurity::default()
            },
        ),
    ];
    for (what, security) in refused {
        let kafka = KafkaConfig { security, ..base.clone() };
        kafka.validate().unwrap();
        assert!(metadata_error(&kafka).await.is_some(), "{what} was accepted");
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binary as deployed: `fleetstream migrate` reads the HTTPS settings from the environment,
/// and what it prints on success or failure never holds the password.
#[tokio::test]
async fn migrate_over_https_from_the_environment_never_prints_the_password() {
    let dir = std::env::temp_dir().join(unique("migrate_pki"));
    let pki = TestPki::create(&dir);
    let server = OwnClickHouse::start_https("migrate_https", &pki.server_cert, &pki.server_key);
    let password = "not-the-18.16-password-4242";
    let migrate = |ca: &std::path::Path, password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fleetstream"))
            .arg("migrate")
            .env("FLEETSTREAM_CLICKHOUSE_URL", format!("https://localhost:{}", server.https_port()))
            .env("FLEETSTREAM_CLICKHOUSE_DATABASE", unique("fs_migrate"))
            .env("FLEETSTREAM_CLICKHOUSE_PASSWORD", password)
            .env("FLEETSTREAM_CLICKHOUSE_CA_FILE", ca)
            .env("RUST_LOG", "debug")
            .output()
            .expect("run fleetstream migrate")
    };
    // 18.16's default user has no password: a wrong one is refused, with a message that must
    // not repeat it.
    let ok = migrate(&pki.ca, "");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}{}", String::from_utf8_lossy(&ok.stderr));
    assert!(stdout.contains("schema ready") && stdout.contains("https://localhost:"), "{stdout}");
    let refused = migrate(&pki.ca, password);
    let out = format!("{}{}", String::from_utf8_lossy(&refused.stdout), String::from_utf8_lossy(&refused.stderr));
    assert!(!refused.status.success(), "{out}");
    assert!(out.contains("Authentication failed") || out.contains("password"), "{out}");
    assert!(!out.contains(password), "the password leaked: {out}");
    // The wrong CA: refused before any credentials are sent.
    let wrong_ca = migrate(&pki.other_ca, password);
    let out = format!("{}{}", String::from_utf8_lossy(&wrong_ca.stdout), String::from_utf8_lossy(&wrong_ca.stderr));
    assert!(!wrong_ca.status.success());
    assert!(out.contains("invalid peer certificate"), "{out}");
    assert!(!out.contains(password), "the password leaked: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kafka settings that cannot work stop `fleetstream ingest` at once, naming the flag, without
/// printing the password.
#[test]
fn ingest_refuses_kafka_settings_that_cannot_work() {
    let password = "kafka-secret-777";
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fleetstream"))
        .arg("ingest")
        .env("FLEETSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        .env("FLEETSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        .env("FLEETSTREAM_KAFKA_SASL_PASSWORD", password)
        .env("FLEETSTREAM_INGEST_LISTEN", "127.0.0.1:0")
        .env("FLEETSTREAM_OSMAND_LISTEN", "")
        .output()
        .expect("run fleetstream ingest");
    let out = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("--kafka-sasl-mechanism SCRAM-SHA-512 needs --kafka-sasl-username"), "{out}");
    assert!(!out.contains(password), "{out}");
}
