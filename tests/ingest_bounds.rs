//! Ingest on the real broker, against amplification and leaked secrets: every path obeys the
//! batch limit, a request writes a bounded number of dead letters each holding its own item,
//! no token text reaches a topic, the token is checked before a large body is read, and every
//! 4xx has the one error shape. Also the OsmAnd details real apps depend on.

mod support;

use std::time::{Duration, Instant};

use fleetstream_ingest::IngestConfig;
use fleetstream_schemas::dead_letter::DEAD_LETTER_JSON_SCHEMA;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use support::{Pipeline, eventually, named_field, read_contract_topic, read_topic, topic_len};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "harbor-fleet-token-0123456789";
const OTHER_SECRET: &str = "someone-elses-secret-9876543210";

/// The pipeline with ingest requiring [`TOKEN`].
async fn start_with_token(tag: &str) -> Pipeline {
    let config = IngestConfig { tokens: Some(format!("{TOKEN} fleet:harbor")), ..IngestConfig::local() };
    Pipeline::start_with(tag, config, fleetstream_api::ApiConfig::local()).await
}

async fn metrics(pipeline: &Pipeline) -> String {
    let url = format!("{}/metrics", pipeline.ingest_url);
    Client::new().get(url).send().await.unwrap().text().await.unwrap()
}

/// The one message of `positions.raw`, once it is there.
async fn the_one_position(pipeline: &Pipeline) -> String {
    let (brokers, topic) = (&pipeline.kafka.brokers, &pipeline.kafka.positions_topic);
    eventually("the accepted position", Duration::from_secs(30), move || async move {
        if topic_len(brokers, topic) == 1 { Ok(()) } else { Err("not yet".into()) }
    })
    .await;
    String::from_utf8(read_topic(brokers, topic).remove(0)).unwrap()
}

/// An OsmAnd JSON body of `n` locations of `device`, each with its own `uuid`; `lat` for all.
fn osmand_json(device: &str, n: usize, lat: f64) -> Value {
    let locations: Vec<Value> = (0..n)
        .map(|i| {
            let timestamp = (1_607_389_900 + i).to_string();
            json!({"timestamp": timestamp, "coords": {"latitude": lat, "longitude": -74.0}, "uuid": format!("{device}-{i}")})
        })
        .collect();
    json!({"device_id": device, "location": locations})
}

