//! How fleetstream's Kafka clients authenticate and encrypt: TLS (`SSL`), SASL (`PLAIN`,
//! `SCRAM-SHA-256`, `SCRAM-SHA-512`) or both (`SASL_SSL`, what Confluent Cloud, MSK with SCRAM
//! and Aiven ask for), as flags and environment variables shared by every subcommand that talks
//! to Kafka. [`KafkaSecurity::apply`] is the one place that turns them into librdkafka settings;
//! [`KafkaSecurity::validate`] refuses combinations that cannot work, naming the flags.
//!
//! The password never appears in `Debug` output, [`KafkaSecurity::describe`] or an error.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use rdkafka::ClientConfig;

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SecurityProtocol {
    /// No encryption, no authentication (a broker on a trusted network).
    #[default]
    #[value(name = "PLAINTEXT")]
    Plaintext,
    /// TLS; the broker's certificate is checked (host name included), optionally a client
    /// certificate is presented.
    #[value(name = "SSL")]
    Ssl,
    /// SASL authentication without encryption: the credentials of PLAIN cross the network in clear.
    #[value(name = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// SASL authentication over TLS: managed Kafka services.
    #[value(name = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    /// The value librdkafka expects.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// The SASL mechanisms librdkafka implements itself (no Cyrus SASL, no libcurl needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    /// Username and password as sent (use only over SASL_SSL).
    #[value(name = "PLAIN")]
    Plain,
    /// Salted challenge-response; the password is never sent.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response; the password is never sent.
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The value of librdkafka's `sasl.mechanisms`.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// TLS and SASL settings of every Kafka client fleetstream creates.
#[derive(Clone, Default, Args)]
pub struct KafkaSecurity {
    /// How to talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over
    /// TLS, as managed Kafka services require).
    #[arg(
        long = "kafka-security-protocol",
        env = "FLEETSTREAM_KAFKA_SECURITY_PROTOCOL",
        value_enum,
        ignore_case = true,
        default_value = "PLAINTEXT"
    )]
    pub protocol: SecurityProtocol,
    /// SASL mechanism (with SASL_SSL or SASL_PLAINTEXT): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long = "kafka-sasl-mechanism", env = "FLEETSTREAM_KAFKA_SASL_MECHANISM", value_enum, ignore_case = true)]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL username (an API key on Confluent Cloud).
    #[arg(long = "kafka-sasl-username", env = "FLEETSTREAM_KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// SASL password (an API secret on Confluent Cloud). Prefer the environment variable: a flag
    /// is visible to every user of the machine in the process list.
    #[arg(long = "kafka-sasl-password", env = "FLEETSTREAM_KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<String>,
    /// CA certificate(s), PEM, that signed the brokers' certificates (with SSL or SASL_SSL);
    /// by default the system's CA store.
    #[arg(long = "kafka-ssl-ca-location", env = "FLEETSTREAM_KAFKA_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate, PEM, for brokers that authenticate clients by TLS (needs the key).
    #[arg(long = "kafka-ssl-certificate-location", env = "FLEETSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub ssl_certificate_location: Option<PathBuf>,
    /// Private key, PEM, of the client certificate.
    #[arg(long = "kafka-ssl-key-location", env = "FLEETSTREAM_KAFKA_SSL_KEY_LOCATION")]
    pub ssl_key_location: Option<PathBuf>,
    /// Passphrase of an encrypted client key.
    #[arg(long = "kafka-ssl-key-password", env = "FLEETSTREAM_KAFKA_SSL_KEY_PASSWORD", hide_env_values = true)]
    pub ssl_key_password: Option<String>,
}

/// Kafka settings that cannot work, said in terms of the flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Kafka settings: {0}")]
pub struct SettingsError(pub String);

impl fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &redacted(&self.sasl_password))
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("ssl_certificate_location", &self.ssl_certificate_location)
            .field("ssl_key_location", &self.ssl_key_location)
            .field("ssl_key_password", &redacted(&self.ssl_key_password))
            .finish()
    }
}

