//! The dashboard page in headless Chromium (Debian's `chromium`, installed by `scripts/test`)
//! against a running stack with real data: counters, fences and devices appear, from the live
//! endpoints the page polls. Then driven like a dispatcher would, over the DevTools protocol: a
//! click on a vehicle shows its registry details and its trail, the search finds it by name, the
//! fleet filter leaves only its fleet on the map, and a geofence event and an alert pushed over
//! the streams appear in the live events and the live alerts without a reload.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
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

    // Polling only: an open stream would keep virtual time from ever running out.
    let dom = rendered(&format!("{api}/?push=off"));
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
    assert!(dom.contains(r#"<section id="details" hidden="""#), "no vehicle selected: no details");
    interact(&pipeline, &fixes).await;
    pipeline.stop().await;
}

/// What a dispatcher does, in a real browser on the live page.
async fn interact(pipeline: &Pipeline, fixes: &[Fix]) {
    let (api, http) = (pipeline.api_url.as_str(), reqwest::Client::new());
    // The vehicle with the most fixes, named in the registry.
    let mut per_device: std::collections::BTreeMap<&str, usize> = Default::default();
    for f in fixes {
        *per_device.entry(f.device_id.as_str()).or_default() += 1;
    }
    let (busiest, n) = per_device.iter().max_by_key(|(_, n)| **n).map(|(d, n)| (d.to_string(), *n)).unwrap();
    let named =
        http.put(format!("{api}/v1/registry/{busiest}")).json(&json!({"name": "Harbor Pilot", "fleet": "pilots"}));
    assert_eq!(named.send().await.unwrap().status(), 200);
    // An alert rule the vehicle posted below breaks (loaded while the page is driven).
    let rule = json!({"kind": "overspeed", "speed_mps": 50, "device": "pushed-1"});
    let put = http.put(format!("{api}/v1/alert-rules/pushed-fast")).json(&rule).send().await.unwrap();
    assert_eq!(put.status(), 201);

    let mut page = browser::Page::open(&format!("{api}/?refresh_ms=500"));
    page.wait_for(
        "every vehicle on the map",
        &format!("document.querySelectorAll('#devices circle').length === {}", per_device.len()),
    );
    page.wait_for(
        "the registry name known",
        "document.querySelector('#filter-fleet option[value=\"pilots\"]') !== null",
    );

    // A click on the vehicle: its details and its trail.
    page.eval(&format!(
        "document.querySelector('#devices circle[data-id=\"{busiest}\"]').dispatchEvent(new MouseEvent('click', {{bubbles: true}}))"
    ));
    page.wait_for(
        "the trail drawn",
        "(document.getElementById('trail-line')?.getAttribute('points') || '').split(' ').length >= 2",
    );
    let details = page.eval(
        "Object.fromEntries([...document.querySelectorAll('#details dd')].map(dd => [dd.dataset.field, dd.textContent]))",
    );
    assert_eq!(
        (details["id"].as_str(), details["name"].as_str(), details["fleet"].as_str()),
        (Some(busiest.as_str()), Some("Harbor Pilot"), Some("pilots"))
    );
    assert!(details["last fix"].as_str().unwrap().contains("ago"), "{details}");
    assert!(details["speed"].is_string() && details["in fences"].is_string(), "{details}");
    let points =
        page.eval("document.getElementById('trail-line').getAttribute('points').split(' ').length").as_u64().unwrap();
    assert!(points as usize <= n, "the trail has {points} of the vehicle's {n} fixes");
    assert_eq!(page.eval("document.getElementById('details').hidden"), json!(false));
    assert_eq!(page.eval("document.querySelectorAll('#devices circle.selected').length"), json!(1));
    assert!(
        page.eval("location.search").as_str().unwrap().contains(&format!("device={busiest}")),
        "the view can be shared"
    );

    // The search, by name.
    page.eval(
        "const s = document.getElementById('search'); s.value = 'harbor pil'; s.dispatchEvent(new Event('input'))",
    );
    let found = page.eval("[...document.querySelectorAll('#matches li')].map(li => li.dataset.id)");
    assert_eq!(found, json!([busiest]), "the search finds it by name, and nothing else");

    // The fleet filter (the selected vehicle is in it).
    page.eval(
        "const f = document.getElementById('filter-fleet'); f.value = 'pilots'; f.dispatchEvent(new Event('change'))",
    );
    assert_eq!(page.eval("document.querySelectorAll('#devices circle').length"), json!(1));

    // Zoom in on the map: the view shrinks.
    let before = page.eval("document.getElementById('map').viewBox.baseVal.width").as_f64().unwrap();
    page.eval("document.getElementById('zoom-in').click()");
    let after = page.eval("document.getElementById('map').viewBox.baseVal.width").as_f64().unwrap();
    // The SVG keeps the view box in 32-bit floats.
    assert!((after - before / 2.0).abs() < before * 1e-5, "zoomed in by half: {before} -> {after}");

    // A vehicle entering a fence, far too fast: the event and the alert are pushed to the page
    // (polling lists no "live" rows).
    page.wait_for("the event stream open", "document.getElementById('status').textContent.includes('live')");
    let t = 1_760_000_000_000i64;
    let entering: String = [(40.70, -74.30), (40.58, -74.15)] // New Jersey waters, then Staten Island
        .iter()
        .enumerate()
        .map(|(i, (lat, lon))| {
            json!({"device_id": "pushed-1", "fix_time": t + i as i64 * 60_000, "lat": lat, "lon": lon}).to_string()
                + "\n"
        })
        .collect();
    let posted = http.post(format!("{}/v1/positions", pipeline.ingest_url)).body(entering).send().await.unwrap();
    assert_eq!(posted.status(), 200);
    page.wait_for(
        "the pushed event shown",
        "[...document.querySelectorAll('#events tr.live')].some(tr => tr.textContent.includes('pushed-1'))",
    );
    page.wait_for(
        "the pushed alert shown",
        "[...document.querySelectorAll('#alerts tr.live')].some(tr => tr.textContent.includes('pushed-1') \
         && tr.textContent.includes('overspeed'))",
    );
}

/// A headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
/// commands on its fd 3, answers on its fd 4, each a JSON text ended by a NUL byte).
mod browser {
    use std::fs::File;
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::FromRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    pub struct Page {
        chromium: Child,
        commands: File,
        answers: BufReader<File>,
        session: String,
        next_id: u64,
    }

    fn pipe() -> (i32, i32) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        (fds[0], fds[1])
    }

    impl Page {
        pub fn open(url: &str) -> Page {
            let chromium = std::env::var("FLEETSTREAM_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
            let (their_in, our_out) = pipe();
            let (our_in, their_out) = pipe();
            let mut command = Command::new(&chromium);
            command
                .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
                .args(["--disable-background-networking", "--remote-debugging-pipe", "about:blank"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::dup2(their_in, 3) < 0 || libc::dup2(their_out, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let chromium = command.spawn().unwrap_or_else(|e| panic!("run {chromium} (scripts/test installs it): {e}"));
            // SAFETY: descriptors this process made and owns from here on.
            let (commands, answers) = unsafe {
                libc::close(their_in);
                libc::close(their_out);
                (File::from_raw_fd(our_out), BufReader::new(File::from_raw_fd(our_in)))
            };
            let mut page = Page { chromium, commands, answers, session: String::new(), next_id: 0 };
            let target = page.call("Target.createTarget", json!({"url": url}), false);
            let attached =
                page.call("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}), false);
            page.session = attached["sessionId"].as_str().expect("a session").to_string();
            page
        }

        fn call(&mut self, method: &str, params: Value, in_session: bool) -> Value {
            self.next_id += 1;
            let mut message = json!({"id": self.next_id, "method": method, "params": params});
            if in_session {
                message["sessionId"] = json!(self.session);
            }
            let mut bytes = serde_json::to_vec(&message).unwrap();
            bytes.push(0);
            self.commands.write_all(&bytes).expect("chromium takes commands");
            loop {
                let mut raw = Vec::new();
                let read = self.answers.read_until(0, &mut raw).expect("chromium answers");
                assert!(read > 0, "chromium closed the pipe");
                raw.pop();
                let answer: Value = serde_json::from_slice(&raw).unwrap();
                if answer["id"] == self.next_id {
                    assert!(answer.get("error").is_none(), "{method}: {answer}");
                    return answer["result"].clone();
                }
            }
        }

        /// The value of a JavaScript expression in the page (promises awaited).
        pub fn eval(&mut self, expression: &str) -> Value {
            let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
            let result = tokio::task::block_in_place(|| self.call("Runtime.evaluate", params, true));
            assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
            result["result"]["value"].clone()
        }

        /// Waits (30 s at most) until `condition` holds in the page.
        pub fn wait_for(&mut self, what: &str, condition: &str) {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if self.eval(&format!("Boolean({condition})")) == json!(true) {
                    return;
                }
                let status = self.eval("document.getElementById('status')?.textContent");
                assert!(Instant::now() < deadline, "{what}: not so after 30 s (status: {status})");
                tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(100)));
            }
        }
    }

    impl Drop for Page {
        fn drop(&mut self) {
            let _ = self.chromium.kill();
            let _ = self.chromium.wait();
        }
    }
}
