//! Recorded positions for `replay`: CSV as in `data/*.csv.gz` (a header naming at
//! least `ts`, `device_id`, `lat`, `lon`) or NDJSON of position objects; either may be gzipped.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, bail};
use fleetstream_schemas::time::parse_rfc3339_millis;

/// One recorded position: the JSON object ingest takes, and its fix time for pacing.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub fix_ms: i64,
    pub json: String,
}

/// Reads every record of the file, in fix-time order (stable: a device's fixes with equal times
/// keep their file order), so that a paced replay sends each position at its moment.
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut records = parse(BufReader::new(reader)).with_context(|| format!("read {}", path.display()))?;
    records.sort_by_key(|r| r.fix_ms);
    Ok(records)
}

/// Parses CSV or NDJSON, told apart by the first non-empty line.
pub fn parse(input: impl BufRead) -> anyhow::Result<Vec<Record>> {
    let mut lines = input.lines().enumerate().filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()));
    let Some((_, first)) = lines.next() else { return Ok(Vec::new()) };
    let first = first?;
    if first.trim_start().starts_with('{') {
        let mut records = vec![ndjson_record(&first).context("line 1")?];
        for (i, line) in lines {
            records.push(ndjson_record(&line?).with_context(|| format!("line {}", i + 1))?);
        }
        Ok(records)
    } else {
        let columns = CsvColumns::from_header(&first)?;
        lines.map(|(i, line)| columns.record(&line?).with_context(|| format!("line {}", i + 1))).collect()
    }
}

fn ndjson_record(line: &str) -> anyhow::Result<Record> {
    let value: serde_json::Value = serde_json::from_str(line).context("not a JSON object")?;
    let fix_ms = match &value["fix_time"] {
        serde_json::Value::String(s) => parse_rfc3339_millis(s).map_err(|e| anyhow::anyhow!("fix_time: {e}"))?,
        serde_json::Value::Number(n) => n.as_i64().context("fix_time: not an integer of milliseconds")?,
        _ => bail!("fix_time: missing"),
    };
    Ok(Record { fix_ms, json: line.trim().to_string() })
}

/// Positions of the columns we read in a CSV header.
struct CsvColumns {
    ts: usize,
    device_id: usize,
    lat: usize,
    lon: usize,
    width: usize,
}

impl CsvColumns {
    fn from_header(header: &str) -> anyhow::Result<CsvColumns> {
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let find = |wanted: &[&str]| {
            names
                .iter()
                .position(|n| wanted.contains(n))
                .with_context(|| format!("the CSV header {header:?} has no {} column", wanted[0]))
        };
        Ok(CsvColumns {
            ts: find(&["ts", "fix_time", "time"])?,
            device_id: find(&["device_id", "mmsi", "device"])?,
            lat: find(&["lat", "latitude"])?,
            lon: find(&["lon", "lng", "longitude"])?,
            width: names.len(),
        })
    }

    fn record(&self, line: &str) -> anyhow::Result<Record> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != self.width {
            bail!("{} fields, the header has {}", fields.len(), self.width);
        }
        let fix_ms = parse_rfc3339_millis(fields[self.ts]).map_err(|e| anyhow::anyhow!("ts: {e}"))?;
        let lat: f64 = fields[self.lat].parse().context("lat: not a number")?;
        let lon: f64 = fields[self.lon].parse().context("lon: not a number")?;
        let json = serde_json::json!({
            "device_id": fields[self.device_id],
            "fix_time": fix_ms,
            "lat": lat,
            "lon": lon,
        })
        .to_string();
        Ok(Record { fix_ms, json })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_positions() {
        let csv = "ts,device_id,lat,lon\n2020-12-08T01:11:40Z,367466930,40.48215,-74.00649\n\n";
        let records = parse(csv.as_bytes()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].fix_ms, 1_607_389_900_000);
        let v: serde_json::Value = serde_json::from_str(&records[0].json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"device_id": "367466930", "fix_time": 1_607_389_900_000i64, "lat": 40.48215, "lon": -74.00649})
        );
    }

    #[test]
    fn ndjson_lines_pass_through() {
        let ndjson = "{\"device_id\":\"a\",\"fix_time\":\"2020-12-08T01:11:40.5Z\",\"lat\":1,\"lon\":2,\"speed\":3}\n{\"device_id\":\"b\",\"fix_time\":5,\"lat\":1,\"lon\":2}";
        let records = parse(ndjson.as_bytes()).unwrap();
        assert_eq!(records.iter().map(|r| r.fix_ms).collect::<Vec<_>>(), vec![1_607_389_900_500, 5]);
        assert!(records[0].json.contains("\"speed\":3"));
    }

    #[test]
    fn bad_lines_are_named() {
        let err =
            format!("{:#}", parse("ts,device_id,lat,lon\n2020-12-08T01:11:40Z,a,north,1\n".as_bytes()).unwrap_err());
        assert!(err.contains("line 2") && err.contains("lat"), "{err}");
        let err = format!("{:#}", parse("time,id,lat,lon\n".as_bytes()).err().unwrap());
        assert!(err.contains("device_id"), "{err}");
        let err = format!("{:#}", parse("{\"device_id\":\"a\"}\n".as_bytes()).unwrap_err());
        assert!(err.contains("fix_time"), "{err}");
    }
}
