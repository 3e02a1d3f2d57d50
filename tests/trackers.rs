//! The tracker ports over real TCP, on the real broker and ClickHouse: a frame is answered only
//! once its records are durable, whatever the reads were; a damaged frame is never answered, is
//! dead-lettered with the IMEI and closes the connection; a frame resent after a connection
//! dropped before its answer is stored once; while the broker is down, frames are not answered;
//! with `--require-registered`, only devices of the registry are taken.

mod support;

use std::time::Duration;

use fleetstream_ingest::{IngestConfig, Listeners};
use fleetstream_kafka::KafkaConfig;
use fleetstream_protocols::gt06::{self, Cell, Gps, Message, protocol};
use fleetstream_protocols::teltonika::{self, AvlPacket, AvlRecord, Codec, GpsElement, IoElements};
use fleetstream_schemas::dead_letter::DEAD_LETTER_JSON_SCHEMA;
use fleetstream_schemas::ids::derived_event_id;
use fleetstream_schemas::time::now_millis;
use support::{OwnBroker, Pipeline, eventually, query_one, read_contract_topic, read_topic, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

async fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Reads exactly `n` bytes, failing the test after 15 s.
async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(Duration::from_secs(15), stream.read_exact(&mut buf))
        .await
        .expect("an answer within 15 s")
        .expect("the connection stays open");
    buf
}

/// True when the server closed the connection without sending anything.
async fn closed_without_answer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
}

/// Rows stored for `device` (FINAL: a copy counts once).
async fn stored(pipeline: &Pipeline, device: &str) -> u64 {
    let sql = format!("SELECT count() FROM positions FINAL WHERE device_id = '{device}'");
    query_one(&pipeline.store, &sql).await
}

async fn wait_stored(pipeline: &Pipeline, device: &str, expected: u64) {
    eventually(&format!("{expected} positions of {device} stored"), WAIT, || async {
        let n = stored(pipeline, device).await;
        if n >= expected { Ok(n) } else { Err(format!("{n} rows")) }
    })
    .await;
}

/// A numeric expression of the row stored for `device` at `fix_ms`, as an integer.
async fn stored_value(pipeline: &Pipeline, expr: &str, device: &str, fix_ms: i64) -> u64 {
    let sql =
        format!("SELECT toUInt64({expr}) FROM positions FINAL WHERE device_id = '{device}' AND fix_time_ms = {fix_ms}");
    query_one(&pipeline.store, &sql).await
}

fn record(codec: Codec, fix_ms: i64, i: i32) -> AvlRecord {
    let io = IoElements { one: vec![(239, 1), (240, 1)], four: vec![(16, 1_000 + i as u32)], ..Default::default() };
    AvlRecord {
        timestamp_ms: fix_ms as u64,
        priority: 0,
        gps: GpsElement {
            lon: -740_060_000 + i,
            lat: 407_128_000 + i,
            altitude: 10,
            angle: 90,
            satellites: 9,
            speed: 36,
        },
        event_io: 0,
        generation_type: (codec == Codec::C16).then_some(7),
        io,
    }
}

fn packet(codec: Codec, first_fix_ms: i64, n: usize) -> Vec<u8> {
    let records = (0..n).map(|i| record(codec, first_fix_ms + i as i64 * 1000, i as i32)).collect();
    teltonika::encode_packet(&AvlPacket { codec, records }).unwrap()
}

