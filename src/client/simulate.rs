//! `fleetstream simulate`: a synthetic fleet for load. Each vehicle drives straight legs between
//! random waypoints inside a circle (at a cruise speed of its own, slowing into each waypoint),
//! stops there for a while, and reports a fix every interval, stamped with the real time.

use std::time::{Duration, Instant};

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::sender::{Sender, SenderConfig};
use super::trackers::Protocol;

#[derive(Debug, Clone, Args)]
pub struct SimulateConfig {
    /// Vehicles in the fleet.
    #[arg(long = "vehicles", env = "FLEETSTREAM_SIM_VEHICLES", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub vehicles: u32,
    /// Seconds between two fixes of one vehicle.
    #[arg(long = "interval", env = "FLEETSTREAM_SIM_INTERVAL_S", default_value_t = 5.0)]
    pub interval_s: f64,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long = "duration", env = "FLEETSTREAM_SIM_DURATION_S")]
    pub duration_s: Option<f64>,
    /// Centre of the area the fleet drives in, latitude.
    #[arg(
        long = "center-lat",
        env = "FLEETSTREAM_SIM_CENTER_LAT",
        default_value_t = 40.70,
        allow_negative_numbers = true
    )]
    pub center_lat: f64,
    /// Centre of the area, longitude.
    #[arg(long = "center-lon", env = "FLEETSTREAM_SIM_CENTER_LON", default_value_t = -74.02, allow_negative_numbers = true)]
    pub center_lon: f64,
    /// Radius of the area, kilometres.
    #[arg(long = "radius-km", env = "FLEETSTREAM_SIM_RADIUS_KM", default_value_t = 15.0)]
    pub radius_km: f64,
    /// Random seed: the same seed drives the same paths.
    #[arg(long = "seed", env = "FLEETSTREAM_SIM_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Device ids are this prefix and a number.
    #[arg(long = "prefix", env = "FLEETSTREAM_SIM_PREFIX", default_value = "sim-")]
    pub prefix: String,
    /// What the fleet speaks: fleetstream's JSON over HTTP, or a tracker protocol over TCP (one
    /// connection per vehicle, device ids are IMEIs).
    #[arg(long = "protocol", env = "FLEETSTREAM_SIM_PROTOCOL", value_enum, default_value = "json")]
    pub protocol: super::trackers::Protocol,
    /// The tracker port, for `--protocol teltonika` (default 127.0.0.1:5027) or `gt06`
    /// (default 127.0.0.1:5023).
    #[arg(long = "tracker-addr", env = "FLEETSTREAM_SIM_TRACKER_ADDR")]
    pub tracker_addr: Option<String>,
    #[command(flatten)]
    pub sender: SenderConfig,
}

const METRES_PER_DEGREE: f64 = 111_320.0;
/// Cruise speeds are drawn from this range, m/s (about 18-65 km/h).
const CRUISE_MPS: (f64, f64) = (5.0, 18.0);
/// Stops at a waypoint last this long, seconds.
const STOP_S: (f64, f64) = (30.0, 600.0);

/// splitmix64: small, fast and good enough for paths; no dependency needed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, (lo, hi): (f64, f64)) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }
}

/// One vehicle: where it is, where it is going, and how.
#[derive(Debug, Clone)]
pub struct Vehicle {
    pub id: String,
    /// Metres east and north of the centre.
    pub x: f64,
    pub y: f64,
    target: (f64, f64),
    cruise_mps: f64,
    stopped_for_s: f64,
    pub speed_mps: f64,
    pub heading_deg: f64,
}

/// The whole fleet, advanced by [`Fleet::step`].
#[derive(Debug, Clone)]
pub struct Fleet {
    pub vehicles: Vec<Vehicle>,
    radius_m: f64,
    rng: Rng,
}

