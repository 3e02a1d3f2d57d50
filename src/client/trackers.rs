//! `fleetstream simulate --protocol teltonika|gt06`: the synthetic fleet as hardware trackers,
//! one TCP connection per vehicle. Each vehicle logs in with an IMEI of its own, sends a frame of
//! one record every interval and waits for the answer (which ingest sends only once the record is
//! durable), measuring how long that took; a connection that fails is opened again a second
//! later, and the unanswered frame sent again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use fleetstream_protocols::gt06::{self, Cell, Gps, Message, protocol};
use fleetstream_protocols::teltonika::{self, AvlPacket, AvlRecord, Codec, GpsElement, IoElements};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::simulate::{Fleet, SimulateConfig, Vehicle, to_lat_lon};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// fleetstream's JSON over HTTP.
    Json,
    /// Teltonika codec 8 over TCP.
    Teltonika,
    /// GT06 over TCP.
    Gt06,
}

/// How long a frame may wait for its answer before the connection is opened again.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers and their latencies, shared by every vehicle.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    failures: u64,
}

/// The IMEI of vehicle `i`: 15 digits, distinct per vehicle and seed.
pub fn imei(seed: u64, i: usize) -> String {
    format!("35{:05}{:08}", seed % 100_000, i)
}

pub async fn simulate(
    config: SimulateConfig,
    protocol: Protocol,
    addr: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let stop = shutdown.child_token();
    if let Some(d) = config.duration_s {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(d)).await;
            stop.cancel();
        });
    }
    eprintln!(
        "simulating {} {protocol:?} trackers, a frame each every {} s, to {addr}",
        config.vehicles, config.interval_s
    );
    let mut tasks = Vec::new();
    for i in 0..config.vehicles as usize {
        let fleet = Fleet::new(1, config.radius_km, config.seed.wrapping_add(i as u64), "");
        let device = Device { imei: imei(config.seed, i), fleet, center: (config.center_lat, config.center_lon) };
        let (addr, tally, stop) = (addr.clone(), tally.clone(), stop.clone());
        let interval = Duration::from_secs_f64(config.interval_s);
        tasks.push(tokio::spawn(drive(device, protocol, addr, interval, tally, stop)));
    }
    let mut report = tokio::time::interval(Duration::from_secs(10));
    report.tick().await;
    loop {
        tokio::select! {
            _ = report.tick() => print_tally(&tally, started, false),
            _ = stop.cancelled() => break,
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    print_tally(&tally, started, true);
    Ok(())
}

fn print_tally(tally: &Mutex<Tally>, started: Instant, last: bool) {
    let mut t = tally.lock().unwrap();
    let n = t.latencies_us.len();
    t.latencies_us.sort_unstable();
    let pct = |p: f64| t.latencies_us.get(((n as f64 * p) as usize).min(n.saturating_sub(1))).copied().unwrap_or(0);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{}{n} frames answered ({:.0}/s), answer latency p50 {:.1} ms, p99 {:.1} ms; {} connection failures",
        if last { "simulated: " } else { "" },
        n as f64 / secs,
        pct(0.50) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        t.failures
    );
}

struct Device {
    imei: String,
    fleet: Fleet,
    center: (f64, f64),
}