async fn handshake(addr: &str, imei: &str) -> TcpStream {
    let (answer, stream) = handshake_answer(addr, imei).await;
    assert_eq!(answer, Some(teltonika::ACCEPT));
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn teltonika_frames_are_answered_once_durable_and_stored() {
    let pipeline = Pipeline::start("trk_teltonika").await;
    let addr = pipeline.teltonika_addr.clone();
    let imei = format!("35{}", &now_millis().to_string()[..13]);
    let t0 = now_millis() - 3_600_000;
    let mut s = handshake(&addr, &imei).await;

    // One record of each codec, then three in one codec 16 packet.
    s.write_all(&packet(Codec::C8, t0, 1)).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0, 0, 0, 1]);
    s.write_all(&packet(Codec::C8E, t0 + 10_000, 1)).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0, 0, 0, 1]);
    s.write_all(&packet(Codec::C16, t0 + 20_000, 3)).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0, 0, 0, 3]);

    // A frame cut across three reads, then two frames (and a ping) in one read.
    let frame = packet(Codec::C8, t0 + 30_000, 2);
    for part in [&frame[..3], &frame[3..20], &frame[20..]] {
        s.write_all(part).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(read_exact(&mut s, 4).await, [0, 0, 0, 2]);
    let two = [packet(Codec::C8E, t0 + 40_000, 1), vec![teltonika::PING], packet(Codec::C8, t0 + 50_000, 2)].concat();
    s.write_all(&two).await.unwrap();
    assert_eq!(read_exact(&mut s, 8).await, [0, 0, 0, 1, 0, 0, 0, 2]);
    wait_stored(&pipeline, &imei, 10).await;

    // Dropped before the answer, then resent on a new connection: stored once.
    let resent = packet(Codec::C8, t0 + 60_000, 2);
    s.write_all(&resent).await.unwrap();
    drop(s);
    let mut s = handshake(&addr, &imei).await;
    s.write_all(&resent).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0, 0, 0, 2]);
    wait_stored(&pipeline, &imei, 12).await;

    // A damaged CRC: no answer, the connection closed, a dead letter naming the IMEI.
    let mut bad = packet(Codec::C8, t0 + 70_000, 1);
    *bad.last_mut().unwrap() ^= 0xFF;
    s.write_all(&bad).await.unwrap();
    assert!(closed_without_answer(&mut s).await, "a damaged frame is not answered");
    let brokers = pipeline.kafka.brokers.clone();
    let dlq = pipeline.kafka.dlq_topic.clone();
    let letter = eventually("the damaged frame's dead letter", WAIT, || {
        let (brokers, dlq, imei) = (brokers.clone(), dlq.clone(), imei.clone());
        async move {
            let letters =
                tokio::task::spawn_blocking(move || read_contract_topic(&brokers, &dlq, DEAD_LETTER_JSON_SCHEMA))
                    .await
                    .unwrap();
            letters
                .iter()
                .find(|l| l["protocol"] == "teltonika" && l["raw"].as_str().unwrap_or("").contains(&imei))
                .cloned()
                .ok_or_else(|| format!("{} letters, none of {imei}", letters.len()))
        }
    })
    .await;
    assert_eq!(letter["field"], "crc");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stored(&pipeline, &imei).await, 12, "every record stored once, none of the damaged frame");

    // The stored values are the record's.
    assert_eq!(stored_value(&pipeline, "round(lat * 10000)", &imei, t0).await, 407_128);
    assert_eq!(stored_value(&pipeline, "round(-lon * 1000)", &imei, t0).await, 74_006);
    assert_eq!(stored_value(&pipeline, "round(ifNull(speed_mps, 0) * 10)", &imei, t0).await, 100);
    pipeline.stop().await;
}