impl Fleet {
    pub fn new(count: u32, radius_km: f64, seed: u64, prefix: &str) -> Fleet {
        let radius_m = radius_km * 1000.0;
        let mut rng = Rng(seed);
        let vehicles = (0..count)
            .map(|i| {
                let (x, y) = point_in_disc(&mut rng, radius_m);
                Vehicle {
                    id: format!("{prefix}{i:06}"),
                    x,
                    y,
                    target: point_in_disc(&mut rng, radius_m),
                    cruise_mps: rng.between(CRUISE_MPS),
                    stopped_for_s: 0.0,
                    speed_mps: 0.0,
                    heading_deg: 0.0,
                }
            })
            .collect();
        Fleet { vehicles, radius_m, rng }
    }

    /// Advances every vehicle by `dt` seconds.
    pub fn step(&mut self, dt: f64) {
        for v in &mut self.vehicles {
            if v.stopped_for_s > 0.0 {
                v.stopped_for_s -= dt;
                v.speed_mps = 0.0;
                if v.stopped_for_s <= 0.0 {
                    v.target = point_in_disc(&mut self.rng, self.radius_m);
                    v.cruise_mps = self.rng.between(CRUISE_MPS);
                }
                continue;
            }
            let (dx, dy) = (v.target.0 - v.x, v.target.1 - v.y);
            let remaining = dx.hypot(dy);
            // Slow down into the waypoint: never faster than reaching it in 20 s.
            let speed = v.cruise_mps.min(remaining / 20.0).max(1.0).min(remaining / dt);
            let step = speed * dt;
            if remaining <= step || remaining < 1.0 {
                (v.x, v.y) = v.target;
                v.stopped_for_s = self.rng.between(STOP_S);
                v.speed_mps = remaining / dt;
            } else {
                v.x += dx / remaining * step;
                v.y += dy / remaining * step;
                v.speed_mps = speed;
            }
            if remaining > 0.0 {
                v.heading_deg = dx.atan2(dy).to_degrees().rem_euclid(360.0);
            }
        }
    }

    /// The fleet's positions now, as NDJSON for ingest.
    pub fn ndjson(&self, center_lat: f64, center_lon: f64, fix_ms: i64) -> String {
        let mut out = String::with_capacity(self.vehicles.len() * 140);
        for v in &self.vehicles {
            let (lat, lon) = to_lat_lon(center_lat, center_lon, v.x, v.y);
            let fix = serde_json::json!({
                "device_id": v.id,
                "fix_time": fix_ms,
                "lat": (lat * 1e6).round() / 1e6,
                "lon": (lon * 1e6).round() / 1e6,
                "speed": (v.speed_mps * 100.0).round() / 100.0,
                "heading": (v.heading_deg * 10.0).round() / 10.0,
            });
            out.push_str(&fix.to_string());
            out.push('\n');
        }
        out
    }
}

fn point_in_disc(rng: &mut Rng, radius_m: f64) -> (f64, f64) {
    let r = radius_m * rng.next_f64().sqrt();
    let a = rng.next_f64() * std::f64::consts::TAU;
    (r * a.cos(), r * a.sin())
}

/// Metres east/north of the centre to degrees (equirectangular: fine over tens of km).
pub fn to_lat_lon(center_lat: f64, center_lon: f64, x: f64, y: f64) -> (f64, f64) {
    let lat = center_lat + y / METRES_PER_DEGREE;
    let lon = center_lon + x / (METRES_PER_DEGREE * center_lat.to_radians().cos());
    (lat, lon)
}