impl KafkaSecurity {
    /// Checks that the settings fit together and that every file named exists, so that a
    /// mistake fails at startup with the flag's name instead of as a broker that never answers.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let fail = |message: String| Err(SettingsError(message));
        let protocol = self.protocol.as_str();
        if self.protocol.uses_sasl() {
            let Some(mechanism) = self.sasl_mechanism else {
                return fail(format!(
                    "--kafka-security-protocol {protocol} needs --kafka-sasl-mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
                ));
            };
            let mechanism = mechanism.as_str();
            if self.sasl_username.as_deref().unwrap_or("").is_empty() {
                return fail(format!("--kafka-sasl-mechanism {mechanism} needs --kafka-sasl-username"));
            }
            if self.sasl_password.as_deref().unwrap_or("").is_empty() {
                return fail(format!(
                    "--kafka-sasl-mechanism {mechanism} needs --kafka-sasl-password (or FLEETSTREAM_KAFKA_SASL_PASSWORD)"
                ));
            }
        } else {
            let stray = [
                ("--kafka-sasl-mechanism", self.sasl_mechanism.is_some()),
                ("--kafka-sasl-username", self.sasl_username.is_some()),
                ("--kafka-sasl-password", self.sasl_password.is_some()),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, set)| *set) {
                return fail(format!(
                    "{flag} is set but --kafka-security-protocol is {protocol}: use SASL_SSL (or SASL_PLAINTEXT) to authenticate with SASL"
                ));
            }
        }
        let files = [
            ("--kafka-ssl-ca-location", &self.ssl_ca_location),
            ("--kafka-ssl-certificate-location", &self.ssl_certificate_location),
            ("--kafka-ssl-key-location", &self.ssl_key_location),
        ];
        for (flag, path) in files {
            let Some(path) = path else { continue };
            if !self.protocol.uses_tls() {
                return fail(format!(
                    "{flag} is set but --kafka-security-protocol is {protocol}: TLS files apply only with SSL or SASL_SSL"
                ));
            }
            if let Err(error) = std::fs::metadata(path) {
                return fail(format!("{flag} {}: {error}", path.display()));
            }
        }
        match (&self.ssl_certificate_location, &self.ssl_key_location) {
            (Some(_), None) => return fail("--kafka-ssl-certificate-location needs --kafka-ssl-key-location".into()),
            (None, Some(_)) => return fail("--kafka-ssl-key-location needs --kafka-ssl-certificate-location".into()),
            _ => {}
        }
        if self.ssl_key_password.is_some() && self.ssl_key_location.is_none() {
            return fail("--kafka-ssl-key-password is set without --kafka-ssl-key-location".into());
        }
        Ok(())
    }

    /// Adds the security settings to a client's configuration. Call [`validate`](Self::validate)
    /// once at startup first; this never fails.
    pub fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.as_str());
        if self.protocol.uses_sasl() {
            if let Some(mechanism) = self.sasl_mechanism {
                config.set("sasl.mechanisms", mechanism.as_str());
            }
            if let Some(username) = &self.sasl_username {
                config.set("sasl.username", username);
            }
            if let Some(password) = &self.sasl_password {
                config.set("sasl.password", password);
            }
        }
        if self.protocol.uses_tls() {
            let mut path = |key: &str, value: &Option<PathBuf>| {
                if let Some(value) = value {
                    config.set(key, path_str(value));
                }
            };
            path("ssl.ca.location", &self.ssl_ca_location);
            path("ssl.certificate.location", &self.ssl_certificate_location);
            path("ssl.key.location", &self.ssl_key_location);
            if let Some(password) = &self.ssl_key_password {
                config.set("ssl.key.password", password);
            }
            // librdkafka's default since 2.0, set explicitly: the broker's host name must match
            // its certificate.
            config.set("ssl.endpoint.identification.algorithm", "https");
        }
    }

    /// For logs and banners: the protocol, mechanism, user and files, never a password.
    pub fn describe(&self) -> String {
        let mut out = self.protocol.as_str().to_string();
        if self.protocol.uses_sasl() {
            if let Some(mechanism) = self.sasl_mechanism {
                out += &format!(" {}", mechanism.as_str());
            }
            if let Some(user) = &self.sasl_username {
                out += &format!(" as {user}");
            }
        }
        if self.protocol.uses_tls() {
            match &self.ssl_ca_location {
                Some(ca) => out += &format!(", CA {}", ca.display()),
                None => out += ", system CAs",
            }
            if let Some(cert) = &self.ssl_certificate_location {
                out += &format!(", client certificate {}", cert.display());
            }
        }
        out
    }

    /// Whether PLAIN credentials would cross the network unencrypted.
    pub fn sends_password_in_clear(&self) -> bool {
        self.protocol == SecurityProtocol::SaslPlaintext && self.sasl_mechanism == Some(SaslMechanism::Plain)
    }
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        security: KafkaSecurity,
    }

    fn parse(args: &[&str]) -> KafkaSecurity {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied())).unwrap().security
    }

    fn settings(security: &KafkaSecurity) -> Vec<(String, String)> {
        let mut config = ClientConfig::new();
        security.apply(&mut config);
        // config_map() hides secrets ("[sanitized for safety]"); get() returns what librdkafka gets.
        let mut out: Vec<(String, String)> =
            config.config_map().keys().map(|k| (k.to_string(), config.get(k).unwrap().to_string())).collect();
        out.sort();
        out
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        out.sort();
        out
    }

    fn existing_file() -> String {
        // Any file that exists will do for the checks; its content is librdkafka's business.
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml").to_string()
    }

    #[test]
    fn plaintext_by_default_sets_only_the_protocol() {
        let security = parse(&[]);
        assert_eq!(security.validate(), Ok(()));
        assert_eq!(settings(&security), pairs(&[("security.protocol", "PLAINTEXT")]));
    }

    #[test]
    fn sasl_ssl_with_scram_becomes_librdkafka_settings() {
        let ca = existing_file();
        let security = parse(&[
            "--kafka-security-protocol",
            "sasl_ssl",
            "--kafka-sasl-mechanism",
            "scram-sha-512",
            "--kafka-sasl-username",
            "fleet",
            "--kafka-sasl-password",
            "s3cret",
            "--kafka-ssl-ca-location",
            &ca,
        ]);
        assert_eq!(security.validate(), Ok(()));
        assert_eq!(
            settings(&security),
            pairs(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", "fleet"),
                ("sasl.password", "s3cret"),
                ("ssl.ca.location", &ca),
                ("ssl.endpoint.identification.algorithm", "https"),
            ])
        );
    }

    #[test]
    fn ssl_with_a_client_certificate() {
        let file = existing_file();
        let security = parse(&[
            "--kafka-security-protocol=SSL",
            "--kafka-ssl-certificate-location",
            &file,
            "--kafka-ssl-key-location",
            &file,
            "--kafka-ssl-key-password",
            "k3y",
        ]);
        assert_eq!(security.validate(), Ok(()));
        assert_eq!(
            settings(&security),
            pairs(&[
                ("security.protocol", "SSL"),
                ("ssl.certificate.location", &file),
                ("ssl.key.location", &file),
                ("ssl.key.password", "k3y"),
                ("ssl.endpoint.identification.algorithm", "https"),
            ])
        );
    }

    #[test]
    fn unknown_protocols_and_mechanisms_are_refused_by_the_parser() {
        let parse_err =
            |args: &[&str]| Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied())).is_err();
        assert!(parse_err(&["--kafka-security-protocol", "TLS"]));
        assert!(parse_err(&["--kafka-sasl-mechanism", "GSSAPI"]));
        assert!(parse_err(&["--kafka-sasl-mechanism", "OAUTHBEARER"]));
    }

    #[test]
    fn combinations_that_cannot_work_name_the_flags() {
        let error = |args: &[&str]| parse(args).validate().unwrap_err().to_string();
        let e = error(&["--kafka-security-protocol", "SASL_SSL"]);
        assert!(e.contains("needs --kafka-sasl-mechanism"), "{e}");
        let e = error(&["--kafka-security-protocol", "SASL_SSL", "--kafka-sasl-mechanism", "PLAIN"]);
        assert!(e.contains("PLAIN needs --kafka-sasl-username"), "{e}");
        let e = error(&[
            "--kafka-security-protocol",
            "SASL_SSL",
            "--kafka-sasl-mechanism",
            "PLAIN",
            "--kafka-sasl-username",
            "u",
        ]);
        assert!(e.contains("needs --kafka-sasl-password"), "{e}");
        let e = error(&["--kafka-sasl-username", "u", "--kafka-sasl-password", "p"]);
        assert!(e.contains("--kafka-sasl-username is set but --kafka-security-protocol is PLAINTEXT"), "{e}");
        let e = error(&["--kafka-sasl-mechanism", "SCRAM-SHA-256"]);
        assert!(e.contains("--kafka-sasl-mechanism is set"), "{e}");
        let file = existing_file();
        let e = error(&["--kafka-ssl-ca-location", &file]);
        assert!(e.contains("TLS files apply only with SSL or SASL_SSL"), "{e}");
        let e = error(&["--kafka-security-protocol", "SSL", "--kafka-ssl-ca-location", "/nonexistent/ca.pem"]);
        assert!(e.contains("--kafka-ssl-ca-location /nonexistent/ca.pem"), "{e}");
        let e = error(&["--kafka-security-protocol", "SSL", "--kafka-ssl-certificate-location", &file]);
        assert!(e.contains("needs --kafka-ssl-key-location"), "{e}");
        let e = error(&["--kafka-security-protocol", "SSL", "--kafka-ssl-key-location", &file]);
        assert!(e.contains("needs --kafka-ssl-certificate-location"), "{e}");
    }

    #[test]
    fn passwords_never_show_in_debug_describe_or_errors() {
        let security = parse(&[
            "--kafka-security-protocol",
            "SASL_PLAINTEXT",
            "--kafka-sasl-mechanism",
            "PLAIN",
            "--kafka-sasl-username",
            "fleet",
            "--kafka-sasl-password",
            "hunter2-secret",
        ]);
        assert!(security.sends_password_in_clear());
        let debug = format!("{security:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let described = security.describe();
        assert_eq!(described, "SASL_PLAINTEXT PLAIN as fleet");
        let mut no_user = security.clone();
        no_user.sasl_username = None;
        assert!(!no_user.validate().unwrap_err().to_string().contains("hunter2"));
    }
}
