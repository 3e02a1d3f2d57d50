//! Live streams (`/v1/stream/positions`, `/v1/stream/events`) on the real broker and ClickHouse:
//! positions and events posted through ingest arrive filtered, in the output contract; a client
//! resumes from any id with exactly the messages after it; a client that never reads is dropped
//! and counted while another keeps receiving; tokens, the stream bound and bad parameters.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use fleetstream_schemas::outputs::{ENRICHED_POSITION_JSON_SCHEMA, GEOFENCE_EVENT_JSON_SCHEMA};
use serde_json::Value;
use support::sse::{Msg, Sse};
use support::traffic::{FENCE_WEST_LON, fix_json, put_east_fence};
use support::{Pipeline, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(client: &reqwest::Client, pipeline: &Pipeline, fixes: &[Value]) {
    let response = client.post(format!("{}/v1/positions", pipeline.ingest_url)).json(fixes).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["rejected"], 0, "{report}");
}

/// `devices` devices of `prefix` crossing the east fence, fixes `from..to` of each.
fn fixes(prefix: &str, devices: usize, from: i64, to: i64) -> Vec<Value> {
    let base_ms = fleetstream_schemas::time::now_millis() - 3_600_000;
    (from..to)
        .flat_map(|i| (0..devices).map(move |k| fix_json(&format!("{prefix}-{k}"), k, base_ms + i * 1_000, i)))
        .collect()
}

/// Posts a warm-up device's fixes across the fence until both streams deliver: the shared
/// consumers are on their topics and the processor has the fence.
async fn warm_up(client: &reqwest::Client, pipeline: &Pipeline, positions: &mut Sse, events: &mut Sse) {
    let mut i = 0;
    let mut seen = (false, false);
    while !(seen.0 && seen.1) {
        assert!(i < 600, "the streams delivered nothing for a minute");
        post(client, pipeline, &fixes("warm", 1, i, i + 10)).await;
        i += 10;
        seen.0 |= !positions.drain(Duration::from_millis(50)).await.is_empty();
        seen.1 |= !events.drain(Duration::from_millis(50)).await.is_empty();
    }
    positions.drain(Duration::from_millis(500)).await;
    events.drain(Duration::from_millis(500)).await;
}

fn is_ours(prefix: &str) -> impl Fn(&Msg) -> bool + '_ {
    move |m| m.device().starts_with(&format!("{prefix}-"))
}

fn keys(messages: &[Msg]) -> Vec<String> {
    messages.iter().map(Msg::key).collect()
}

fn assert_no_repeats(messages: &[Msg], what: &str) {
    let unique: BTreeSet<String> = keys(messages).into_iter().collect();
    assert_eq!(unique.len(), messages.len(), "{what}: a message came twice");
}

