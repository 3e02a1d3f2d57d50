//! Checks `compose/docker-compose.yml` and `compose/Dockerfile` against the binary, as far as
//! that is possible without a Docker engine: each fleetstream service runs a real subcommand,
//! sets only environment variables that subcommand reads, reaches Kafka and ClickHouse at the
//! names and ports those services listen on, publishes and health-checks the port it listens
//! on, and depends on services that exist.

use std::collections::BTreeMap;

use clap::CommandFactory;
use serde::Deserialize;

use crate::Cli;

#[derive(Debug, Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Deserialize)]
struct Service {
    image: Option<String>,
    build: Option<Build>,
    command: Option<Vec<String>>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    depends_on: BTreeMap<String, serde_norway::Value>,
    healthcheck: Option<Healthcheck>,
}

#[derive(Debug, Deserialize)]
struct Build {
    context: String,
    dockerfile: String,
}

#[derive(Debug, Deserialize)]
struct Healthcheck {
    test: Vec<String>,
}

fn compose_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("compose")
}

fn load() -> Compose {
    let text = std::fs::read_to_string(compose_dir().join("docker-compose.yml")).expect("compose/docker-compose.yml");
    let mut value: serde_norway::Value = serde_norway::from_str(&text).expect("valid compose YAML");
    // `<<: *fleetstream` merges are applied explicitly, as Compose does.
    value.apply_merge().expect("valid merge keys");
    serde_norway::from_value(value).expect("the compose shape this test reads")
}

/// The environment variables each subcommand reads.
fn env_vars_of(subcommand: &str) -> Vec<String> {
    let cli = Cli::command();
    let sub = cli.find_subcommand(subcommand).unwrap_or_else(|| panic!("no subcommand {subcommand}"));
    sub.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect()
}

/// The port of a `host:port` listen address or URL.
fn port_of(address: &str) -> &str {
    address.rsplit(':').next().unwrap().trim_end_matches('/')
}

#[test]
fn compose_services_match_the_binary() {
    let compose = load();
    let fleetstream: Vec<(&String, &Service)> =
        compose.services.iter().filter(|(_, s)| s.image.as_deref() == Some("fleetstream:latest")).collect();
    let commands: Vec<&str> =
        fleetstream.iter().map(|(_, s)| s.command.as_ref().expect("a command")[0].as_str()).collect();
    assert_eq!(commands, ["api", "ingest", "process"], "one service per fleetstream role");

    let kafka = &compose.services["kafka"];
    let advertised = &kafka.environment["KAFKA_ADVERTISED_LISTENERS"];
    for (name, service) in &compose.services {
        for dependency in service.depends_on.keys() {
            assert!(compose.services.contains_key(dependency), "{name} depends on a missing service {dependency}");
        }
    }
    for (name, service) in fleetstream {
        let build = service.build.as_ref().expect("fleetstream services build the image");
        assert!(compose_dir().join(&build.context).join(&build.dockerfile).is_file(), "{name}: {build:?}");
        let subcommand = &service.command.as_ref().unwrap()[0];
        let known = env_vars_of(subcommand);
        for key in service.environment.keys() {
            assert!(known.contains(key), "{name}: `fleetstream {subcommand}` does not read {key}");
        }
        if let Some(brokers) = service.environment.get("FLEETSTREAM_BROKERS") {
            assert!(
                advertised.contains(&format!("PLAINTEXT://{brokers}")),
                "{name}: {brokers} vs kafka's {advertised}"
            );
            assert!(service.depends_on.contains_key("kafka"), "{name} needs kafka healthy first");
        }
        if let Some(url) = service.environment.get("FLEETSTREAM_CLICKHOUSE_URL") {
            assert_eq!(url, "http://clickhouse:8123", "{name}: the ClickHouse server's HTTP port");
            assert!(service.depends_on.contains_key("clickhouse"), "{name} needs clickhouse healthy first");
            let password = &service.environment["FLEETSTREAM_CLICKHOUSE_PASSWORD"];
            assert_eq!(password, &compose.services["clickhouse"].environment["CLICKHOUSE_PASSWORD"], "{name}");
            assert_eq!(
                service.environment["FLEETSTREAM_CLICKHOUSE_USER"],
                compose.services["clickhouse"].environment["CLICKHOUSE_USER"]
            );
        }
        // Every listener binds all interfaces, is published, and the main one is health-checked.
        let listeners: Vec<&String> =
            service.environment.iter().filter(|(k, _)| k.ends_with("_LISTEN")).map(|(_, v)| v).collect();
        for listen in &listeners {
            assert!(listen.starts_with("0.0.0.0:"), "{name}: {listen} is unreachable from outside the container");
            let port = port_of(listen);
            assert!(service.ports.iter().any(|p| port_of(p) == port), "{name}: port {port} not published");
        }
        if let Some(main) = listeners.iter().find(|l| !l.ends_with(":5055")) {
            let test =
                service.healthcheck.as_ref().unwrap_or_else(|| panic!("{name} has no health check")).test.join(" ");
            assert!(test.contains(&format!("127.0.0.1:{}/readyz", port_of(main))), "{name}: {test}");
        }
    }
}

#[test]
fn the_dockerfile_builds_and_runs_this_binary() {
    let dockerfile = std::fs::read_to_string(compose_dir().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release --locked --bin fleetstream"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["fleetstream"]"#));
    assert!(dockerfile.contains("USER fleetstream"), "runs unprivileged");
    // The health checks call curl inside the runtime image.
    assert!(dockerfile.contains("curl"));
}
