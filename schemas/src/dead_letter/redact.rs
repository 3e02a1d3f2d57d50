//! Secrets out of whatever ingest stores or answers: the README promises that tokens are never
//! kept, so every dead letter, and every error message built from a device's input, goes
//! through here first.
//!
//! Two nets, because neither alone catches everything:
//! - by name: the value of every parameter or JSON field whose name says it is a secret
//!   ([`is_secret_name`]), however the name is encoded (`TOKEN=`, `%74oken=`, `"\u0074oken"`),
//!   also in text that does not parse (dead letters are mostly broken input);
//! - by value: the token the request presented, wherever else its text appears.

use std::borrow::Cow;

/// What a secret's value becomes.
pub const REDACTED: &str = "<redacted>";

/// Shortest text redacted by value: tokens are at least this long, and redacting shorter text
/// (a mistyped guess) would mangle the dead letter without protecting anything.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Name fragments that mark a parameter or field as a secret.
const SECRET_FRAGMENTS: &[&str] = &["token", "password", "secret"];

/// True for a parameter or field name (already decoded) that carries a credential: one
/// containing `token`, `password` or `secret`, in any case.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_FRAGMENTS.iter().any(|fragment| name.contains(fragment))
}

/// URL-encoded parameters (a query string or a form body) with the value of every secret
/// parameter replaced: `id=7&token=abc` becomes `id=7&token=<redacted>`. Names are compared
/// decoded, as the server reads them; everything else is kept as sent.
pub fn redact_params(text: &str) -> Cow<'_, str> {
    let secret_value = |pair: &str| {
        let (name, value) = pair.split_once('=')?;
        (is_secret_name(&percent_decode(name)) && value != REDACTED).then_some(name.len())
    };
    if !text.split('&').any(|pair| secret_value(pair).is_some()) {
        return Cow::Borrowed(text);
    }
    let pairs: Vec<Cow<'_, str>> = text
        .split('&')
        .map(|pair| match secret_value(pair) {
            Some(name_len) => Cow::Owned(format!("{}={REDACTED}", &pair[..name_len])),
            None => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

/// `application/x-www-form-urlencoded` decoding of a name: `+` is a space, `%XX` a byte,
/// anything malformed kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// JSON text with the value of every field whose name is a secret replaced by
/// `"<redacted>"`, at any depth. Works on text that does not parse (truncated, malformed): an
/// unterminated secret value is redacted to the end. Everything else is kept byte for byte.
pub fn redact_json(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let name_end = string_end(bytes, i);
        let colon = skip_whitespace(bytes, name_end);
        let is_key = bytes.get(colon) == Some(&b':');
        if !(is_key && is_secret_name(&unescape(string_content(text, i, name_end)))) {
            i = name_end;
            continue;
        }
        let value_start = skip_whitespace(bytes, colon + 1);
        let value_end = value_end(bytes, value_start);
        if &text[value_start..value_end] != "\"<redacted>\"" {
            out.push_str(&text[copied..value_start]);
            out.push('"');
            out.push_str(REDACTED);
            out.push('"');
            copied = value_end;
        }
        i = value_end;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The index after the string literal opening at `start` (or the end of an unterminated one).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The text between the quotes of the literal at `start..end`.
fn string_content(text: &str, start: usize, end: usize) -> &str {
    let closed = end > start + 1 && text.as_bytes()[end - 1] == b'"' && end <= text.len();
    let end = if closed { end - 1 } else { end };
    // A lone backslash before the end can leave `end` inside the text's last character.
    text.get(start + 1..end).unwrap_or_default()
}

/// A JSON string's content with its escapes resolved (`\u0074oken` is `token`); malformed
/// escapes are kept as written.
fn unescape(content: &str) -> Cow<'_, str> {
    if !content.contains('\\') {
        return Cow::Borrowed(content);
    }
    serde_json::from_str::<String>(&format!("\"{content}\"")).map_or(Cow::Borrowed(content), Cow::Owned)
}

fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The index after the JSON value starting at `start`: a string, a balanced object or array
/// (strings inside skipped), or a scalar up to the next delimiter; the end of the text when the
/// value is unterminated.
fn value_end(bytes: &[u8], start: usize) -> usize {
    match bytes.get(start) {
        None => start,
        Some(b'"') => string_end(bytes, start),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = start;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => {
                        i = string_end(bytes, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            bytes.len()
        }
        Some(_) => {
            let delimiter = |b: &u8| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace();
            bytes[start..].iter().position(delimiter).map_or(bytes.len(), |n| start + n)
        }
    }
}

/// `text` with every occurrence of `token` replaced, so that the token's text is nowhere in
/// the result. Tokens shorter than [`MIN_TOKEN_BYTES`] are left alone.
pub fn redact_token<'a>(text: &'a str, token: &str) -> Cow<'a, str> {
    if token.len() < MIN_TOKEN_BYTES || !text.contains(token) {
        return Cow::Borrowed(text);
    }
    let once = text.replace(token, REDACTED);
    if !once.contains(token) {
        return Cow::Owned(once);
    }
    // The marker and its neighbours spelled the token again (a token such as `d>xyz…` after
    // `…redacte`). A marker of a character the token lacks cannot: one pass then suffices,
    // where repeating the replacement could take a pass per occurrence.
    let filler = ('\u{2588}'..).find(|c| !token.contains(*c)).expect("a token lacks some character");
    Cow::Owned(text.replace(token, &filler.to_string().repeat(REDACTED.len())))
}

/// [`redact_token`] for the token a request presented, if any.
pub fn redact_presented<'a>(text: &'a str, token: Option<&str>) -> Cow<'a, str> {
    match token {
        Some(token) => redact_token(text, token),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOKEN: &str = "fleet-secret-0123456789";

    #[test]
    fn secret_names_in_any_case() {
        for name in ["token", "TOKEN", "Token", "access_token", "deviceToken", "password", "client_secret"] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["id", "lat", "tok", "cell", "wifi", "driverUniqueId"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn query_strings_lose_their_token_values() {
        let cases = [
            ("id=7&token=abc&lat=1", "id=7&token=<redacted>&lat=1"),
            ("token=abc", "token=<redacted>"),
            ("TOKEN=abc&id=7", "TOKEN=<redacted>&id=7"),
            ("%74oken=abc&id=7", "%74oken=<redacted>&id=7"),
            ("tok%65n=abc", "tok%65n=<redacted>"),
            ("%54%4F%4B%45%4E=abc", "%54%4F%4B%45%4E=<redacted>"),
            ("token=a&id=7&token=b&Token=c", "token=<redacted>&id=7&token=<redacted>&Token=<redacted>"),
            ("token=a%26b%3Dc&id=7", "token=<redacted>&id=7"),
            ("access_token=abc&password=pw", "access_token=<redacted>&password=<redacted>"),
            ("token=", "token=<redacted>"),
            ("token=x=y=z", "token=<redacted>"),
        ];
        for (query, redacted) in cases {
            assert_eq!(redact_params(query), redacted, "{query}");
        }
    }

    #[test]
    fn parameters_without_secrets_are_kept_as_sent() {
        for query in ["id=7&lat=1&lon=2", "", "&&", "token", "tokenless", "id=token=abc", "%zz=1&%7=2"] {
            assert!(matches!(redact_params(query), Cow::Borrowed(q) if q == query), "{query}");
        }
        // Redacting twice changes nothing more.
        let once = redact_params("token=abc&id=1").into_owned();
        assert_eq!(redact_params(&once), once);
    }

    #[test]
    fn json_secret_fields_are_redacted_at_any_depth() {
        let cases = [
            (r#"{"device_id":"d","token":"abc","lat":1}"#, r#"{"device_id":"d","token":"<redacted>","lat":1}"#),
            (r#"{"Token" : "abc"}"#, r#"{"Token" : "<redacted>"}"#),
            (r#"{"\u0074oken":"abc"}"#, r#"{"\u0074oken":"<redacted>"}"#),
            (r#"{"a":{"b":[{"api_token":12345}]}}"#, r#"{"a":{"b":[{"api_token":"<redacted>"}]}}"#),
            (r#"{"token":{"v":"abc","w":["}"]},"x":1}"#, r#"{"token":"<redacted>","x":1}"#),
            (r#"{"token":["a","b"]}"#, r#"{"token":"<redacted>"}"#),
            (r#"{"token":"a","token":"b"}"#, r#"{"token":"<redacted>","token":"<redacted>"}"#),
            (r#"{"token":"a\"b","x":1}"#, r#"{"token":"<redacted>","x":1}"#),
            // Broken input keeps nothing of the secret either.
            (r#"{"token":"abc"#, r#"{"token":"<redacted>""#),
            (r#"{"token":"#, r#"{"token":"<redacted>""#),
            (r#"{"token":{"a":"#, r#"{"token":"<redacted>""#),
            (r#"{"lat":91,"token":abc}"#, r#"{"lat":91,"token":"<redacted>"}"#),
        ];
        for (json, redacted) in cases {
            assert_eq!(redact_json(json), redacted, "{json}");
        }
    }

    #[test]
    fn json_values_that_merely_say_token_are_kept() {
        for json in [r#"{"note":"token","x":"token:"}"#, r#"["token","b"]"#, r#"{"a":"\"token\":1"}"#, "", "\""] {
            assert!(matches!(redact_json(json), Cow::Borrowed(_)), "{json}");
        }
    }

    #[test]
    fn a_presented_token_is_removed_wherever_it_appears() {
        let text = format!("id={TOKEN}&x=[{TOKEN}]{TOKEN}");
        assert_eq!(redact_token(&text, TOKEN), "id=<redacted>&x=[<redacted>]<redacted>");
        assert_eq!(redact_token("short guesses stay", "stay"), "short guesses stay");
        assert_eq!(redact_presented(&text, None), text);
    }

    #[test]
    fn a_token_the_marker_would_spell_again_is_still_removed() {
        let token = ">xxxxxxxxxxxxxxx";
        let text = format!("{token}xxxxxxxxxxxxxxx{token}");
        let redacted = redact_token(&text, token);
        assert!(!redacted.contains(token), "{redacted}");
    }

    proptest! {
        #[test]
        fn a_known_token_never_survives(
            token in "[ -~]{16,40}",
            pieces in proptest::collection::vec("[ -~<>dredact]{0,20}", 0..6),
        ) {
            let text = pieces.join(&token);
            let redacted = redact_token(&text, &token);
            prop_assert!(!redacted.contains(&token), "{} in {}", token, redacted);
        }

        #[test]
        fn a_token_parameter_never_survives(
            token in "[A-Za-z0-9._~-]{16,40}",
            name in prop_oneof!["token", "TOKEN", "Token", "%74oken", "tok%65n", "%54OKEN"],
            before in "[a-z]{1,8}=[a-z0-9]{0,8}",
        ) {
            let query = format!("{before}&{name}={token}&id=1&{name}={token}");
            prop_assert!(!redact_params(&query).contains(&token));
        }

        #[test]
        fn a_token_field_never_survives(token in "[ -~]{16,40}", cut in 0usize..80) {
            let json = serde_json::json!({"device_id": "d", "extras": {"token": token}}).to_string();
            let cut = json.len().min(cut + 30);
            let redacted = redact_json(&json[..cut]);
            let value = serde_json::to_string(&token).unwrap();
            let value = value.trim_matches('"');
            prop_assert!(!redacted.contains(value), "{} in {}", value, redacted);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,120}") {
            let _ = redact_json(&text);
            let _ = redact_params(&text);
        }
    }
}
