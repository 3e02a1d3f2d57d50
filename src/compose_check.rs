//! Checks `compose/docker-compose.yml` and `compose/Dockerfile` against the binary, as far as
//! that is possible without a Docker engine: each fleetstream service runs a real subcommand,
//! sets only environment variables that subcommand reads, reaches Kafka and ClickHouse at the
//! names and ports those services listen on, publishes and health-checks the port it listens
//! on, and depends on services that exist. And that the deployment is safe by default
//! ([`safety_violations`]): Kafka's data on its volume, restart policies, a one-shot `migrate`
//! that the services wait for, every secret required (no fallback), ports published on
//! loopback unless the user says otherwise, memory limits and log rotation everywhere. Each
//! rule is shown to catch a broken file by the tests at the bottom.

use std::collections::BTreeMap;

use clap::CommandFactory;
use serde::Deserialize;

use crate::Cli;

#[derive(Debug, Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
    #[serde(default)]
    volumes: BTreeMap<String, serde_norway::Value>,
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
    restart: Option<String>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    deploy: serde_norway::Value,
    #[serde(default)]
    logging: serde_norway::Value,
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

/// The directories of the compose files: one Kafka broker (`compose/`), three (`compose/cluster/`).
fn compose_dirs() -> [std::path::PathBuf; 2] {
    [compose_dir(), compose_dir().join("cluster")]
}