pub async fn simulate(config: SimulateConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    anyhow::ensure!(config.interval_s >= 0.1 && config.interval_s.is_finite(), "--interval must be at least 0.1 s");
    anyhow::ensure!((-80.0..=80.0).contains(&config.center_lat), "--center-lat must be within ±80°");
    anyhow::ensure!((-180.0..=180.0).contains(&config.center_lon), "--center-lon must be within ±180°");
    anyhow::ensure!(config.radius_km > 0.0 && config.radius_km <= 500.0, "--radius-km must be in (0, 500]");
    let default_addr = match config.protocol {
        Protocol::Json => None,
        Protocol::Teltonika => Some("127.0.0.1:5027"),
        Protocol::Gt06 => Some("127.0.0.1:5023"),
    };
    if let Some(default_addr) = default_addr {
        let addr = config.tracker_addr.clone().unwrap_or_else(|| default_addr.to_string());
        return super::trackers::simulate(config.clone(), config.protocol, addr, shutdown).await;
    }
    let mut fleet = Fleet::new(config.vehicles, config.radius_km, config.seed, &config.prefix);
    let mut sender = Sender::new(&config.sender)?;
    let interval = Duration::from_secs_f64(config.interval_s);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let (mut sent, mut rejected, mut last_report) = (0u64, 0u64, Instant::now());
    eprintln!(
        "simulating {} vehicles, a fix each every {} s, to {}",
        config.vehicles, config.interval_s, config.sender.ingest_url
    );
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        if config.duration_s.is_some_and(|d| started.elapsed().as_secs_f64() >= d) {
            break;
        }
        fleet.step(config.interval_s);
        let body = fleet.ndjson(config.center_lat, config.center_lon, fleetstream_schemas::time::now_millis());
        // One request per 1,000 vehicles keeps each request well under ingest's limits.
        for chunk in body.lines().collect::<Vec<_>>().chunks(1000) {
            let report = sender.send(chunk.join("\n")).await?;
            sent += report.accepted;
            rejected += report.rejected;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{sent} positions accepted ({:.0}/s), {rejected} rejected, {} retried requests",
                sent as f64 / secs,
                sender.retries
            );
        }
    }
    eprintln!("simulated {sent} positions in {:.1} s, {rejected} rejected", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Vehicles stay inside the area, never exceed their top cruise speed between two fixes,
        /// and report a heading in [0, 360).
        #[test]
        fn paths_are_plausible(seed in any::<u64>(), dt in 0.5f64..30.0) {
            let mut fleet = Fleet::new(20, 5.0, seed, "v");
            let mut before: Vec<(f64, f64)> = fleet.vehicles.iter().map(|v| (v.x, v.y)).collect();
            for _ in 0..200 {
                fleet.step(dt);
                for (v, (x, y)) in fleet.vehicles.iter().zip(&before) {
                    prop_assert!(v.x.hypot(v.y) <= 5_000.0 + 1e-6, "left the area");
                    let moved = (v.x - x).hypot(v.y - y);
                    prop_assert!(moved <= CRUISE_MPS.1 * dt + 1e-6, "{moved} m in {dt} s");
                    prop_assert!((0.0..360.0).contains(&v.heading_deg));
                    prop_assert!((v.speed_mps * dt - moved).abs() < 1e-6, "reported speed matches the distance");
                }
                before = fleet.vehicles.iter().map(|v| (v.x, v.y)).collect();
            }
        }
    }

    #[test]
    fn the_same_seed_drives_the_same_paths_and_vehicles_stop() {
        let run = |seed| {
            let mut fleet = Fleet::new(10, 3.0, seed, "v");
            let mut stops = 0;
            for _ in 0..2_000 {
                fleet.step(5.0);
                stops += fleet.vehicles.iter().filter(|v| v.speed_mps == 0.0).count();
            }
            (fleet.vehicles.iter().map(|v| (v.x, v.y)).collect::<Vec<_>>(), stops)
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7).0, run(8).0);
        assert!(run(7).1 > 0, "vehicles stop at waypoints");
    }

    #[test]
    fn fixes_are_valid_positions() {
        let fleet = Fleet::new(3, 10.0, 1, "sim-");
        let body = fleet.ndjson(40.7, -74.02, 1_795_842_000_000);
        for line in body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["device_id"].as_str().unwrap().starts_with("sim-"));
            assert!(
                (v["lat"].as_f64().unwrap() - 40.7).abs() < 0.1 && (v["lon"].as_f64().unwrap() + 74.02).abs() < 0.13
            );
        }
        assert_eq!(body.lines().count(), 3);
    }
}
