//! The rules a value must follow, each a pure function returning the problem
//! (or `None`): names, subjects, durations, URLs, headers.

use std::time::Duration;

use serde_json::Value;
use url::Url;

pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Go/humantime durations: `500ms`, `15s`, `2m`, `1h30m`, `72h`, `1.5h`; `0` is zero.
pub(super) fn parse_duration(value: &str) -> Option<Duration> {
    if value.trim() == "0" {
        return Some(Duration::ZERO);
    }
    humantime::parse_duration(value.trim()).ok()
}

pub(super) fn subscription_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Some("use only letters, digits, '-' and '_'")
    } else {
        None
    }
}

/// Stream and durable consumer names: NATS puts them in API subjects and file names.
pub(super) fn nats_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        Some("NATS names may not contain whitespace, '.', '*', '>', '/' or '\\'")
    } else {
        None
    }
}

/// NATS subject syntax: `.`-separated non-empty tokens, `*` and `>` only as whole
/// tokens, `>` only last.
pub(super) fn subject_problem(subject: &str) -> Option<&'static str> {
    if subject.is_empty() {
        return Some("must not be empty");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain whitespace");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (index, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Some("empty token: leading, trailing or doubled '.'");
        }
        if token.len() > 1 && token.contains(['*', '>']) {
            return Some("'*' and '>' must be whole tokens, as in \"orders.*\" or \"orders.>\"");
        }
        if *token == ">" && index + 1 != tokens.len() {
            return Some("'>' must be the last token");
        }
    }
    None
}

/// Whether some subject matches both filters (NATS's `SubjectsCollide`, which the
/// server uses to accept a consumer filter on a stream).
pub(super) fn subjects_collide(a: &str, b: &str) -> bool {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            _ => return false,
        }
    }
}

pub(super) fn url_problem(value: &str) -> Option<String> {
    match Url::parse(value) {
        Err(err) => Some(err.to_string()),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => Some(format!(
            "scheme must be http or https, not {:?}",
            url.scheme()
        )),
        Ok(url) if url.host_str().is_none_or(str::is_empty) => Some("no host".into()),
        Ok(_) => None,
    }
}

/// RFC 9110 field names are tokens; values may not break the header line.
pub(super) fn header_problem(name: &str, value: &str) -> Option<String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return Some(format!("invalid header name {name:?}"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Some("header value contains a control character (e.g. a newline)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        for ok in [">", "a", "a.b", "a.*", "a.>", "*.b.>", "stripe.drupal", "*"] {
            assert_eq!(subject_problem(ok), None, "{ok}");
        }
        for bad in [
            "", "a..b", ".a", "a.", "a b", "a.>.b", "a*", "a.b>", ">.a", "a.\tb",
        ] {
            assert!(subject_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn collisions() {
        assert!(subjects_collide("ticket.>", ">"));
        assert!(subjects_collide("stripe.>", "stripe.drupal"));
        assert!(subjects_collide("stripe.*", "stripe.drupal"));
        assert!(subjects_collide("*.drupal", "stripe.*"));
        assert!(subjects_collide("mail.>", "mail.>"));
        assert!(!subjects_collide("mail.>", "mail"));
        assert!(!subjects_collide("mail.>", "stripe.drupal"));
        assert!(!subjects_collide("a.b", "a.b.c"));
        assert!(!subjects_collide("a.*", "a.b.c"));
    }

    #[test]
    fn names() {
        assert_eq!(subscription_name_problem("stripe-drupal_2"), None);
        assert!(subscription_name_problem("a.b").is_some());
        assert!(subscription_name_problem("").is_some());
        assert_eq!(nats_name_problem("stripe-drupal-consumer"), None);
        for bad in ["a.b", "a b", "a*", "a>", "a/b", "a\\b", ""] {
            assert!(nats_name_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("72h"), Some(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["2x", "15", "", "-1s", "s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls_and_headers() {
        assert_eq!(url_problem("http://127.0.0.1:8091/api"), None);
        assert_eq!(url_problem("https://shop.example.com/x?y"), None);
        for bad in ["", "127.0.0.1:8091/x", "ftp://x/y", "http://", "/relative"] {
            assert!(url_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(header_problem("X-API-Key", "abc def"), None);
        assert!(header_problem("Bad Name", "v").is_some());
        assert!(header_problem("X", "a\r\nInjected: 1").is_some());
    }
}