fn compose_text_in(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn compose_text() -> String {
    compose_text_in(&compose_dir())
}

/// The Kafka brokers of a compose file.
fn kafka_services(compose: &Compose) -> Vec<(&String, &Service)> {
    compose
        .services
        .iter()
        .filter(|(_, s)| s.image.as_deref().is_some_and(|i| i.starts_with("apache/kafka:")))
        .collect()
}

/// The ClickHouse servers of a compose file.
fn clickhouse_servers(compose: &Compose) -> Vec<(&String, &Service)> {
    compose
        .services
        .iter()
        .filter(|(_, s)| s.image.as_deref().is_some_and(|i| i.starts_with("clickhouse/clickhouse-server:")))
        .collect()
}

/// Whether a named volume of the file is mounted at `target` in the service.
fn on_named_volume(compose: &Compose, service: &Service, target: &str) -> bool {
    service.volumes.iter().any(|v| {
        let mut parts = v.split(':');
        compose.volumes.contains_key(parts.next().unwrap_or("")) && parts.next() == Some(target)
    })
}

/// `text` with the images substituted as Compose does from `.env` (a link to `versions.env`):
/// `image: ${NAME}` becomes the pinned value of NAME, and a name `versions.env` lacks fails.
fn with_pinned_images(text: &str) -> String {
    text.lines()
        .map(|line| match line.split_once("image: ${") {
            Some((indent, rest)) => {
                let name = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}: one ${{NAME}} per image"));
                format!("{indent}image: {}", fleetstream_storage::config::pinned(name))
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn parse(text: &str) -> Compose {
    let mut value: serde_norway::Value = serde_norway::from_str(&with_pinned_images(text)).expect("valid compose YAML");
    // `<<: *fleetstream` merges are applied explicitly, as Compose does.
    value.apply_merge().expect("valid merge keys");
    serde_norway::from_value(value).expect("the compose shape this test reads")
}

fn load_in(dir: &std::path::Path) -> Compose {
    parse(&compose_text_in(dir))
}

/// Names of environment variables that hold secrets: passwords and token lists.
fn is_secret(name: &str) -> bool {
    name.contains("PASSWORD") || name.contains("SECRET") || name.ends_with("_TOKENS")
}

/// The `${NAME...}` references in a compose value, each as (NAME, what follows the name).
fn references(value: &str) -> Vec<(&str, &str)> {
    value
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(inner, _)| inner))
        .map(|inner| {
            let end = inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(inner.len());
            (&inner[..end], &inner[end..])
        })
        .collect()
}

fn yaml_str(value: &serde_norway::Value, path: &[&str]) -> Option<String> {
    let found = path.iter().try_fold(value, |v, key| v.get(*key))?;
    match found {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Everything that makes the compose deployment unsafe by default, one sentence each.
fn safety_violations(compose: &Compose) -> Vec<String> {
    let mut out = Vec::new();
    // Kafka keeps its logs (topics, offsets) on the named volume, not in the container.
    let brokers = kafka_services(compose);
    if brokers.is_empty() {
        out.push("no kafka service".into());
    }
    for (name, kafka) in brokers {
        let log_dirs = kafka.environment.get("KAFKA_LOG_DIRS");
        if !log_dirs.is_some_and(|dir| on_named_volume(compose, kafka, dir)) {
            out.push(format!("{name}: KAFKA_LOG_DIRS ({log_dirs:?}) is not the target of a named volume"));
        }
    }
    let migrate = compose.services.iter().find(|(_, s)| s.command.as_deref() == Some(&["migrate".to_string()][..]));
    match migrate {
        Some((name, service)) => {
            if !matches!(service.restart.as_deref(), Some("no") | Some("on-failure")) {
                out.push(format!("{name}: a one-shot service must not restart forever ({:?})", service.restart));
            }
            for (server, _) in clickhouse_servers(compose) {
                let condition = service.depends_on.get(server).and_then(|d| yaml_str(d, &["condition"]));
                if condition.as_deref() != Some("service_healthy") {
                    out.push(format!("{name}: must wait for {server} to be healthy"));
                }
            }
        }
        None => out.push("no one-shot `migrate` service".into()),
    }
    for (name, service) in &compose.services {
        let one_shot = migrate.is_some_and(|(m, _)| m == name);
        if !one_shot && !matches!(service.restart.as_deref(), Some("unless-stopped") | Some("always")) {
            out.push(format!("{name}: restart is {:?}, not unless-stopped or always", service.restart));
        }
        if !one_shot && service.environment.contains_key("FLEETSTREAM_CLICKHOUSE_URL") {
            let waits = migrate.is_some_and(|(m, _)| {
                service
                    .depends_on
                    .get(m)
                    .is_some_and(|d| yaml_str(d, &["condition"]).as_deref() == Some("service_completed_successfully"))
            });
            if !waits {
                out.push(format!("{name}: uses ClickHouse but does not wait for migrate to complete successfully"));
            }
        }
        for (key, value) in &service.environment {
            let refs = references(value);
            if is_secret(key) && refs.is_empty() {
                out.push(format!("{name}: {key} is written in the file instead of required from the environment"));
            }
            for (variable, rest) in refs {
                if (is_secret(key) || is_secret(variable)) && !rest.starts_with(":?") {
                    out.push(format!("{name}: {key} must be required with ${{{variable}:?...}}, not {value:?}"));
                }
            }
        }
        for port in &service.ports {
            let host = match port.strip_prefix("${") {
                Some(rest) => {
                    rest.split_once('}').map(|(inner, _)| inner.rsplit_once(":-").map(|(_, d)| d).unwrap_or(""))
                }
                None => port.split_once(':').map(|(host, _)| host),
            };
            if host != Some("127.0.0.1") {
                out.push(format!("{name}: port {port} is not published on 127.0.0.1 by default"));
            }
        }
        if yaml_str(&service.deploy, &["resources", "limits", "memory"]).is_none() {
            out.push(format!("{name}: no memory limit (deploy.resources.limits.memory)"));
        }
        if yaml_str(&service.logging, &["options", "max-size"]).is_none() {
            out.push(format!("{name}: no log rotation (logging.options.max-size)"));
        }
    }
    out
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

/// The image versions live in `versions.env` with the other pinned releases: each compose
/// directory's `.env` (which Compose reads for `${NAME}`) is that file, and every image is
/// either ours or named by a variable of it.
#[test]
fn compose_images_come_from_versions_env() {
    let versions =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("versions.env")).unwrap();
    for dir in compose_dirs() {
        let env = std::fs::read_to_string(dir.join(".env")).unwrap_or_else(|e| panic!("{}/.env: {e}", dir.display()));
        assert_eq!(env, versions, "{}/.env is not versions.env", dir.display());
        for line in compose_text_in(&dir).lines().filter(|l| l.trim_start().starts_with("image:")) {
            let image = line.trim_start().trim_start_matches("image:").trim();
            assert!(
                image == "fleetstream:latest" || image.starts_with("${"),
                "{}: {line:?} is pinned outside versions.env",
                dir.display()
            );
        }
        let compose = load_in(&dir);
        assert!(!kafka_services(&compose).is_empty() && !clickhouse_servers(&compose).is_empty(), "{}", dir.display());
    }
    assert!(std::panic::catch_unwind(|| with_pinned_images("    image: ${NO_SUCH_IMAGE}")).is_err());
}

#[test]
fn compose_services_match_the_binary() {
    for dir in compose_dirs() {
        services_match_the_binary(&dir);
    }
}

fn services_match_the_binary(dir: &std::path::Path) {
    let compose = load_in(dir);
    let fleetstream: Vec<(&String, &Service)> =
        compose.services.iter().filter(|(_, s)| s.image.as_deref() == Some("fleetstream:latest")).collect();
    let commands: Vec<&str> =
        fleetstream.iter().map(|(_, s)| s.command.as_ref().expect("a command")[0].as_str()).collect();
    assert_eq!(commands, ["api", "ingest", "migrate", "process", "webhooks"], "one service per fleetstream role");

    let advertised: Vec<(&String, &String)> = kafka_services(&compose)
        .into_iter()
        .map(|(name, s)| (name, &s.environment["KAFKA_ADVERTISED_LISTENERS"]))
        .collect();
    for (name, service) in &compose.services {
        for dependency in service.depends_on.keys() {
            assert!(compose.services.contains_key(dependency), "{name} depends on a missing service {dependency}");
        }
    }
    for (name, service) in fleetstream {
        let build = service.build.as_ref().expect("fleetstream services build the image");
        assert!(dir.join(&build.context).join(&build.dockerfile).is_file(), "{name}: {build:?}");
        let subcommand = &service.command.as_ref().unwrap()[0];
        let known = env_vars_of(subcommand);
        for key in service.environment.keys() {
            assert!(known.contains(key), "{name}: `fleetstream {subcommand}` does not read {key}");
        }
        if let Some(brokers) = service.environment.get("FLEETSTREAM_BROKERS") {
            // Every broker of the file is in the bootstrap list, at the address it advertises,
            // and healthy before the service starts.
            assert_eq!(brokers.split(',').count(), advertised.len(), "{name}: {brokers}");
            for broker in brokers.split(',') {
                let (kafka, _) = advertised
                    .iter()
                    .find(|(_, a)| a.contains(&format!("PLAINTEXT://{broker}")))
                    .unwrap_or_else(|| panic!("{name}: no kafka service advertises {broker}: {advertised:?}"));
                assert!(service.depends_on.contains_key(*kafka), "{name} needs {kafka} healthy first");
            }
        }
        if let Some(url) = service.environment.get("FLEETSTREAM_CLICKHOUSE_URL") {
            // A ClickHouse server's HTTP port, with its user and password; every server healthy
            // first (in cluster mode, any server's query may need all of them).
            let servers = clickhouse_servers(&compose);
            let (_, server) = servers
                .iter()
                .find(|(server, _)| url == &format!("http://{server}:8123"))
                .unwrap_or_else(|| panic!("{name}: {url} is no ClickHouse server's HTTP port"));
            for (server, _) in &servers {
                assert!(service.depends_on.contains_key(*server), "{name} needs {server} healthy first");
            }
            let password = &service.environment["FLEETSTREAM_CLICKHOUSE_PASSWORD"];
            assert_eq!(password, &server.environment["CLICKHOUSE_PASSWORD"], "{name}");
            assert_eq!(service.environment["FLEETSTREAM_CLICKHOUSE_USER"], server.environment["CLICKHOUSE_USER"]);
            assert_eq!(
                service.environment.contains_key("FLEETSTREAM_CLICKHOUSE_CLUSTER"),
                servers.len() > 1,
                "{name}: cluster mode exactly when there are several ClickHouse servers"
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
    // librdkafka links the system's OpenSSL (rdkafka's `ssl` feature): headers to build, the
    // library and CA certificates to run.
    assert!(
        dockerfile.contains("libssl-dev") && dockerfile.contains("libssl3") && dockerfile.contains("ca-certificates")
    );
}

#[test]
fn compose_is_safe_by_default() {
    for dir in compose_dirs() {
        assert_eq!(safety_violations(&load_in(&dir)), Vec::<String>::new(), "{}", dir.display());
    }
}

/// `compose/cluster/`: three KRaft nodes of one cluster, and every topic (ours and Kafka's own)
/// on three brokers with writes acknowledged by two.
#[test]
fn the_cluster_replicates_every_topic() {
    let compose = load_in(&compose_dir().join("cluster"));
    let brokers = kafka_services(&compose);
    assert_eq!(brokers.len(), 3);
    let env = |service: &Service, key: &str| service.environment.get(key).cloned().unwrap_or_default();
    let mut node_ids: Vec<String> = brokers.iter().map(|(_, s)| env(s, "KAFKA_NODE_ID")).collect();
    node_ids.sort();
    assert_eq!(node_ids, ["1", "2", "3"]);
    for (name, service) in &brokers {
        let voters = env(service, "KAFKA_CONTROLLER_QUORUM_VOTERS");
        for (other, other_service) in &brokers {
            let voter = format!("{}@{other}:9093", env(other_service, "KAFKA_NODE_ID"));
            assert!(voters.split(',').any(|v| v == voter), "{name}: {voter} not in {voters}");
        }
        assert_eq!(env(service, "CLUSTER_ID"), env(brokers[0].1, "CLUSTER_ID"), "{name}: one cluster");
        assert_eq!(env(service, "CLUSTER_ID").len(), 22, "{name}: a UUID in Kafka's base64 form");
        for (key, value) in [
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2"),
        ] {
            assert_eq!(env(service, key), value, "{name}: {key}");
        }
    }
    for (name, service) in compose.services.iter().filter(|(_, s)| s.environment.contains_key("FLEETSTREAM_BROKERS")) {
        assert_eq!(env(service, "FLEETSTREAM_TOPIC_REPLICATION"), "3", "{name}");
        assert_eq!(env(service, "FLEETSTREAM_TOPIC_MIN_INSYNC_REPLICAS"), "2", "{name}");
    }
}

/// `compose/cluster/`: ClickHouse as two shards of two replicas in cluster mode. Each server
/// loads `clickhouse/cluster.xml`, which lists it in the shard its `{shard}` macro names, with its
/// service name as `{replica}` (unique, and the host replicas fetch parts from); three Keeper
/// nodes, each with its own id, that the servers and the Raft configuration both list; every
/// fleetstream service names the cluster of `<remote_servers>`; all data on volumes.
#[test]
fn the_clickhouse_cluster_is_two_shards_of_two_replicas() {
    let dir = compose_dir().join("cluster");
    let compose = load_in(&dir);
    let read = |file: &str| std::fs::read_to_string(dir.join("clickhouse").join(file)).unwrap();
    let (cluster_xml, keeper_xml) = (read("cluster.xml"), read("keeper.xml"));
    let env = |service: &Service, key: &str| service.environment.get(key).cloned().unwrap_or_default();

    let servers = clickhouse_servers(&compose);
    let mut places: Vec<(String, String)> =
        servers.iter().map(|(_, s)| (env(s, "CLICKHOUSE_SHARD"), env(s, "CLICKHOUSE_REPLICA"))).collect();
    places.sort();
    let shards: Vec<&str> = places.iter().map(|(shard, _)| shard.as_str()).collect();
    assert_eq!(shards, ["1", "1", "2", "2"], "two shards of two replicas");
    // The shards of <remote_servers>, in order: shard N lists the servers whose macro says N.
    let listed: Vec<Vec<&str>> = cluster_xml
        .split("<shard>")
        .skip(1)
        .map(|shard| shard.split("<host>").skip(1).filter_map(|h| h.split_once("</host>").map(|(h, _)| h)).collect())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (name, server) in &servers {
        assert_eq!(&env(server, "CLICKHOUSE_REPLICA"), *name, "{name}: {{replica}} is the service name");
        let shard: usize = env(server, "CLICKHOUSE_SHARD").parse().unwrap();
        assert!(listed[shard - 1].contains(&name.as_str()), "{name} is not in shard {shard}: {listed:?}");
        assert!(
            server
                .volumes
                .iter()
                .any(|v| v == "./clickhouse/cluster.xml:/etc/clickhouse-server/config.d/cluster.xml:ro"),
            "{name}: loads cluster.xml"
        );
        assert!(on_named_volume(&compose, server, "/var/lib/clickhouse"), "{name}: data on a volume");
        for keeper in ["keeper1", "keeper2", "keeper3"] {
            assert!(server.depends_on.contains_key(keeper), "{name} needs {keeper} first");
        }
    }
    for macro_name in ["shard", "replica"] {
        assert!(
            cluster_xml.contains(&format!("<{macro_name} from_env=\"CLICKHOUSE_{}\"/>", macro_name.to_uppercase()))
        );
    }
    assert!(cluster_xml.contains("<internal_replication>true</internal_replication>"));
    assert!(cluster_xml.contains("<distributed_ddl>"));

    let keepers: Vec<(&String, &Service)> = compose
        .services
        .iter()
        .filter(|(_, s)| s.image.as_deref().is_some_and(|i| i.contains("clickhouse-keeper")))
        .collect();
    assert_eq!(keepers.len(), 3);
    for (name, keeper) in &keepers {
        let id = env(keeper, "KEEPER_SERVER_ID");
        assert!(keeper_xml.contains(&format!("<server><id>{id}</id><hostname>{name}</hostname>")), "{name}: id {id}");
        assert!(cluster_xml.contains(&format!("<node><host>{name}</host><port>9181</port></node>")), "{name}");
        assert!(on_named_volume(&compose, keeper, "/var/lib/clickhouse-keeper"), "{name}: data on a volume");
    }
    assert!(keeper_xml.contains("<server_id from_env=\"KEEPER_SERVER_ID\"/>"));

    let cluster_name = cluster_xml.split("<remote_servers>").nth(1).and_then(|r| r.split_once('<')).map(|(_, r)| r);
    let cluster_name = cluster_name.and_then(|r| r.split_once('>')).map(|(n, _)| n.trim()).unwrap();
    for (name, service) in
        compose.services.iter().filter(|(_, s)| s.environment.contains_key("FLEETSTREAM_CLICKHOUSE_URL"))
    {
        assert_eq!(env(service, "FLEETSTREAM_CLICKHOUSE_CLUSTER"), cluster_name, "{name}");
    }
}

/// Each rule catches the mistake it is for: the real file, broken in one place.
#[test]
fn each_safety_rule_catches_its_mistake() {
    let text = compose_text();
    let broken = |from: &str, to: &str| {
        assert!(text.contains(from), "the compose file no longer contains {from:?}");
        safety_violations(&parse(&text.replacen(from, to, 1)))
    };
    let caught = |violations: Vec<String>, expected: &str| {
        assert!(violations.iter().any(|v| v.contains(expected)), "{expected:?} not in {violations:#?}");
    };
    caught(broken("KAFKA_LOG_DIRS: /var/lib/kafka/data", "KAFKA_LOG_DIRS: /tmp/kafka-logs"), "KAFKA_LOG_DIRS");
    caught(broken("      KAFKA_LOG_DIRS: /var/lib/kafka/data\n", ""), "KAFKA_LOG_DIRS (None)");
    caught(
        broken("    image: ${KAFKA_IMAGE}\n    restart: unless-stopped\n", "    image: ${KAFKA_IMAGE}\n"),
        "kafka: restart is None",
    );
    caught(broken("    restart: \"no\"", "    restart: always"), "must not restart forever");
    caught(
        broken("      migrate: { condition: service_completed_successfully }\n    healthcheck:", "    healthcheck:"),
        "api: uses ClickHouse but does not wait for migrate",
    );
    caught(broken("command: [\"migrate\"]", "command: [\"api\"]"), "no one-shot `migrate` service");
    let password = text.lines().find(|l| l.contains("CLICKHOUSE_PASSWORD: ${")).unwrap().trim().to_string();
    caught(
        broken(&password, "CLICKHOUSE_PASSWORD: ${CLICKHOUSE_PASSWORD:-change-me}"),
        "must be required with ${CLICKHOUSE_PASSWORD:?",
    );
    caught(broken(&password, "CLICKHOUSE_PASSWORD: change-me"), "CLICKHOUSE_PASSWORD is written in the file");
    let tokens = text.lines().find(|l| l.contains("FLEETSTREAM_TOKENS: ${")).unwrap().trim().to_string();
    caught(broken(&tokens, "FLEETSTREAM_TOKENS: ${FLEETSTREAM_TOKENS:-}"), "FLEETSTREAM_TOKENS must be required");
    caught(
        broken("\"${FLEETSTREAM_PUBLISH_ADDRESS:-127.0.0.1}:8081:8081\"", "\"8081:8081\""),
        "port 8081:8081 is not published on 127.0.0.1",
    );
    caught(
        broken(
            "\"${FLEETSTREAM_PUBLISH_ADDRESS:-127.0.0.1}:8080:8080\"",
            "\"${FLEETSTREAM_PUBLISH_ADDRESS:-0.0.0.0}:8080:8080\"",
        ),
        "is not published on 127.0.0.1",
    );
    caught(
        broken("        limits: { cpus: \"2\", memory: 512m }", "        limits: { cpus: \"2\" }"),
        "ingest: no memory limit",
    );
    caught(broken("    max-size: \"20m\"\n", ""), "no log rotation");
}