fn location(fix_ms: i64) -> Message {
    Message::Location {
        protocol: protocol::LOCATION,
        gps: Gps {
            time: Gps::time_of(fix_ms).unwrap(),
            info: 0xC9,
            lat: (40.7128 * 1_800_000.0) as u32,
            lon: (74.006 * 1_800_000.0) as u32,
            speed: 36,
            // Positioned, north, west, course 90.
            course_status: 1 << 12 | 1 << 10 | 1 << 11 | 90,
        },
        cell: Cell { mcc: 310, mnc: 26, lac: 1, cell_id: 2 },
        rest: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gt06_login_location_and_heartbeat_are_answered() {
    let pipeline = Pipeline::start("trk_gt06").await;
    let imei = format!("86{}", &now_millis().to_string()[..13]);
    let frame = |m: &Message, serial: u16| gt06::encode_frame(&gt06::encode_message(m, serial));
    let t0 = (now_millis() / 1000 - 3_600) * 1000;

    // A location before the login is refused.
    let mut early = connect(&pipeline.gt06_addr).await;
    early.write_all(&frame(&location(t0), 1)).await.unwrap();
    assert!(closed_without_answer(&mut early).await);

    let mut s = connect(&pipeline.gt06_addr).await;
    s.write_all(&frame(&Message::Login { imei: imei.clone(), rest: vec![] }, 1)).await.unwrap();
    assert_eq!(read_exact(&mut s, 10).await, gt06::response(protocol::LOGIN, 1));
    let status = Message::Status { status: Default::default(), rest: vec![] };
    s.write_all(&frame(&status, 2)).await.unwrap();
    assert_eq!(read_exact(&mut s, 10).await, gt06::response(protocol::STATUS, 2));
    // Two locations in one read, each answered with its serial number.
    s.write_all(&[frame(&location(t0), 3), frame(&location(t0 + 5_000), 4)].concat()).await.unwrap();
    let answers = read_exact(&mut s, 20).await;
    assert_eq!(answers, [gt06::response(protocol::LOCATION, 3), gt06::response(protocol::LOCATION, 4)].concat());
    wait_stored(&pipeline, &imei, 2).await;
    assert_eq!(stored_value(&pipeline, "round(lat * 10000)", &imei, t0).await, 407_128);
    assert_eq!(stored_value(&pipeline, "round(-lon * 1000)", &imei, t0).await, 74_006);

    // A damaged packet: no answer, closed.
    let mut bad = frame(&location(t0 + 10_000), 5);
    let n = bad.len();
    bad[n - 4] ^= 0xFF;
    s.write_all(&bad).await.unwrap();
    assert!(closed_without_answer(&mut s).await);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_answer_while_the_broker_is_down_and_the_resend_is_taken_after() {
    let mut broker = OwnBroker::start("trk_outage");
    let kafka = KafkaConfig::with_topic_suffix(&broker.brokers(), &unique("trk_outage"));
    let config = IngestConfig { produce_timeout_ms: 3_000, ..IngestConfig::local() };
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let teltonika_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = teltonika_listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let listeners = Listeners { http, osmand: None, teltonika: Some(teltonika_listener), gt06: None };
    let ingest = tokio::spawn(fleetstream_ingest::serve(config, kafka.clone(), None, listeners, shutdown.clone()));

    let imei = "356307042441013";
    let t0 = now_millis() - 60_000;
    let mut s = handshake(&addr, imei).await;
    s.write_all(&packet(Codec::C8, t0, 1)).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0, 0, 0, 1]);

    broker.kill();
    let during = packet(Codec::C8, t0 + 1_000, 2);
    s.write_all(&during).await.unwrap();
    let waited = std::time::Instant::now();
    assert!(closed_without_answer(&mut s).await, "a frame the brokers cannot take is not answered");
    assert!(
        waited.elapsed() < Duration::from_secs(10),
        "closed within the produce timeout, took {:?}",
        waited.elapsed()
    );

    broker.restart();
    let answered = eventually("the resent frame answered after the broker is back", WAIT, || {
        let (addr, during) = (addr.clone(), during.clone());
        async move {
            let mut s = handshake(&addr, imei).await;
            s.write_all(&during).await.unwrap();
            let mut ack = [0u8; 4];
            match tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut ack)).await {
                Ok(Ok(_)) => Ok(ack),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_eq!(answered, [0, 0, 0, 2]);
    shutdown.cancel();
    ingest.await.unwrap().unwrap();

    let (brokers, topic) = (kafka.brokers.clone(), kafka.positions_topic.clone());
    let ids: std::collections::HashSet<String> = tokio::task::spawn_blocking(move || read_topic(&brokers, &topic))
        .await
        .unwrap()
        .iter()
        .map(|m| serde_json::from_slice::<serde_json::Value>(m).unwrap()["event_id"].as_str().unwrap().to_string())
        .collect();
    for fix in [t0, t0 + 1_000, t0 + 2_000] {
        assert!(ids.contains(&derived_event_id(imei, fix)), "{imei}@{fix} is in the topic: {ids:?}");
    }
}

/// Registers (or, with `delete`, removes) `device` through the API.
async fn registry(pipeline: &Pipeline, device: &str, delete: bool) {
    let url = format!("{}/v1/registry/{device}", pipeline.api_url);
    let client = reqwest::Client::new();
    let request = if delete { client.delete(url) } else { client.put(url).json(&serde_json::json!({})) };
    let status = request.send().await.unwrap().status();
    assert!(status.is_success(), "{status}");
}

/// The Teltonika handshake's answer to `imei`: `Some(byte)`, or `None` when the connection was
/// closed unanswered. Returns the connection too.
async fn handshake_answer(addr: &str, imei: &str) -> (Option<u8>, TcpStream) {
    let mut stream = connect(addr).await;
    stream.write_all(&teltonika::encode_imei(imei)).await.unwrap();
    let mut answer = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(15), stream.read(&mut answer)).await {
        Ok(Ok(1)) => (Some(answer[0]), stream),
        Ok(_) => (None, stream),
        Err(_) => panic!("no answer and not closed within 15 s"),
    }
}

/// `fleetstream_ingest_tcp_rejects_total` for `protocol` and `reason`.
async fn rejects(ingest_url: &str, protocol: &str, reason: &str) -> u64 {
    let text = reqwest::get(format!("{ingest_url}/metrics")).await.unwrap().text().await.unwrap();
    let series = format!(r#"fleetstream_ingest_tcp_rejects_total{{protocol="{protocol}",reason="{reason}"}} "#);
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |n| n.parse().unwrap())
}

fn login(imei: &str) -> Vec<u8> {
    gt06::encode_frame(&gt06::encode_message(&Message::Login { imei: imei.into(), rest: vec![] }, 1))
}

#[tokio::test(flavor = "multi_thread")]
async fn with_require_registered_only_registered_trackers_are_taken() {
    let config = IngestConfig { require_registered: true, registry_poll_ms: 200, ..IngestConfig::local() };
    let pipeline = Pipeline::start_with("trk_registered", config, fleetstream_api::ApiConfig::local()).await;
    let addr = pipeline.teltonika_addr.clone();
    let stamp = &now_millis().to_string()[..13];
    let (known, unknown) = (format!("35{stamp}"), format!("36{stamp}"));
    let (known_gt06, unknown_gt06) = (format!("86{stamp}"), format!("87{stamp}"));
    registry(&pipeline, &known, false).await;
    registry(&pipeline, &known_gt06, false).await;

    // Once ingest has loaded the registry (within a poll), the registered IMEI is taken...
    let mut s = eventually("the registered IMEI accepted", WAIT, || async {
        match handshake_answer(&addr, &known).await {
            (Some(teltonika::ACCEPT), s) => Ok(s),
            (answer, _) => Err(format!("answered {answer:?}")),
        }
    })
    .await;
    let t0 = now_millis() - 60_000;
    s.write_all(&packet(Codec::C8, t0, 2)).await.unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0, 0, 0, 2]);
    wait_stored(&pipeline, &known, 2).await;

    // ...an unknown one is answered 00 and closed (the known one may have been too, before the
    // registry loaded).
    let refused = rejects(&pipeline.ingest_url, "teltonika", "unregistered").await;
    let (answer, mut s) = handshake_answer(&addr, &unknown).await;
    assert_eq!(answer, Some(teltonika::REJECT));
    assert!(closed_without_answer(&mut s).await, "closed after the refusal");
    assert_eq!(rejects(&pipeline.ingest_url, "teltonika", "unregistered").await, refused + 1);

    // GT06: a registered login is answered, an unknown one is not, and closed.
    let mut s = connect(&pipeline.gt06_addr).await;
    s.write_all(&login(&known_gt06)).await.unwrap();
    assert_eq!(read_exact(&mut s, 10).await, gt06::response(protocol::LOGIN, 1));
    let mut s = connect(&pipeline.gt06_addr).await;
    s.write_all(&login(&unknown_gt06)).await.unwrap();
    assert!(closed_without_answer(&mut s).await, "an unknown login is not answered");
    assert_eq!(rejects(&pipeline.ingest_url, "gt06", "unregistered").await, 1);

    // HTTP is not concerned: tokens authorise it.
    let body = serde_json::json!({"device_id": unknown, "fix_time": t0, "lat": 40.7, "lon": -74.0});
    let response = reqwest::Client::new().post(format!("{}/v1/positions", pipeline.ingest_url)).json(&body);
    assert_eq!(response.send().await.unwrap().status(), 200);

    // A device removed from the registry is refused within a poll.
    registry(&pipeline, &known, true).await;
    eventually("the removed IMEI refused", WAIT, || async {
        match handshake_answer(&addr, &known).await {
            (Some(teltonika::REJECT), _) => Ok(()),
            (answer, _) => Err(format!("answered {answer:?}")),
        }
    })
    .await;
    pipeline.stop().await;
}