fn validator(schema: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&serde_json::from_str(schema).unwrap()).unwrap()
}

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_deliver_filtered_and_resume_without_gaps() {
    let pipeline = Pipeline::start("stream").await;
    put_east_fence(&pipeline.store).await;
    let client = reqwest::Client::new();
    let api = pipeline.api_url.clone();
    let positions_url = format!("{api}/v1/stream/positions");
    let events_url = format!("{api}/v1/stream/events");

    let mut all = Sse::open(&client, &positions_url, None).await;
    let mut all_events = Sse::open(&client, &events_url, None).await;
    warm_up(&client, &pipeline, &mut all, &mut all_events).await;
    let mut one = Sse::open(&client, &format!("{positions_url}?device=st-1&device=st-2"), None).await;
    let east = format!("{FENCE_WEST_LON},40,-73,41");
    let mut in_box = Sse::open(&client, &format!("{positions_url}?bbox={east}"), None).await;
    let mut exits = Sse::open(&client, &format!("{events_url}?kind=exit"), None).await;

    // 4 devices x 30 fixes, each crossing the fence three times each way.
    let posted = fixes("st", 4, 0, 30);
    for chunk in posted.chunks(40) {
        post(&client, &pipeline, chunk).await;
    }
    let ours = is_ours("st");
    let got = all.until(WAIT, "every position", |m| m.iter().filter(|m| ours(m)).count() >= posted.len()).await;
    let got: Vec<Msg> = got.into_iter().filter(|m| ours(m)).collect();
    assert_no_repeats(&got, "all positions");
    let contract = validator(ENRICHED_POSITION_JSON_SCHEMA);
    for m in &got {
        assert_eq!(m.event, "position");
        assert!(m.id.as_deref().is_some_and(|id| id.starts_with("p/")), "{m:?}");
        assert!(contract.is_valid(&m.data), "{}", m.data);
    }
    // Each device's positions in fix order.
    let mut last: HashMap<String, i64> = HashMap::new();
    for m in &got {
        let fix = m.data["fix_time_ms"].as_i64().unwrap();
        assert!(last.insert(m.device().to_string(), fix).is_none_or(|before| before < fix), "out of order: {m:?}");
    }

    let of_two = one.until(WAIT, "st-1 and st-2", |m| m.len() >= 60).await;
    assert!(of_two.iter().all(|m| m.device() == "st-1" || m.device() == "st-2"), "device filter");
    assert_no_repeats(&of_two, "device filter");
    let east_count = got.iter().filter(|m| m.data["lon"].as_f64().unwrap() >= FENCE_WEST_LON).count();
    assert_eq!(east_count, posted.len() / 2, "half the fixes are east");
    let boxed =
        in_box.until(WAIT, "positions in the box", |m| m.iter().filter(|m| ours(m)).count() >= east_count).await;
    assert!(boxed.iter().all(|m| m.data["lon"].as_f64().unwrap() >= FENCE_WEST_LON), "bbox filter");

    // Events: every one on the topic for our devices (each device enters at fixes 5, 15 and 25
    // and leaves at 10 and 20); the exit-only stream gets the exits.
    let kafka = &pipeline.kafka;
    let topic_events: Vec<Value> = eventually("every event on the topic", WAIT, || async move {
        let events: Vec<Value> = support::read_topic(&kafka.brokers, &kafka.events_topic)
            .iter()
            .map(|m| serde_json::from_slice::<Value>(m).unwrap())
            .filter(|e| e["device_id"].as_str().unwrap().starts_with("st-"))
            .collect();
        if events.len() >= 20 { Ok(events) } else { Err(format!("{} of 20", events.len())) }
    })
    .await;
    let exit_count = topic_events.iter().filter(|e| e["kind"] == "exit").count();
    assert_eq!(exit_count, 8, "{topic_events:?}");
    let events =
        all_events.until(WAIT, "every event", |m| m.iter().filter(|m| ours(m)).count() >= topic_events.len()).await;
    let events: Vec<Msg> = events.into_iter().filter(|m| ours(m)).collect();
    let contract = validator(GEOFENCE_EVENT_JSON_SCHEMA);
    assert!(events.iter().all(|m| m.event == "geofence" && contract.is_valid(&m.data)), "{events:?}");
    let only_exits = exits.until(WAIT, "exits", |m| m.iter().filter(|m| ours(m)).count() >= exit_count).await;
    assert!(only_exits.iter().all(|m| m.data["kind"] == "exit"), "kind filter");

    // A filtered resume through the parameter (a browser's new EventSource).
    let id = of_two[9].id.clone().unwrap();
    let mut filtered = Sse::open(&client, &format!("{positions_url}?device=st-1&last_event_id={id}"), None).await;
    let want: Vec<String> = keys(&of_two[10..]).into_iter().filter(|k| k.starts_with("st-1@")).collect();
    let again = filtered.until(WAIT, "st-1 after the id", |m| m.len() >= want.len()).await;
    assert_eq!(keys(&again), want);
    // The header wins over the parameter.
    let header_id = of_two[49].id.clone().unwrap();
    let both_url = format!("{positions_url}?device=st-1&last_event_id={id}");
    let mut both = Sse::open(&client, &both_url, Some(&header_id)).await;
    let after_header: Vec<String> = keys(&of_two[50..]).into_iter().filter(|k| k.starts_with("st-1@")).collect();
    let again = both.until(WAIT, "after the header's id", |m| m.len() >= after_header.len()).await;
    assert_eq!(keys(&again), after_header);

    // Resume from any id: exactly the messages after it (none twice, none missing), then live
    // ones.
    for k in [got.len() - 1, got.len() / 3, 0] {
        let id = got[k].id.clone().unwrap();
        let mut resumed = Sse::open(&client, &positions_url, Some(&id)).await;
        let want: BTreeSet<String> = keys(&got[k + 1..]).into_iter().collect();
        let again = resumed
            .until(WAIT, "the positions after the id", |m| m.iter().filter(|m| ours(m)).count() >= want.len())
            .await;
        let again: Vec<Msg> = again.into_iter().filter(|m| ours(m)).collect();
        assert_no_repeats(&again, "resumed");
        assert_eq!(keys(&again).into_iter().collect::<BTreeSet<_>>(), want, "after #{k}");
        let more = resumed.drain(Duration::from_millis(500)).await;
        assert!(more.iter().all(|m| !ours(m)), "nothing more after #{k}: {more:?}");
        if k == 0 {
            // Joined the live stream: new positions arrive, once.
            post(&client, &pipeline, &fixes("st", 4, 30, 35)).await;
            let live = resumed.until(WAIT, "live after resuming", |m| m.iter().filter(|m| ours(m)).count() >= 20).await;
            let live: Vec<Msg> = live.into_iter().filter(|m| ours(m)).collect();
            assert_no_repeats(&live, "live after resuming");
            assert!(resumed.drain(Duration::from_millis(500)).await.iter().all(|m| !ours(m)));
            // Resuming from the last of those gives nothing older.
            let last_id = live.last().unwrap().id.clone().unwrap();
            let mut latest = Sse::open(&client, &positions_url, Some(&last_id)).await;
            assert!(latest.drain(Duration::from_millis(1_000)).await.iter().all(|m| !ours(m)), "resumed at the end");
        }
    }

    // An id older than the topic: a gap notice, then everything kept.
    let mut ancient = Sse::open(&client, &positions_url, Some("p/0:999999999")).await;
    let first = ancient.next(WAIT).await.expect("a first message");
    assert_eq!(first.event, "gap", "{first:?}");
    assert!(first.id.is_none() && first.data["partitions"][0]["partition"].is_u64(), "{first:?}");
    let kept = ancient.next(WAIT).await.expect("the earliest messages kept");
    assert_eq!(kept.event, "position");
    drop(ancient);

    // Bad parameters and ids are refused by name.
    for (url, header, field) in [
        (format!("{positions_url}?bbox=1,2,3"), None, "bbox"),
        (format!("{positions_url}?bbox=-73,40,-74,41"), None, "bbox"),
        (format!("{positions_url}?kind=enter"), None, "kind"),
        (format!("{events_url}?kind=dwell"), None, "kind"),
        (format!("{positions_url}?device="), None, "device"),
        (format!("{positions_url}?colour=red"), None, "colour"),
        (format!("{positions_url}?last_event_id=nonsense"), None, "last_event_id"),
        (positions_url.clone(), Some("p/0:x"), "last-event-id"),
        (events_url.clone(), Some(id.as_str()), "last-event-id"),
    ] {
        let mut request = client.get(&url);
        if let Some(h) = header {
            request = request.header("last-event-id", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{url}: {body}");
    }

    // Shutting down ends the streams (the ones not read any more closed first: a client that
    // does not read holds a graceful shutdown up).
    drop((one, in_box, exits, all_events, filtered, both));
    let stop = tokio::spawn(pipeline.stop());
    assert!(all.drain(Duration::from_secs(20)).await.iter().all(|m| m.event == "position"));
    tokio::time::timeout(Duration::from_secs(30), stop).await.expect("stopped with streams open").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_reads_is_dropped_and_counted_while_others_receive() {
    let api_config = fleetstream_api::ApiConfig { stream_buffer: 1_024, ..fleetstream_api::ApiConfig::local() };
    let pipeline = Pipeline::start_with("streamslow", fleetstream_ingest::IngestConfig::local(), api_config).await;
    put_east_fence(&pipeline.store).await;
    let client = reqwest::Client::new();
    let api = pipeline.api_url.clone();
    let mut reader = Sse::open(&client, &format!("{api}/v1/stream/positions"), None).await;
    let mut events = Sse::open(&client, &format!("{api}/v1/stream/events"), None).await;
    warm_up(&client, &pipeline, &mut reader, &mut events).await;
    drop(events);
    // The reading client reads all the time, in a task of its own.
    let (seen, mut count) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        let mut n = 0;
        while let Some(m) = reader.next(Duration::from_secs(120)).await {
            if is_ours("slow")(&m) {
                n += 1;
                seen.send_replace(n);
            }
        }
    });

    // A client with a small receive window that never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4_096).unwrap();
    let mut stalled = socket.connect(api.trim_start_matches("http://").parse().unwrap()).await.unwrap();
    stalled.write_all(b"GET /v1/stream/positions HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n").await.unwrap();

    let dropped = r#"fleetstream_api_stream_clients_dropped_total{stream="positions",reason="lagged"} 1"#;
    let metrics_url = format!("{api}/metrics");
    let mut posted = 0;
    while !client.get(&metrics_url).send().await.unwrap().text().await.unwrap().contains(dropped) {
        assert!(posted < 100_000, "the client that never reads was not dropped after {posted} positions");
        let round = (posted / 50) as i64;
        let batch = fixes("slow", 50, round, round + 10);
        for chunk in batch.chunks(100) {
            post(&client, &pipeline, chunk).await;
        }
        posted += batch.len();
        // The reading client gets every position, round after round (so that it is never
        // further behind than a round, half the ring), while the other falls further behind.
        let within = tokio::time::timeout(WAIT, count.wait_for(|n| *n >= posted)).await.map(|_| ());
        assert!(within.is_ok(), "the reading client got {} of {posted} positions", *count.borrow());
    }
    // The dropped client's response has ended: reading it reaches the end of the connection.
    let mut sink = Vec::new();
    let read = tokio::time::timeout(WAIT, stalled.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the dropped client's connection is still open");
    assert!(String::from_utf8_lossy(&sink).contains("event: position"));
    let metrics = client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(dropped), "only the client that never read was dropped: {metrics}");
    assert!(metrics.contains(r#"fleetstream_api_streams_open{stream="positions"} 1"#), "{metrics}");
    reading.abort();
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_need_a_reader_token_and_are_bounded() {
    let token = "stream-reader-token-0123";
    let api_config = fleetstream_api::ApiConfig {
        read_tokens: Some(token.into()),
        max_streams: 2,
        ..fleetstream_api::ApiConfig::local()
    };
    let pipeline = Pipeline::start_with("streamauth", fleetstream_ingest::IngestConfig::local(), api_config).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/stream/positions", pipeline.api_url);
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let response = client.get(&url).bearer_auth("not-the-token-0123456").send().await.unwrap();
    assert_eq!(response.status(), 401);
    let first = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(first.status(), 200);
    // EventSource cannot send headers: the token as a parameter.
    let second = client.get(format!("{url}?access_token={token}")).send().await.unwrap();
    assert_eq!(second.status(), 200);
    let third = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["retry-after"], "1");
    let body: Value = third.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("2 streams are open"), "{body}");
    drop(first);
    let client_ref = &client;
    let url_ref = &url;
    eventually("a slot freed by a closed stream", Duration::from_secs(40), move || async move {
        match client_ref.get(url_ref).bearer_auth(token).send().await.unwrap().status().as_u16() {
            200 => Ok(()),
            other => Err(format!("status {other}")),
        }
    })
    .await;
    let metrics = client.get(format!("{}/metrics", pipeline.api_url)).send().await.unwrap().text().await.unwrap();
    let refused = r#"fleetstream_api_streams_refused_total{stream="positions"} "#;
    assert!(metrics.lines().any(|l| l.starts_with(refused) && !l.ends_with(" 0")), "{metrics}");
    drop(second);
    pipeline.stop().await;
}

/// A resumed stream lets go of its resume turn (and its own consumer) once it has caught up:
/// with one turn, clients resuming one after another, each staying connected, all catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caught_up_streams_let_go_of_their_resume_turn() {
    let api_config = fleetstream_api::ApiConfig { max_stream_resumes: 1, ..fleetstream_api::ApiConfig::local() };
    let pipeline = Pipeline::start_with("streamturn", fleetstream_ingest::IngestConfig::local(), api_config).await;
    put_east_fence(&pipeline.store).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/stream/positions", pipeline.api_url);
    let mut live = Sse::open(&client, &url, None).await;
    let mut events = Sse::open(&client, &format!("{}/v1/stream/events", pipeline.api_url), None).await;
    warm_up(&client, &pipeline, &mut live, &mut events).await;
    drop(events);
    post(&client, &pipeline, &fixes("turn", 2, 0, 5)).await;
    let ours = |messages: &[Msg]| messages.iter().filter(|m| is_ours("turn")(m)).cloned().collect::<Vec<_>>();
    let first_ten = ours(&live.until(WAIT, "ten positions live", |m| ours(m).len() >= 10).await);
    assert_no_repeats(&first_ten, "live");
    let from = first_ten[0].id.clone().expect("every position has an id");
    let after: BTreeSet<String> = keys(&first_ten[1..]).into_iter().collect();
    drop(live);
    let mut connected = Vec::new();
    for n in 0..3 {
        let mut resumed = Sse::open(&client, &url, Some(&from)).await;
        let got = ours(&resumed.until(WAIT, &format!("resumed client {n}"), |m| ours(m).len() >= 9).await);
        assert_no_repeats(&got, "resumed");
        assert_eq!(keys(&got).into_iter().collect::<BTreeSet<_>>(), after, "resumed client {n}");
        connected.push(resumed);
    }
    let metrics = client.get(format!("{}/metrics", pipeline.api_url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"fleetstream_api_stream_resumes_total{stream="positions"} 3"#), "{metrics}");
    drop(connected);
    pipeline.stop().await;
}
