//! Delivery signatures: `X-Fleetstream-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body
//! with the webhook's secret, so that a receiver can tell our deliveries from forgeries.

use ring::hmac;

/// The header value for `body` signed with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in tag.as_ref() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2 (key "Jefe").
    #[test]
    fn matches_the_rfc_4231_vector() {
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn another_secret_or_body_gives_another_signature() {
        let s = signature("secret-0123456789", b"{}");
        assert_ne!(s, signature("secret-0123456780", b"{}"));
        assert_ne!(s, signature("secret-0123456789", b"{ }"));
    }
}
