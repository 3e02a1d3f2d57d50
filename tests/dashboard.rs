//! The dashboard page in headless Chromium (Debian's `chromium`, installed by `scripts/test`)
//! against a running stack with real data: counters, fences and devices appear, from the live
//! endpoints the page polls.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{Fix, Pipeline, data_dir, eventually, read_fixes};

/// The page's DOM after its scripts ran (`--dump-dom` waits out `--virtual-time-budget`,
/// network included).
fn rendered(url: &str) -> String {
    let chromium = std::env::var("FLEETSTREAM_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let output = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--no-first-run",
            "--virtual-time-budget=8000",
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("run {chromium} (scripts/test installs Debian's chromium): {e}"));
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_devices_fences_and_counters() {
    let pipeline = Pipeline::start("dashboard").await;
    let http = reqwest::Client::new();
    let counties = std::fs::read_to_string(data_dir().join("nyc-area-counties.geojson")).unwrap();
    let imported = http
        .post(format!("{}/v1/fences", pipeline.api_url))
        .header("content-type", "application/json")
        .body(counties)
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200, "{}", imported.text().await.unwrap());

    let fixes = read_fixes("nyharbor-2020-12-08.csv.gz", 3_000);
    let devices: BTreeSet<&str> = fixes.iter().map(|f| f.device_id.as_str()).collect();
    let body: String = fixes.iter().map(|f: &Fix| f.to_json().to_string() + "\n").collect();
    let posted = http.post(format!("{}/v1/positions", pipeline.ingest_url)).body(body).send().await.unwrap();
    assert_eq!(posted.status(), 200);
    let (http, api, expected, posted) = (&http, pipeline.api_url.as_str(), devices.len() as u64, fixes.len() as u64);
    let summary: Value = eventually("every device in the live summary", Duration::from_secs(60), move || async move {
        let summary: Value = http.get(format!("{api}/v1/live/summary")).send().await.unwrap().json().await.unwrap();
        if summary["devices"]["total"].as_u64() == Some(expected)
            && !summary["fences"].as_array().unwrap().is_empty()
            && summary["pipeline"]["positions_last_minute"].as_u64() >= Some(posted)
        {
            Ok(summary)
        } else {
            Err(summary.to_string())
        }
    })
    .await;

    let dom = rendered(&format!("{api}/"));
    let total = format!(r#"id="count-total">{}<"#, devices.len());
    assert!(dom.contains(&total), "the device counter shows {}: {dom}", devices.len());
    let offline = format!(r#"id="count-offline">{}<"#, summary["devices"]["offline"]);
    assert!(dom.contains(&offline), "offline counter: {dom}");
    assert_eq!(count(&dom, r#"class="fence""#), 15, "one outline per county");
    // The pipeline figures: every position posted was written within the last minute.
    let lag = summary["pipeline"]["lag_ms_max"].as_i64().unwrap();
    assert!((0..60_000).contains(&lag), "ingest-to-store lag {lag} ms");
    assert!(
        !dom.contains(r#"id="positions-per-minute">–<"#) && !dom.contains(r#"id="lag">–<"#),
        "pipeline counters shown"
    );
    assert_eq!(count(&dom, r#"class="device "#), devices.len(), "one dot per device");
    let occupied = summary["fences"].as_array().unwrap().len();
    assert_eq!(count(&dom, r#"<td class="n">"#), occupied, "one occupancy row per occupied fence");
    assert!(dom.contains("Richmond County, New York") || dom.contains("Hudson County, New Jersey"), "fence names");
    assert!(count(&dom, r#"<td class="enter">enter</td>"#) > 0, "recent enter events listed");
    assert!(!dom.contains(r#"id="status" class="error""#), "the page reports no error");
    pipeline.stop().await;
}