/// Ingest started while ClickHouse cannot be reached: until the registry loads, trackers are
/// closed unanswered (they retry), not told they are unknown; HTTP goes on.
#[tokio::test(flavor = "multi_thread")]
async fn trackers_are_closed_unanswered_until_the_registry_can_be_read() {
    let kafka = KafkaConfig::with_topic_suffix(&support::brokers(), &unique("trk_noregistry"));
    let config = IngestConfig { require_registered: true, registry_poll_ms: 200, ..IngestConfig::local() };
    let unreachable = fleetstream_storage::ClickHouseConfig {
        connect_timeout_ms: 500,
        ..fleetstream_storage::ClickHouseConfig::local("http://127.0.0.1:1", "fleetstream")
    };
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingest_url = format!("http://{}", http.local_addr().unwrap());
    let teltonika_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gt06_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, gt06_addr) =
        (teltonika_listener.local_addr().unwrap().to_string(), gt06_listener.local_addr().unwrap().to_string());
    let listeners = Listeners { http, osmand: None, teltonika: Some(teltonika_listener), gt06: Some(gt06_listener) };
    let shutdown = CancellationToken::new();
    let registry = Some(fleetstream_ingest::RegistryStore::Connect(unreachable));
    let ingest = tokio::spawn(fleetstream_ingest::serve(config, kafka, registry, listeners, shutdown.clone()));
    eventually("ingest ready", WAIT, || async {
        reqwest::get(format!("{ingest_url}/readyz")).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;

    let (answer, _) = handshake_answer(&addr, "356307042441013").await;
    assert_eq!(answer, None, "closed unanswered, not refused");
    let mut s = connect(&gt06_addr).await;
    s.write_all(&login("868120201234567")).await.unwrap();
    assert!(closed_without_answer(&mut s).await);
    assert_eq!(rejects(&ingest_url, "teltonika", "registry_unavailable").await, 1);
    assert_eq!(rejects(&ingest_url, "gt06", "registry_unavailable").await, 1);
    let body = serde_json::json!({"device_id": "phone-1", "fix_time": now_millis() - 1_000, "lat": 40.7, "lon": -74.0});
    let response = reqwest::Client::new().post(format!("{ingest_url}/v1/positions")).json(&body);
    assert_eq!(response.send().await.unwrap().status(), 200, "HTTP does not need the registry");
    shutdown.cancel();
    ingest.await.unwrap().unwrap();
}
