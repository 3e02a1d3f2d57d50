//! nisshi, the Kafka-protocol broker of `fleetstream up` and of the tests: the one command line
//! that runs it durably. `up` supervises it (`src/broker.rs`); the fault tests kill and restart
//! it; both start it from here, so a change of flags or storage reaches both.

use std::path::Path;
use std::process::Command;

/// The database file, relative to the broker's working directory.
pub const DATABASE: &str = "nisshi.db";

/// `nisshi broker` listening on `127.0.0.1:port`, advertising `advertised_host:port`, with its
/// data on SQLite in `dir` (its working directory). It commits each produce before
/// acknowledging it, so an acknowledged message survives a kill -9; consumer groups form without
/// the initial rebalance delay (one member is the usual case here). Add TLS or SASL flags, and the
/// process settings (output, process group), to the command returned.
pub fn durable_broker(nisshi: &Path, dir: &Path, port: u16, advertised_host: &str) -> Command {
    let listener = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://{advertised_host}:{port}");
    let mut command = Command::new(nisshi);
    command
        .arg("broker")
        .args(["--listener-url", &listener, "--advertised-listener-url", &advertised])
        .args(["--storage-engine", &format!("sqlite://{DATABASE}"), "--group-initial-rebalance-delay", "0s"])
        .current_dir(dir);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_listens_on_loopback_and_keeps_its_data_in_its_directory() {
        let command = durable_broker(Path::new("/opt/nisshi"), Path::new("/data/broker"), 9092, "localhost");
        let args: Vec<_> = command.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args[0], "broker");
        let value = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
        assert_eq!(value("--listener-url"), "tcp://127.0.0.1:9092");
        assert_eq!(value("--advertised-listener-url"), "tcp://localhost:9092");
        assert_eq!(value("--storage-engine"), "sqlite://nisshi.db");
        assert_eq!(command.get_current_dir(), Some(Path::new("/data/broker")));
    }
}
