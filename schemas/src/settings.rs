//! Settings structs built from their clap definitions, so that every default lives in one place:
//! the `#[arg(default_value..)]` of its flag. Constructors for tests and embedding
//! (`IngestConfig::local()` and the like) name only what they set differently, as flags.

use clap::{Args, Command, FromArgMatches};

/// `T` with the defaults of its flags, overridden by `flags` (`["--name", "value", ..]` or
/// `["--name=value", ..]`). The environment is not read: a `FLEETSTREAM_*` variable set for the
/// binaries must not change what a test builds.
///
/// Panics when a flag is unknown or its value invalid: the caller wrote them.
pub fn from_flags<T: Args + FromArgMatches>(flags: &[&str]) -> T {
    let command = T::augment_args(Command::new("fleetstream")).mut_args(|arg| arg.env(None::<&'static str>));
    let matches = command
        .try_get_matches_from(std::iter::once("fleetstream").chain(flags.iter().copied()))
        .unwrap_or_else(|e| panic!("settings from {flags:?}: {e}"));
    T::from_arg_matches(&matches).unwrap_or_else(|e| panic!("settings from {flags:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Args)]
    struct Example {
        #[arg(long, env = "FLEETSTREAM_SETTINGS_TEST_PORT", default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long)]
        token: Option<String>,
    }

    #[test]
    fn defaults_come_from_the_flags_and_overrides_are_flags() {
        let plain: Example = from_flags(&[]);
        assert_eq!((plain.port, plain.host.as_str(), plain.token), (8080, "127.0.0.1", None));
        let set: Example = from_flags(&["--port", "1", "--host=", "--token=t"]);
        assert_eq!((set.port, set.host.as_str(), set.token.as_deref()), (1, "", Some("t")));
    }

    #[test]
    fn the_environment_is_not_read() {
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("FLEETSTREAM_SETTINGS_TEST_PORT", "9") };
        assert_eq!(from_flags::<Example>(&[]).port, 8080);
    }

    #[test]
    #[should_panic(expected = "--colour")]
    fn an_unknown_flag_is_a_bug() {
        let _: Example = from_flags(&["--colour", "red"]);
    }
}