/// Every dead letter in the topic once there are `n` of them, and no more than `n`.
async fn dead_letters(pipeline: &Pipeline, n: i64) -> Vec<Value> {
    let (brokers, dlq) = (&pipeline.kafka.brokers, &pipeline.kafka.dlq_topic);
    eventually("the dead letters", Duration::from_secs(30), move || async move {
        let letters = topic_len(brokers, dlq);
        if letters >= n { Ok(()) } else { Err(format!("{letters} of {n}")) }
    })
    .await;
    // Letters are queued without waiting: give a surplus the time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let letters = read_contract_topic(brokers, dlq, DEAD_LETTER_JSON_SCHEMA);
    assert_eq!(letters.len() as i64, n, "dead letters: {letters:#?}");
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn osmand_json_batches_are_bounded_and_bad_items_write_bounded_letters_of_their_own() {
    let pipeline = Pipeline::start("amplification").await;
    let client = Client::new();
    let url = format!("{}/", pipeline.osmand_url);

    let response = client.post(&url).json(&osmand_json("too-many", 10_001, 40.7)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "body", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("10000"), "the 413 names the limit: {body}");

    let bad = osmand_json("all-bad", 5_000, 95.0);
    let started = Instant::now();
    let response = client.post(&url).json(&bad).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let report: Value = response.json().await.unwrap();
    assert_eq!((report["accepted"].as_u64(), report["rejected"].as_u64()), (Some(0), Some(5_000)));
    assert_eq!(report["error"]["field"], "location.coords.latitude", "the one error shape on a 400 too");
    println!("5,000 bad locations answered in {:?}", started.elapsed());

    // One letter for the refused 10,001 (the body, cut), 100 for the first bad locations, one
    // summary for the other 4,900.
    let letters = dead_letters(&pipeline, 102).await;
    let bytes: usize = letters.iter().map(|l| l.to_string().len()).sum();
    assert!(bytes < 128 * 1024, "the DLQ grew by {bytes} bytes");
    let of_device = |device: &str| -> Vec<&Value> {
        letters.iter().filter(|l| l["raw"].as_str().unwrap().contains(&format!(r#""device_id":"{device}""#))).collect()
    };
    let too_many = of_device("too-many");
    assert_eq!(too_many.len(), 1);
    assert_eq!((too_many[0]["field"].as_str(), too_many[0]["raw_truncated"].as_bool()), (Some("body"), Some(true)));

    let items = of_device("all-bad");
    let mut uuids = Vec::new();
    for letter in &items {
        let raw: Value = serde_json::from_str(letter["raw"].as_str().unwrap()).expect("a letter is a body of its own");
        assert!(raw["location"].is_object(), "a letter carries one location: {raw}");
        assert!(letter["raw"].as_str().unwrap().len() < 200, "and only that: {letter}");
        assert_eq!(letter["field"], "location.coords.latitude");
        uuids.push(raw["location"]["uuid"].as_str().unwrap().to_string());
    }
    uuids.sort_by_key(|u| u.trim_start_matches("all-bad-").parse::<usize>().unwrap());
    let first_100: Vec<String> = (0..100).map(|i| format!("all-bad-{i}")).collect();
    assert_eq!(uuids, first_100, "the first 100 rejected locations have a letter each");
    let summary: Vec<&Value> = letters.iter().filter(|l| l["raw"] == "").collect();
    assert_eq!(summary.len(), 1, "{letters:#?}");
    assert!(summary[0]["message"].as_str().unwrap().starts_with("4900 more items"), "{}", summary[0]);

    let metrics = metrics(&pipeline).await;
    assert!(
        metrics.contains(r#"fleetstream_ingest_positions_rejected_total{protocol="osmand",field="location"} 5000"#),
        "every rejected item is still counted: {metrics}"
    );
    assert_eq!(topic_len(&pipeline.kafka.brokers, &pipeline.kafka.positions_topic), 0);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_token_text_reaches_a_topic_or_an_answer() {
    let pipeline = start_with_token("secrets").await;
    let client = Client::new();
    let osmand = &pipeline.osmand_url;
    let positions = format!("{}/v1/positions", pipeline.ingest_url);
    let form = "application/x-www-form-urlencoded";
    let mut answers = Vec::new();

    // Rejected, so dead-lettered: the token in the query in every spelling, in a form, in
    // JSON bodies by name and by value, and someone else's secret by name.
    for name in ["token", "TOKEN", "%74oken"] {
        let url = format!("{osmand}/?id=d&lat=91&lon=0&{name}={TOKEN}&password={OTHER_SECRET}");
        answers.push(answer(client.get(url), StatusCode::BAD_REQUEST).await);
    }
    let body = format!("id=d&lat=91&lon=0&token={TOKEN}&token={TOKEN}");
    answers.push(
        answer(client.post(format!("{osmand}/")).header("content-type", form).body(body), StatusCode::BAD_REQUEST)
            .await,
    );
    let json_body = json!({"device_id": "d", "token": TOKEN, "location": [{"timestamp": "1607389900",
        "coords": {"latitude": 95, "longitude": 0}, "extras": {"token": OTHER_SECRET, "note": TOKEN}}]});
    answers.push(
        answer(client.post(format!("{osmand}/")).bearer_auth(TOKEN).json(&json_body), StatusCode::BAD_REQUEST).await,
    );
    let item = json!({"device_id": "d", "fix_time": 1_607_389_900_000i64, "lat": 1, "lon": 1, "token": OTHER_SECRET});
    answers.push(answer(client.post(&positions).bearer_auth(TOKEN).json(&item), StatusCode::BAD_REQUEST).await);
    let item = json!({"device_id": "d", "fix_time": 1_607_389_900_000i64, "lat": TOKEN, "lon": 1});
    answers.push(answer(client.post(&positions).bearer_auth(TOKEN).json(&item), StatusCode::BAD_REQUEST).await);
    // Accepted: the token parameters are not attributes.
    let url = format!("{osmand}/?id=kept&lat=40.7&lon=-74&timestamp=1607389900&Token={TOKEN}&api_token={OTHER_SECRET}");
    answers.push(answer(client.get(url), StatusCode::OK).await);

    for answer in &answers {
        assert!(!answer.contains(TOKEN) && !answer.contains(OTHER_SECRET), "an answer repeats a secret: {answer}");
    }
    let letters = dead_letters(&pipeline, 7).await;
    for letter in &letters {
        let text = letter.to_string();
        assert!(!text.contains(TOKEN) && !text.contains(OTHER_SECRET), "a dead letter keeps a secret: {text}");
    }
    let raws: Vec<&str> = letters.iter().map(|l| l["raw"].as_str().unwrap()).collect();
    for expected in [
        "id=d&lat=91&lon=0&token=<redacted>&password=<redacted>",
        "id=d&lat=91&lon=0&TOKEN=<redacted>&password=<redacted>",
        "id=d&lat=91&lon=0&%74oken=<redacted>&password=<redacted>",
        "id=d&lat=91&lon=0&token=<redacted>&token=<redacted>",
    ] {
        assert!(raws.contains(&expected), "{expected} not among {raws:#?}");
    }

    let stored = the_one_position(&pipeline).await;
    assert!(stored.contains(r#""device_id":"kept""#), "{stored}");
    assert!(!stored.contains(TOKEN) && !stored.contains(OTHER_SECRET) && !stored.contains("oken"), "{stored}");
    pipeline.stop().await;
}

/// Accepted positions are stored (`positions.raw`, then ClickHouse) with their attributes, so
/// the secrets that are kept out of dead letters must be kept out of attributes too: a field
/// named like a secret at any depth of the JSON `attributes` or of the apps' `extras`, and the
/// text of the token the request presented wherever it appears. Today only the OsmAnd
/// parameters and the top level of `extras` are filtered: fleetstream's own JSON keeps
/// `attributes.token`, `extras` keeps a nested one, and the presented token is kept as a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_token_text_reaches_a_topic_in_accepted_attributes() {
    let pipeline = start_with_token("secret_attributes").await;
    let client = Client::new();
    let positions = format!("{}/v1/positions", pipeline.ingest_url);
    let own = json!([
        {"device_id": "own-by-name", "fix_time": 1_607_389_900_000i64, "lat": 1, "lon": 1,
         "attributes": {"token": OTHER_SECRET, "config": {"api_token": OTHER_SECRET}}},
        {"device_id": "own-by-value", "fix_time": 1_607_389_900_000i64, "lat": 1, "lon": 1,
         "attributes": {"note": format!("auth={TOKEN}")}},
    ]);
    answer(client.post(&positions).bearer_auth(TOKEN).json(&own), StatusCode::OK).await;
    let apps = json!({"device_id": "apps", "location": {"timestamp": "1607389900",
        "coords": {"latitude": 1, "longitude": 1}, "extras": {"auth": {"password": OTHER_SECRET}, "note": TOKEN}}});
    answer(client.post(format!("{}/", pipeline.osmand_url)).bearer_auth(TOKEN).json(&apps), StatusCode::OK).await;

    let (brokers, topic) = (&pipeline.kafka.brokers, &pipeline.kafka.positions_topic);
    eventually("the three accepted positions", Duration::from_secs(30), move || async move {
        if topic_len(brokers, topic) == 3 { Ok(()) } else { Err("not yet".into()) }
    })
    .await;
    for message in read_topic(brokers, topic) {
        let text = String::from_utf8(message).unwrap();
        assert!(!text.contains(TOKEN) && !text.contains(OTHER_SECRET), "a secret reached positions.raw: {text}");
    }
    pipeline.stop().await;
}

/// The text of the answer to `request`, which must have `status`.
async fn answer(request: reqwest::RequestBuilder, status: StatusCode) -> String {
    let response = request.send().await.unwrap();
    let (got, url) = (response.status(), response.url().clone());
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{url}: {text}");
    text
}

/// An answer read off the socket.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    /// Header lines, lower case.
    headers: String,
    body: Value,
}

/// Sends `head` (request line and headers) and `body`, then stops sending, the rest of the
/// body it announced never coming, and reads the answer. A server that reads the whole body
/// before answering never answers: `None` after 5 s.
async fn answer_without_the_rest(url: &str, head: &str, body: &[u8]) -> Option<RawAnswer> {
    let mut stream = tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 8192];
        // Until the server closes (an error is a reset after the answer: what came is kept).
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    read.ok()?;
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no answer in {text:?}"));
    Some(RawAnswer {
        status: head[9..12].parse().unwrap(),
        headers: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}")),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_token_is_checked_before_a_large_body_is_read() {
    let pipeline = start_with_token("body_auth").await;
    let client = Client::new();
    let osmand = &pipeline.osmand_url;
    let form = "application/x-www-form-urlencoded";

    // The apps' form post may carry the token in the body.
    let body = format!("id=form-1&lat=40.7&lon=-74.0&timestamp=1607389900&token={TOKEN}");
    let response = client.post(format!("{osmand}/")).header("content-type", form).body(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
    let body = "id=form-2&lat=40.7&lon=-74.0&token=wrong-token-0123456789";
    let response = client.post(format!("{osmand}/")).header("content-type", form).body(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // 5 MB announced, 1 KB sent: answered at once, so the rest was never waited for.
    let announced = 5 * 1024 * 1024;
    let cases = [
        ("no token, 5 MB announced", String::new(), format!("Content-Length: {announced}\r\n"), vec![b'a'; 1024]),
        (
            "a wrong token in the query",
            "?token=wrong-token-0123456789".into(),
            format!("Content-Length: {announced}\r\n"),
            vec![b'a'; 1024],
        ),
        // Chunked, so no length to go by: no more than the form prefix is read.
        ("no token, chunked", String::new(), "Transfer-Encoding: chunked\r\n".into(), {
            let mut chunk = format!("{:x}\r\n", 64 * 1024 + 1).into_bytes();
            chunk.extend(vec![b'a'; 64 * 1024 + 1]);
            chunk.extend(b"\r\n");
            chunk
        }),
    ];
    for (name, query, length, sent) in cases {
        let head = format!("POST /{query} HTTP/1.1\r\nHost: osmand\r\nContent-Type: {form}\r\n{length}\r\n");
        let started = Instant::now();
        let answer = answer_without_the_rest(osmand, &head, &sent)
            .await
            .unwrap_or_else(|| panic!("{name}: no answer before the whole body came"));
        assert_eq!(answer.status, 401, "{name}: {answer:?}");
        assert_eq!(answer.body["error"]["field"], "token", "{name}: {answer:?}");
        assert!(answer.headers.contains("connection: close"), "{name}: {answer:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{name}: answered after {:?}", started.elapsed());
    }

    let metrics = metrics(&pipeline).await;
    assert!(
        metrics.contains(r#"fleetstream_ingest_positions_rejected_total{protocol="osmand",field="token"} 4"#),
        "every refusal is counted: {metrics}"
    );
    // Refusals of unauthenticated requests write no dead letter: only this rejected one does.
    let url = format!("{osmand}/?id=form-3&lat=91&lon=0&token={TOKEN}");
    assert_eq!(client.get(url).send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    let letters = dead_letters(&pipeline, 1).await;
    assert_eq!(letters[0]["raw"], "id=form-3&lat=91&lon=0&token=<redacted>");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn osmand_location_errors_and_network_fixes_over_http() {
    let pipeline = Pipeline::start("osmand_details").await;
    let client = Client::new();
    let osmand = &pipeline.osmand_url;

    let response = client.get(format!("{osmand}/?id=d&location=91,0")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(named_field(&body), "location", "{body}");
    assert_eq!(body["errors"][0]["field"], "location", "{body}");

    // As the apps send network fixes: one `cell` per tower, one `wifi` per access point.
    let query = "id=net-1&timestamp=1607389900&lat=40.7&lon=-74.0&cell=310,410,7033,17811,-70\
                 &cell=310,410,7033,17812,-81&wifi=aa-bb-cc-dd-ee-ff,-60&wifi=11-22-33-44-55-66,-72";
    let response = client.post(format!("{osmand}/?{query}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
    let many: String = (0..33).map(|i| format!("&wifi=aa-bb-cc-dd-ee-{i:02x},-60")).collect();
    let response = client.get(format!("{osmand}/?id=net-2&lat=40.7&lon=-74.0{many}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(named_field(&response.json().await.unwrap()), "wifi");

    let stored: Value = serde_json::from_str(&the_one_position(&pipeline).await).unwrap();
    assert_eq!(
        stored["attributes"],
        json!({"cell": ["310,410,7033,17811,-70", "310,410,7033,17812,-81"],
               "wifi": ["aa-bb-cc-dd-ee-ff,-60", "11-22-33-44-55-66,-72"]})
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_4xx_has_the_one_error_shape() {
    let pipeline = start_with_token("shapes").await;
    let client = Client::new();
    let ingest = &pipeline.ingest_url;
    let position = json!({"device_id": "d", "fix_time": 1_607_389_900_000i64, "lat": 91, "lon": 1});
    let batch = Value::Array(vec![position.clone(); 10_001]);
    let cases = [
        ("unknown path", client.get(format!("{ingest}/v1/nothing?token=x")), 404, None),
        ("wrong method", client.delete(format!("{ingest}/v1/positions")), 405, None),
        ("post to metrics", client.post(format!("{ingest}/metrics")), 405, None),
        ("no token", client.post(format!("{ingest}/v1/positions")).json(&position), 401, Some("token")),
        (
            "too many items",
            client.post(format!("{ingest}/v1/positions")).bearer_auth(TOKEN).json(&batch),
            413,
            Some("body"),
        ),
        (
            "nothing valid",
            client.post(format!("{ingest}/v1/positions")).bearer_auth(TOKEN).json(&position),
            400,
            Some("lat"),
        ),
        (
            "osmand without token",
            client.get(format!("{}/any/path?id=d&lat=1&lon=1", pipeline.osmand_url)),
            401,
            Some("token"),
        ),
    ];
    for (name, request, status, field) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{name}");
        if status == 405 {
            assert!(response.headers().contains_key("allow"), "{name}: {:?}", response.headers());
        }
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(content_type, "application/json", "{name}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {body}");
        assert_eq!(body["error"]["field"].as_str(), field, "{name}: {body}");
    }
    pipeline.stop().await;
}
