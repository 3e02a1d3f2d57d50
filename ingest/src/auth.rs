//! Optional bearer tokens for devices and fleets.
//!
//! Entries come from a file (`--tokens-file`) and/or an environment variable (`FLEETSTREAM_TOKENS`),
//! one per line or separated by commas: `<token> device:<device_id>` lets that token post as that
//! one device; `<token> fleet:<name>` lets it post as any device (a fleet-wide secret). With no
//! entries at all, ingest is open and says so at startup.
//!
//! Tokens are kept only as SHA-256 digests and looked up by digest, so neither memory dumps nor
//! comparison timing reveal them.

use std::collections::HashMap;

use fleetstream_schemas::dead_letter::redact::MIN_TOKEN_BYTES;
use sha2::{Digest, Sha256};

/// What one token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Device(String),
    Fleet(String),
}

impl Scope {
    pub fn allows(&self, device_id: &str) -> bool {
        match self {
            Scope::Device(d) => d == device_id,
            Scope::Fleet(_) => true,
        }
    }
}

/// Why a request carries no usable credentials (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required (Authorization: Bearer <token>)")]
    Missing,
    #[error("the token is not valid")]
    Unknown,
}

#[derive(Debug, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Scope>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Parses token entries; errors name the line.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut tokens = Tokens::default();
        for (n, entry) in text.split(['\n', ',']).enumerate() {
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let (token, scope) = entry.split_once(char::is_whitespace).ok_or_else(|| {
                format!("token entry {}: expected `<token> device:<id>` or `<token> fleet:<name>`", n + 1)
            })?;
            let scope = match scope.trim().split_once(':') {
                Some(("device", id)) if !id.is_empty() => Scope::Device(id.to_string()),
                Some(("fleet", name)) if !name.is_empty() => Scope::Fleet(name.to_string()),
                _ => return Err(format!("token entry {}: scope must be device:<id> or fleet:<name>", n + 1)),
            };
            if token.len() < MIN_TOKEN_BYTES {
                return Err(format!("token entry {}: tokens must be at least {MIN_TOKEN_BYTES} characters", n + 1));
            }
            tokens.by_digest.insert(digest(token), scope);
        }
        Ok(tokens)
    }

    /// True when no token is configured: ingest accepts everyone.
    pub fn is_open(&self) -> bool {
        self.by_digest.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The scope of the presented token; `Ok(None)` when ingest is open.
    pub fn authorize(&self, token: Option<&str>) -> Result<Option<&Scope>, AuthError> {
        if self.is_open() {
            return Ok(None);
        }
        let token = token.ok_or(AuthError::Missing)?;
        self.by_digest.get(&digest(token)).map(Some).ok_or(AuthError::Unknown)
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# fleet tokens\nfleet-secret-0123456789 fleet:acme\ndevice-secret-0123456789 device:truck-1\n";

    #[test]
    fn open_when_nothing_is_configured() {
        let t = Tokens::parse("").unwrap();
        assert!(t.is_open());
        assert_eq!(t.authorize(None), Ok(None));
    }

    #[test]
    fn scopes_decide_which_devices_a_token_may_post_as() {
        let t = Tokens::parse(FILE).unwrap();
        assert_eq!(t.len(), 2);
        let fleet = t.authorize(Some("fleet-secret-0123456789")).unwrap().unwrap();
        assert!(fleet.allows("anything"));
        let device = t.authorize(Some("device-secret-0123456789")).unwrap().unwrap();
        assert!(device.allows("truck-1"));
        assert!(!device.allows("truck-2"));
        assert_eq!(t.authorize(None), Err(AuthError::Missing));
        assert_eq!(t.authorize(Some("guess")), Err(AuthError::Unknown));
        assert_eq!(t.authorize(Some("fleet-secret-012345678")), Err(AuthError::Unknown));
    }

    #[test]
    fn comma_separated_entries_work_for_environment_variables() {
        let t = Tokens::parse("aaaaaaaaaaaaaaaa fleet:a, bbbbbbbbbbbbbbbb device:x").unwrap();
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn malformed_entries_name_their_position() {
        for bad in
            ["lonely-token-without-scope", "0123456789abcdef team:x", "short fleet:a", "0123456789abcdef device:"]
        {
            let e = Tokens::parse(bad).unwrap_err();
            assert!(e.starts_with("token entry 1"), "{bad}: {e}");
        }
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
