//! Services a test owns and may kill and restart: a broker and a ClickHouse server.

use std::path::PathBuf;
use std::time::Duration;

use fleetstream_kafka::nisshi::durable_broker;
use fleetstream_storage::ClickHouseConfig;

use super::{nisshi, unique};

/// A free TCP port on 127.0.0.1 (free when asked; the service binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not open port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_file(dir: &std::path::Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap()
}

/// A broker of the test's own (durable SQLite storage), which the test may kill and restart.
pub struct OwnBroker {
    child: Option<std::process::Child>,
    dir: PathBuf,
    pub port: u16,
    /// From the next [`restart`](Self::restart): serve TLS only, with this certificate and key
    /// (PEM), advertised as `localhost` (the name in the test certificate).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// From the next restart: require SASL (SCRAM) authentication.
    pub authentication: bool,
}

impl OwnBroker {
    pub fn start(tag: &str) -> OwnBroker {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut broker = OwnBroker { child: None, dir, port, tls: None, authentication: false };
        broker.restart();
        broker
    }

    /// The bootstrap address: `localhost` once the broker serves TLS, so that the name matches
    /// the certificate.
    pub fn brokers(&self) -> String {
        match self.tls {
            Some(_) => format!("localhost:{}", self.port),
            None => format!("127.0.0.1:{}", self.port),
        }
    }

    /// The broker's working directory (its SQLite file and log).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Starts the broker process (again, on the same port and data) and waits for its port.
    pub fn restart(&mut self) {
        let advertised_host = if self.tls.is_some() { "localhost" } else { "127.0.0.1" };
        let log = log_file(&self.dir, "broker.log");
        let mut command = durable_broker(nisshi().as_ref(), &self.dir, self.port, advertised_host);
        if let Some((cert, key)) = &self.tls {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if self.authentication {
            command.arg("--authentication");
        }
        let child = command.stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("start nisshi");
        self.child = Some(child);
        wait_for_port(self.port, "broker");
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Debian's ClickHouse 18.16 server of the test's own (the binary `scripts/test` installed), on
/// free ports with its data in a temporary directory; killed and restarted on the same data.
pub struct OwnClickHouse {
    child: Option<std::process::Child>,
    dir: PathBuf,
    pub http_port: u16,
    tcp_port: u16,
    interserver_port: u16,
    /// With [`OwnClickHouse::start_https`]: the HTTPS port and the certificate and key it serves.
    pub https: Option<(u16, PathBuf, PathBuf)>,
}

impl OwnClickHouse {
    pub fn start(tag: &str) -> OwnClickHouse {
        Self::start_with(tag, None)
    }

    /// A server that also serves HTTPS on [`https_port`](Self::https_port) with this certificate
    /// chain and key (PEM).
    pub fn start_https(tag: &str, cert: &std::path::Path, key: &std::path::Path) -> OwnClickHouse {
        Self::start_with(tag, Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn start_with(tag: &str, https: Option<(PathBuf, PathBuf)>) -> OwnClickHouse {
        let dir = std::env::temp_dir().join(unique(tag));
        for sub in ["data", "tmp", "user_files", "format_schemas"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut server = OwnClickHouse {
            child: None,
            dir,
            http_port: free_port(),
            tcp_port: free_port(),
            interserver_port: free_port(),
            https: https.map(|(cert, key)| (free_port(), cert, key)),
        };
        server.restart();
        server
    }

    pub fn https_port(&self) -> u16 {
        self.https.as_ref().expect("started with start_https").0
    }

    /// The configuration of `database` on this server.
    pub fn config(&self, database: &str) -> ClickHouseConfig {
        ClickHouseConfig::local(&format!("http://127.0.0.1:{}", self.http_port), database)
    }

    /// Starts the server (again, on the same ports and data) and waits for its HTTP port.
    pub fn restart(&mut self) {
        let path = |sub: &str| format!("{}/{sub}/", self.dir.display());
        let child = std::process::Command::new("clickhouse-server")
            .current_dir(&self.dir)
            .args(["--config-file=/etc/clickhouse-server/config.xml", "--"])
            .arg(format!("--path={}", path("data")))
            .arg(format!("--tmp_path={}", path("tmp")))
            .arg(format!("--user_files_path={}", path("user_files")))
            .arg(format!("--format_schema_path={}", path("format_schemas")))
            .arg(format!("--http_port={}", self.http_port))
            .arg(format!("--tcp_port={}", self.tcp_port))
            .arg(format!("--interserver_http_port={}", self.interserver_port))
            .arg(format!("--logger.log={}/server.log", self.dir.display()))
            .arg(format!("--logger.errorlog={}/server.err.log", self.dir.display()))
            .arg("--logger.console=0")
            .args(self.https.iter().flat_map(|(port, cert, key)| {
                [
                    format!("--https_port={port}"),
                    format!("--openSSL.server.certificateFile={}", cert.display()),
                    format!("--openSSL.server.privateKeyFile={}", key.display()),
                    // The packaged config names a dhparam.pem that is not installed; ECDHE
                    // needs none.
                    "--openSSL.server.dhParamsFile=".to_string(),
                ]
            }))
            .stdout(log_file(&self.dir, "stdout.log"))
            .stderr(log_file(&self.dir, "stdout.log"))
            .spawn()
            .expect("start clickhouse-server (installed by scripts/test)");
        self.child = Some(child);
        wait_for_port(self.http_port, "clickhouse-server");
        if let Some((port, _, _)) = &self.https {
            wait_for_port(*port, "clickhouse-server's HTTPS port");
        }
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnClickHouse {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
