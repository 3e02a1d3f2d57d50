//! `fleetstream replay FILE`: sends recorded positions through the ingest API at a chosen
//! speed-up of their own clock (1x, 60x, ...) or as fast as ingest takes them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::records::{self, Record};
use super::sender::{Sender, SenderConfig};

#[derive(Debug, Clone, Args)]
pub struct ReplayConfig {
    /// CSV (`ts,device_id,lat,lon`) or NDJSON of positions, optionally gzipped.
    pub file: PathBuf,
    /// Speed-up of the recording's clock: `1` is real time, `60` an hour a minute, `max` as fast
    /// as ingest takes them.
    #[arg(long = "speed", env = "FLEETSTREAM_REPLAY_SPEED", default_value = "max", value_parser = parse_speed)]
    pub speed: Speed,
    /// Positions per request.
    #[arg(long = "batch", env = "FLEETSTREAM_REPLAY_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    #[command(flatten)]
    pub sender: SenderConfig,
}

/// A speed-up factor, or `None` for as fast as possible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed(pub Option<f64>);

/// `max` or a positive factor, with an optional trailing `x`.
fn parse_speed(text: &str) -> Result<Speed, String> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(Speed(None));
    }
    match text.trim_end_matches(['x', 'X']).parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed(Some(f))),
        _ => Err(format!("{text:?}: use a positive speed-up such as 1, 60 or 60x, or max")),
    }
}

/// Totals of a replay.
#[derive(Debug, Default)]
pub struct Summary {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub retries: u64,
}

pub async fn replay(config: ReplayConfig, shutdown: CancellationToken) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let file = config.file.clone();
    let records = tokio::task::spawn_blocking(move || records::read(&file)).await??;
    eprintln!(
        "{}: {} positions read in {:.1} s",
        config.file.display(),
        records.len(),
        started.elapsed().as_secs_f64()
    );
    let bar = ProgressBar::new(records.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} positions  {per_sec}  eta {eta}  {msg}")
            .expect("valid template"),
    );
    let mut sender = Sender::new(&config.sender)?;
    let mut summary = Summary::default();
    let started = Instant::now();
    let first_fix = records.first().map_or(0, |r| r.fix_ms);
    for batch in batches(&records, config.batch as usize, config.speed.0) {
        if let Some(speed) = config.speed.0 {
            // The moment, on our clock, of the batch's last fix on the recording's clock.
            let due =
                Duration::from_secs_f64((batch.last().map_or(0, |r| r.fix_ms) - first_fix) as f64 / 1000.0 / speed);
            tokio::select! {
                _ = tokio::time::sleep(due.saturating_sub(started.elapsed())) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        let body: String = batch.iter().flat_map(|r| [r.json.as_str(), "\n"]).collect();
        let report = sender.send(body).await?;
        for error in report.errors.iter().take(5usize.saturating_sub(summary.rejected as usize)) {
            bar.suspend(|| eprintln!("rejected: {error}"));
        }
        summary.sent += batch.len() as u64;
        summary.accepted += report.accepted;
        summary.rejected += report.rejected;
        bar.set_position(summary.sent);
        bar.set_message(fleetstream_schemas::time::format_millis(batch.last().map_or(0, |r| r.fix_ms)));
    }
    bar.finish_and_clear();
    summary.retries = sender.retries;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "replayed {} positions in {secs:.1} s ({:.0}/s): {} accepted, {} rejected, {} retried requests",
        summary.sent,
        summary.sent as f64 / secs.max(1e-9),
        summary.accepted,
        summary.rejected,
        summary.retries
    );
    Ok(summary)
}

/// Splits time-ordered records into requests: at most `size` each and, when paced, never
/// spanning more than one second of our clock, so that no position is sent long before its time.
fn batches(records: &[Record], size: usize, speed: Option<f64>) -> impl Iterator<Item = &[Record]> {
    let span_ms = speed.map(|s| (1000.0 * s) as i64);
    let mut rest = records;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let mut end = rest.len().min(size);
        if let Some(span) = span_ms {
            end = rest[..end].iter().position(|r| r.fix_ms - first.fix_ms > span).unwrap_or(end).max(1);
        }
        let (batch, tail) = rest.split_at(end);
        rest = tail;
        Some(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn speeds_parse() {
        assert_eq!(parse_speed("max").unwrap(), Speed(None));
        assert_eq!(parse_speed("60x").unwrap(), Speed(Some(60.0)));
        assert_eq!(parse_speed("1").unwrap(), Speed(Some(1.0)));
        for bad in ["0", "-2", "fast", "inf", "NaN"] {
            assert!(parse_speed(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Batches cover every record once, in order, within the size and (paced) time span.
        #[test]
        fn batches_cover_everything_in_order(
            mut times in proptest::collection::vec(0i64..100_000, 0..300),
            size in 1usize..50,
            speed in proptest::option::of(0.5f64..100.0),
        ) {
            times.sort();
            let records: Vec<Record> = times.iter().map(|&t| Record { fix_ms: t, json: t.to_string() }).collect();
            let split: Vec<&[Record]> = batches(&records, size, speed).collect();
            let joined: Vec<Record> = split.iter().flat_map(|b| b.iter().cloned()).collect();
            prop_assert_eq!(&joined, &records);
            for b in &split {
                prop_assert!(!b.is_empty() && b.len() <= size);
                if let Some(s) = speed {
                    prop_assert!(b.len() == 1 || b.last().unwrap().fix_ms - b[0].fix_ms <= (1000.0 * s) as i64);
                }
            }
        }
    }
}
