//! Ingest on the real broker: hostile input is refused by name and never reaches
//! `positions.raw`; the Traccar Client's OsmAnd requests are accepted with the right units;
//! tokens are enforced; rejected items land in the dead-letter topic.

mod support;

use std::time::Duration;

use fleetstream_ingest::IngestConfig;
use fleetstream_schemas::dead_letter::DEAD_LETTER_JSON_SCHEMA;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use support::{Pipeline, eventually, named_field, read_contract_topic, read_topic, topic_len};

/// One hostile request and what ingest must answer.
struct Case {
    name: &'static str,
    osmand: bool,
    method: Method,
    query: String,
    body: Vec<u8>,
    status: u16,
    field: &'static str,
}

fn json_case(name: &'static str, body: impl Into<Vec<u8>>, status: u16, field: &'static str) -> Case {
    Case { name, osmand: false, method: Method::POST, query: String::new(), body: body.into(), status, field }
}

fn osmand_case(name: &'static str, query: &str, status: u16, field: &'static str) -> Case {
    Case { name, osmand: true, method: Method::GET, query: query.into(), body: Vec::new(), status, field }
}

const T: &str = "1607389900250";

fn pos(extra: &str) -> String {
    format!(r#"{{"device_id":"d","fix_time":{T},"lat":40.7,"lon":-74.0{extra}}}"#)
}

fn corpus() -> Vec<Case> {
    let five_kb = "x".repeat(5 * 1024);
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let many_keys: Vec<String> = (0..100).map(|i| format!(r#""k{i}":{i}"#)).collect();
    vec![
        json_case("truncated JSON", r#"{"device_id":"d","fix_time":"#, 400, "fix_time"),
        json_case("truncated array", r#"[{"device_id":"d"},"#, 400, "body"),
        json_case("NaN latitude", format!(r#"{{"device_id":"d","fix_time":{T},"lat":NaN,"lon":1}}"#), 400, "lat"),
        json_case("Infinity longitude", format!(r#"{{"device_id":"d","fix_time":{T},"lat":1,"lon":Infinity}}"#), 400, "lon"),
        json_case("overflowing number", format!(r#"{{"device_id":"d","fix_time":{T},"lat":1e400,"lon":1}}"#), 400, "lat"),
        json_case("lat 91", format!(r#"{{"device_id":"d","fix_time":{T},"lat":91,"lon":1}}"#), 400, "lat"),
        json_case("lat -90.5", format!(r#"{{"device_id":"d","fix_time":{T},"lat":-90.5,"lon":1}}"#), 400, "lat"),
        json_case("lon -181", format!(r#"{{"device_id":"d","fix_time":{T},"lat":1,"lon":-181}}"#), 400, "lon"),
        json_case("empty array", "[]", 400, "body"),
        json_case("empty body", "", 400, "body"),
        json_case("whitespace body", " \n\t ", 400, "body"),
        json_case("10 MB body", vec![b' '; 10 * 1024 * 1024], 413, "body"),
        json_case("100k-item batch", format!("[{}]", vec!["{}"; 100_000].join(",")), 413, "body"),
        json_case("100k-line NDJSON", vec!["{}"; 100_000].join("\n"), 413, "body"),
        json_case("control character in device_id", format!(r#"{{"device_id":"a\u0007b","fix_time":{T},"lat":1,"lon":1}}"#), 400, "device_id"),
        json_case("5 KB device_id", format!(r#"{{"device_id":"{five_kb}","fix_time":{T},"lat":1,"lon":1}}"#), 400, "device_id"),
        json_case("empty device_id", format!(r#"{{"device_id":"","fix_time":{T},"lat":1,"lon":1}}"#), 400, "device_id"),
        json_case("numeric device_id", format!(r#"{{"device_id":17,"fix_time":{T},"lat":1,"lon":1}}"#), 400, "device_id"),
        json_case("string latitude", format!(r#"{{"device_id":"d","fix_time":{T},"lat":"40.7","lon":1}}"#), 400, "lat"),
        json_case("boolean longitude", format!(r#"{{"device_id":"d","fix_time":{T},"lat":1,"lon":true}}"#), 400, "lon"),
        json_case("duplicate key", format!(r#"{{"device_id":"d","fix_time":{T},"lat":1,"lat":2,"lon":1}}"#), 400, "lat"),
        json_case("fix time in 2099", r#"{"device_id":"d","fix_time":"2099-01-01T00:00:00Z","lat":1,"lon":1}"#, 400, "fix_time"),
        json_case("fix time in 1999", r#"{"device_id":"d","fix_time":"1999-06-01T00:00:00Z","lat":1,"lon":1}"#, 400, "fix_time"),
        json_case("fix time without offset", r#"{"device_id":"d","fix_time":"2020-12-08T01:00:00","lat":1,"lon":1}"#, 400, "fix_time"),
        json_case("fix time as float", r#"{"device_id":"d","fix_time":1607389900.5,"lat":1,"lon":1}"#, 400, "fix_time"),
        json_case("missing device_id", format!(r#"{{"fix_time":{T},"lat":1,"lon":1}}"#), 400, "device_id"),
        json_case("missing fix_time", r#"{"device_id":"d","lat":1,"lon":1}"#, 400, "fix_time"),
        json_case("missing lon", format!(r#"{{"device_id":"d","fix_time":{T},"lat":1}}"#), 400, "lon"),
        json_case("negative speed", pos(r#","speed":-1"#), 400, "speed"),
        json_case("heading 720", pos(r#","heading":720"#), 400, "heading"),
        json_case("satellites 300", pos(r#","satellites":300"#), 400, "satellites"),
        json_case("battery 150", pos(r#","battery":150"#), 400, "battery"),
        json_case("ignition as string", pos(r#","ignition":"on""#), 400, "ignition"),
        json_case("attributes as array", pos(r#","attributes":[1]"#), 400, "attributes"),
        json_case("attributes too large", pos(&format!(r#","attributes":{{"k":"{five_kb}"}}"#)), 400, "attributes"),
        json_case("attributes with 100 keys", pos(&format!(r#","attributes":{{{}}}"#, many_keys.join(","))), 400, "attributes"),
        json_case("deeply nested attributes", pos(&format!(r#","attributes":{{"k":{deep}}}"#)), 400, "attributes.k"),
        json_case("unknown field", pos(r#","colour":"red""#), 400, "colour"),
        json_case("empty event_id", pos(r#","event_id":"""#), 400, "event_id"),
        json_case("5 KB event_id", pos(&format!(r#","event_id":"{five_kb}""#)), 400, "event_id"),
        json_case("top-level null", "null", 400, "body"),
        json_case("top-level number", "42", 400, "body"),
        json_case("array of numbers", "[1,2,3]", 400, "body"),
        json_case("trailing garbage", format!("{} }}", pos("")), 400, "body"),
        json_case("invalid UTF-8", b"{\"device_id\":\"\xff\xfe\"}".to_vec(), 400, "body"),
        json_case("NDJSON of bad lines", format!("{}\n{}", pos(r#","speed":-5"#), "{oops}"), 400, "speed"),
        osmand_case("OsmAnd without lat", "id=d&timestamp=1607389900&lon=-74.0", 400, "lat"),
        osmand_case("OsmAnd without id", "timestamp=1607389900&lat=40.7&lon=-74.0", 400, "id"),
        osmand_case("OsmAnd lat 91", "id=d&timestamp=1607389900&lat=91&lon=-74.0", 400, "lat"),
        osmand_case("OsmAnd NaN", "id=d&timestamp=1607389900&lat=NaN&lon=-74.0", 400, "lat"),
        osmand_case("OsmAnd word for a number", "id=d&timestamp=1607389900&lat=40.7&lon=west", 400, "lon"),
        osmand_case("OsmAnd time in 2099", "id=d&timestamp=4070908800&lat=40.7&lon=-74.0", 400, "timestamp"),
        osmand_case("OsmAnd bad location pair", "id=d&location=40.7;-74.0", 400, "location"),
        osmand_case("OsmAnd negative speed", "id=d&lat=40.7&lon=-74.0&speed=-2", 400, "speed"),
        osmand_case("OsmAnd repeated id", "id=a&id=b&lat=40.7&lon=-74.0", 400, "id"),
        Case {
            name: "OsmAnd JSON truncated",
            osmand: true,
            method: Method::POST,
            query: String::new(),
            body: br#"{"device_id":"d","location":{"timestamp":"#.to_vec(),
            status: 400,
            field: "location.timestamp",
        },
        Case {
            name: "OsmAnd JSON latitude 95",
            osmand: true,
            method: Method::POST,
            query: String::new(),
            body: br#"{"device_id":"d","location":{"timestamp":"2020-12-08T01:00:00Z","coords":{"latitude":95,"longitude":1}}}"#.to_vec(),
            status: 400,
            field: "location.coords.latitude",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_inputs_are_refused_by_name_and_never_reach_the_topic() {
    let pipeline = Pipeline::start("hostile").await;
    let client = Client::new();
    let cases = corpus();
    assert!(cases.len() >= 40, "the corpus has {} inputs", cases.len());
    let mut mismatches = Vec::new();
    for case in &cases {
        let base = if case.osmand { &pipeline.osmand_url } else { &pipeline.ingest_url };
        let path = if case.osmand { format!("/?{}", case.query) } else { "/v1/positions".into() };
        let response = client
            .request(case.method.clone(), format!("{base}{path}"))
            .body(case.body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_else(|e| panic!("{}: answer is not JSON: {e}", case.name));
        let message = body["error"]["message"].as_str().or(body["errors"][0]["message"].as_str()).unwrap_or("");
        if status != case.status || named_field(&body) != case.field || message.is_empty() {
            mismatches
                .push(format!("{}: expected {} naming {:?}, got {status} {body}", case.name, case.status, case.field));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases answered wrongly:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    assert_eq!(
        topic_len(&pipeline.kafka.brokers, &pipeline.kafka.positions_topic),
        0,
        "nothing hostile reached positions.raw"
    );

    // Every refused request left at least one dead letter (the 10 MB body leaves one, cut short).
    let (brokers, dlq, wanted) = (&pipeline.kafka.brokers, &pipeline.kafka.dlq_topic, cases.len() as i64);
    eventually("a dead letter per refused request", Duration::from_secs(30), move || async move {
        let letters = topic_len(brokers, dlq);
        if letters >= wanted { Ok(()) } else { Err(format!("{letters} of {wanted} dead letters")) }
    })
    .await;
    let letters = read_contract_topic(&pipeline.kafka.brokers, &pipeline.kafka.dlq_topic, DEAD_LETTER_JSON_SCHEMA);
    let lat91 =
        letters.iter().find(|l| l["raw"].as_str().unwrap().contains(r#""lat":91"#)).expect("lat 91 dead letter");
    assert_eq!((lat91["field"].as_str(), lat91["protocol"].as_str()), (Some("lat"), Some("json")));
    assert!(letters.iter().all(|l| l["raw"].as_str().unwrap().len() <= 16 * 1024));

    let metrics = client.get(format!("{}/metrics", pipeline.ingest_url)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"fleetstream_ingest_positions_rejected_total{protocol="json",field="lat"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"field="other""#), "unknown field names are not label values: {metrics}");
    assert!(!metrics.contains("colour"), "{metrics}");
    pipeline.stop().await;
}

async fn wait_for_track(client: &Client, api: &str, device: &str, n: usize) -> Value {
    let url = format!("{api}/v1/devices/{device}/track?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z");
    let url = url.as_str();
    eventually(device, Duration::from_secs(60), move || async move {
        let track: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        if track["count"].as_u64().unwrap() as usize >= n { Ok(track) } else { Err(track.to_string()) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traccar_client_osmand_requests_read_back_with_normalised_units() {
    let pipeline = Pipeline::start("osmand").await;
    let client = Client::new();
    // As Traccar Client for Android sends it: POST, parameters in the query string, empty body.
    let query = "id=356938035643809&timestamp=1607389900&lat=40.689247&lon=-74.044502&speed=12.5&bearing=271.0&altitude=14.2&accuracy=6.0&batt=83.0&charge=true&hdop=0.8";
    let response = client
        .post(format!("{}/?{query}", pipeline.osmand_url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // OsmAnd itself: GET with location=lat,lon and an ISO time.
    let response = client
        .get(format!(
            "{}/?deviceid=osmand-1&timestamp=2020-12-08T01:11:41Z&location=40.5,-74.1&heading=90",
            pipeline.osmand_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The newer apps' JSON body, with a batch of two locations.
    let body = json!({"device_id": "phone-9", "location": [
        {"timestamp": "2020-12-08T01:11:40.500Z", "coords": {"latitude": 40.7, "longitude": -74.0, "speed": 3.0, "heading": -1, "accuracy": 5, "altitude": 3}, "battery": {"level": 0.5, "is_charging": true}, "is_moving": true, "odometer": 1200.0, "uuid": "loc-1"},
        {"timestamp": "2020-12-08T01:11:50.500Z", "coords": {"latitude": 40.701, "longitude": -74.0, "speed": 3.2, "heading": 10, "accuracy": 5, "altitude": 3}, "uuid": "loc-2"}
    ]});
    let response = client.post(format!("{}/", pipeline.osmand_url)).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["accepted"], 2, "{report}");

    let track = wait_for_track(&client, &pipeline.api_url, "356938035643809", 1).await;
    let p = &track["positions"][0];
    assert_eq!(p["fix_time"], "2020-12-08T01:11:40.000Z");
    assert_eq!((p["lat"].as_f64(), p["lon"].as_f64()), (Some(40.689247), Some(-74.044502)));
    assert!((p["speed"].as_f64().unwrap() - 12.5 * 1852.0 / 3600.0).abs() < 1e-9, "12.5 knots stored as m/s: {p}");
    assert_eq!(p["speed_derived"], false);
    assert_eq!(
        (p["heading"].as_f64(), p["altitude"].as_f64(), p["accuracy"].as_f64(), p["battery"].as_f64()),
        (Some(271.0), Some(14.2), Some(6.0), Some(83.0))
    );
    assert_eq!(p["attributes"], json!({"charge": true, "hdop": 0.8}));

    let track = wait_for_track(&client, &pipeline.api_url, "osmand-1", 1).await;
    assert_eq!(
        (track["positions"][0]["lat"].as_f64(), track["positions"][0]["heading"].as_f64()),
        (Some(40.5), Some(90.0))
    );

    let track = wait_for_track(&client, &pipeline.api_url, "phone-9", 2).await;
    let first = &track["positions"][0];
    assert_eq!(
        (first["event_id"].as_str(), first["speed"].as_f64(), first["heading"].as_f64()),
        (Some("loc-1"), Some(3.0), None)
    );
    assert_eq!((first["battery"].as_f64(), first["odometer"].as_f64()), (Some(50.0), Some(1200.0)));
    assert_eq!(first["attributes"], json!({"charge": true, "motion": true}));
    assert_eq!(track["positions"][1]["fix_time"], "2020-12-08T01:11:50.500Z");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_gate_devices_and_fleets() {
    let config = IngestConfig {
        tokens: Some("fleet-token-0123456789 fleet:harbor, truck1-token-0123456789 device:truck-1".into()),
        ..IngestConfig::local()
    };
    let pipeline = Pipeline::start_with("tokens", config, fleetstream_api::ApiConfig::local()).await;
    let client = Client::new();
    let url = format!("{}/v1/positions", pipeline.ingest_url);
    let body = |device: &str| format!(r#"{{"device_id":"{device}","fix_time":{T},"lat":40.7,"lon":-74.0}}"#);

    let response = client.post(&url).body(body("truck-1")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = client.post(&url).bearer_auth("wrong-token-0123456789").body(body("truck-1")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let response = client.post(&url).bearer_auth("truck1-token-0123456789").body(body("truck-1")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = client.post(&url).bearer_auth("truck1-token-0123456789").body(body("truck-2")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let report: Value = response.json().await.unwrap();
    assert_eq!(named_field(&report), "device_id");

    let response =
        client.post(&url).bearer_auth("fleet-token-0123456789").body(body("any-vessel")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // OsmAnd apps cannot send headers: the token may come as a parameter.
    let osmand = format!("{}/?id=truck-1&lat=40.7&lon=-74.0&timestamp=1607389900", pipeline.osmand_url);
    assert_eq!(client.get(&osmand).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        client.get(format!("{osmand}&token=truck1-token-0123456789")).send().await.unwrap().status(),
        StatusCode::OK
    );

    let (brokers, topic) = (&pipeline.kafka.brokers, &pipeline.kafka.positions_topic);
    eventually("the authorised positions in the topic", Duration::from_secs(30), move || async move {
        let produced = topic_len(brokers, topic);
        if produced >= 3 { Ok(()) } else { Err(format!("{produced} of 3")) }
    })
    .await;
    let devices: Vec<String> = read_topic(&pipeline.kafka.brokers, &pipeline.kafka.positions_topic)
        .iter()
        .map(|m| serde_json::from_slice::<Value>(m).unwrap()["device_id"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = devices.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["any-vessel", "truck-1", "truck-1"], "exactly the authorised positions were produced");
    pipeline.stop().await;
}