/// One vehicle's connection, opened again after any failure, until `stop`.
async fn drive(
    mut device: Device,
    protocol: Protocol,
    addr: String,
    interval: Duration,
    tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
) {
    let mut serial: u16 = 0;
    let mut pending: Option<Vec<u8>> = None;
    while !stop.is_cancelled() {
        let run = async {
            let mut stream = TcpStream::connect(&addr).await?;
            log_in(&mut stream, protocol, &device.imei, &mut serial).await?;
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                let frame = match pending.take() {
                    Some(frame) => frame,
                    None => {
                        device.fleet.step(interval.as_secs_f64());
                        serial = serial.wrapping_add(1);
                        let fix_ms = fleetstream_schemas::time::now_millis();
                        frame_of(protocol, &device.fleet.vehicles[0], device.center, fix_ms, serial)
                    }
                };
                pending = Some(frame.clone());
                let sent = Instant::now();
                stream.write_all(&frame).await?;
                let answer_len = if protocol == Protocol::Teltonika { 4 } else { 10 };
                let mut answer = vec![0; answer_len];
                tokio::time::timeout(ANSWER_TIMEOUT, stream.read_exact(&mut answer)).await??;
                pending = None;
                tally.lock().unwrap().latencies_us.push(sent.elapsed().as_micros() as u64);
            }
            #[allow(unreachable_code)]
            anyhow::Ok(())
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            result = run => if let Err(e) = result {
                tracing::debug!(imei = %device.imei, error = %e, "tracker connection failed; reconnecting");
                tally.lock().unwrap().failures += 1;
            },
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn log_in(stream: &mut TcpStream, protocol: Protocol, imei: &str, serial: &mut u16) -> anyhow::Result<()> {
    match protocol {
        Protocol::Teltonika => {
            stream.write_all(&teltonika::encode_imei(imei)).await?;
            let mut answer = [0u8; 1];
            stream.read_exact(&mut answer).await?;
            anyhow::ensure!(answer[0] == teltonika::ACCEPT, "the server refused IMEI {imei}");
        }
        Protocol::Gt06 => {
            *serial = serial.wrapping_add(1);
            let login = Message::Login { imei: imei.to_string(), rest: vec![] };
            stream.write_all(&gt06::encode_frame(&gt06::encode_message(&login, *serial))).await?;
            let mut answer = [0u8; 10];
            stream.read_exact(&mut answer).await?;
        }
        Protocol::Json => anyhow::bail!("JSON is not a tracker protocol"),
    }
    Ok(())
}

/// One frame of one record: where `v` is at `fix_ms`.
pub fn frame_of(protocol: Protocol, v: &Vehicle, (clat, clon): (f64, f64), fix_ms: i64, serial: u16) -> Vec<u8> {
    let (lat, lon) = to_lat_lon(clat, clon, v.x, v.y);
    let kmh = v.speed_mps * 3.6;
    match protocol {
        Protocol::Gt06 => {
            let mut course_status = (v.heading_deg.round() as u16 % 360) | 1 << 12;
            if lat >= 0.0 {
                course_status |= 1 << 10;
            }
            if lon < 0.0 {
                course_status |= 1 << 11;
            }
            let gps = Gps {
                time: Gps::time_of(fix_ms).expect("now is between 2000 and 2255"),
                info: 0xC9,
                lat: (lat.abs() * 1_800_000.0).round() as u32,
                lon: (lon.abs() * 1_800_000.0).round() as u32,
                speed: kmh.round().min(255.0) as u8,
                course_status,
            };
            let cell = Cell { mcc: 310, mnc: 26, lac: 1, cell_id: 1 };
            let message = Message::Location { protocol: protocol::LOCATION, gps, cell, rest: vec![] };
            gt06::encode_frame(&gt06::encode_message(&message, serial))
        }
        _ => {
            let record = AvlRecord {
                timestamp_ms: fix_ms as u64,
                priority: 0,
                gps: GpsElement {
                    lon: (lon * 1e7).round() as i32,
                    lat: (lat * 1e7).round() as i32,
                    altitude: 10,
                    angle: v.heading_deg.round() as u16 % 360,
                    satellites: 9,
                    speed: kmh.round() as u16,
                },
                event_io: 0,
                generation_type: None,
                io: IoElements { one: vec![(239, 1), (240, u8::from(v.speed_mps > 0.0))], ..IoElements::default() },
            };
            teltonika::encode_packet(&AvlPacket { codec: Codec::C8, records: vec![record] }).expect("one record fits")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetstream_schemas::Limits;

    #[test]
    fn frames_decode_to_the_vehicles_positions() {
        let fleet = Fleet::new(1, 10.0, 3, "");
        let v = &fleet.vehicles[0];
        let (lat, lon) = to_lat_lon(40.7, -74.02, v.x, v.y);
        let fix_ms = 1_700_000_000_000;
        let imei = imei(3, 0);
        assert_eq!(imei.len(), 15);

        let frame = frame_of(Protocol::Teltonika, v, (40.7, -74.02), fix_ms, 1);
        let packet = teltonika::decode_packet(&frame).unwrap();
        let p = teltonika::record_position(&imei, &packet.records[0], fix_ms, &Limits::default()).unwrap();
        assert!((p.lat - lat).abs() < 1e-6 && (p.lon - lon).abs() < 1e-6);

        let frame = frame_of(Protocol::Gt06, v, (40.7, -74.02), fix_ms, 7);
        let packet = gt06::decode_frame(&frame).unwrap();
        assert_eq!(packet.serial, 7);
        let message = gt06::decode_message(&packet).unwrap();
        let p = gt06::message_position(&imei, &message, fix_ms, &Limits::default()).unwrap().unwrap();
        assert!((p.lat - lat).abs() < 1e-5 && (p.lon - lon).abs() < 1e-5, "{} {}", p.lat, p.lon);
        assert_eq!(p.fix_time_ms, fix_ms);
    }
}
