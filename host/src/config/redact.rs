//! Secrets in text: how a webhook URL is shown, which parts of it count as
//! secrets, and the masking of plugin-provided text.
//!
//! Many destinations are authenticated by their URL alone (Slack's
//! `/services/T../B../<secret>`, Discord's `/api/webhooks/<id>/<token>`,
//! `?sig=`, `?api_key=`), so the host never prints more of a URL than its
//! scheme, host and port unless the subscription says the URL holds no secret
//! (`webhook.log_url: full`). The host's own messages are built with
//! [`show_url`] where they are made; text the host did not write (a plugin's
//! log lines, reject reasons, init errors, traps) can contain anything, so it
//! goes through [`redact`] with the subscription's list of secrets. This module
//! imports nothing else of the host: `config`, `outbound`, `plugin` and `tryout`
//! all build on it.

use serde::{Deserialize, Serialize};
use url::{Position, Url};

/// Shorter values are not redacted from plugin text: replacing every `1` of a
/// log line (for `X-Version: 1`) would hide more than it protects.
pub const MIN_SECRET_LEN: usize = 4;

/// What replaces a secret in plugin-provided text.
const MASK: &str = "[redacted]";

/// What replaces the hidden part of a URL: the path, query and fragment.
const HIDDEN_TAIL: &str = "/...";

/// How much of `webhook.url` the host may print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogUrl {
    /// `log_url: host` (the default): `scheme://host:port/...`; the path,
    /// query, fragment and user info are secrets.
    #[default]
    Host,
    /// `log_url: full`: the URL holds no secret and is shown whole, except a
    /// password in it.
    Full,
}

impl std::str::FromStr for LogUrl {
    type Err = String;

    /// `host` or `full`, as in config.d (for `plugin test --log-url`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "host" => Ok(LogUrl::Host),
            "full" => Ok(LogUrl::Full),
            other => Err(format!("{other:?} is neither `host` nor `full`")),
        }
    }
}

/// `url` as the host prints it under `policy`: `https://hooks.example:443/...`
/// (the port always given, `/...` when anything after it was left out), or
/// under [`LogUrl::Full`] the whole URL with any password replaced by `***`.
/// Text that does not parse as a URL is cut the same way, by its characters.
pub fn show_url(url: &str, policy: LogUrl) -> String {
    match Url::parse(url) {
        Ok(parsed) => show_parsed(&parsed, policy),
        Err(_) if policy == LogUrl::Full => url.to_owned(),
        Err(_) => show_unparsed(url),
    }
}

/// [`show_url`] of a URL already parsed.
pub fn show_parsed(url: &Url, policy: LogUrl) -> String {
    match policy {
        LogUrl::Full => {
            let mut url = url.clone();
            if url.password().is_some() {
                // Fails only for URLs that cannot have a password, which have none.
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        LogUrl::Host => {
            let host = url.host_str().unwrap_or_default();
            let port = url
                .port_or_known_default()
                .map(|port| format!(":{port}"))
                .unwrap_or_default();
            let nothing_hidden = url.path() == "/"
                && url.query().is_none()
                && url.fragment().is_none()
                && url.username().is_empty()
                && url.password().is_none();
            let tail = if nothing_hidden { "/" } else { HIDDEN_TAIL };
            format!("{}://{host}{port}{tail}", url.scheme())
        }
    }
}

/// A malformed URL (only config errors show one): the characters before the
/// first `/`, `?` or `#` after `scheme://`, without a `user:password@`.
fn show_unparsed(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(at) => text.split_at(at + 3),
        None => ("", text),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let hidden = end < rest.len() || host.len() < authority.len();
    let tail = if hidden { HIDDEN_TAIL } else { "" };
    format!("{scheme}{host}{tail}")
}

/// The parts of `url` that [`show_url`] hides under [`LogUrl::Host`], as a
/// plugin might print them: user name, password, everything after the port
/// (path, query and fragment as one string), the path, the query, each query
/// value (as written and decoded) and the fragment. Trivial ones (`/`) are
/// left out by [`MIN_SECRET_LEN`] in [`redact`].
pub fn url_secrets(url: &Url) -> Vec<String> {
    let mut found = vec![
        url.username().to_owned(),
        url[Position::BeforePath..].to_owned(),
        url.path().to_owned(),
    ];
    found.extend(url.password().map(str::to_owned));
    found.extend(url.fragment().map(str::to_owned));
    if let Some(query) = url.query() {
        found.push(query.to_owned());
        for pair in query.split('&') {
            found.extend(pair.split_once('=').map(|(_, value)| value.to_owned()));
        }
        found.extend(url.query_pairs().map(|(_, value)| value.into_owned()));
    }
    found
}

/// Replaces every secret in `text` with `[redacted]`. Secrets shorter than
/// [`MIN_SECRET_LEN`] are skipped; longer ones go first, so a secret that
/// contains another is replaced whole.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut ordered: Vec<&String> = secrets
        .iter()
        .filter(|secret| secret.chars().count() >= MIN_SECRET_LEN)
        .collect();
    ordered.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    ordered.into_iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret.as_str(), MASK)
    })
}

/// Cuts `text` to at most `max` bytes, on a character boundary; true when
/// something was cut. Log lines, reject reasons and dead-letter headers are
/// capped with it, so no plugin can make one huge.
pub fn cap(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_URL: &str =
        "http://alice:S3cretPW@Hooks.Example:8091/services/T1/B2/XyZ?token=QTOKEN&sig=a%2Fb#frag-1";

    #[test]
    fn host_policy_shows_scheme_host_and_port_only() {
        assert_eq!(
            show_url(SECRET_URL, LogUrl::Host),
            "http://hooks.example:8091/..."
        );
        assert_eq!(
            show_url("https://hooks.slack.com/services/T/B/X", LogUrl::Host),
            "https://hooks.slack.com:443/..."
        );
        assert_eq!(
            show_url("http://[::1]:9/?q", LogUrl::Host),
            "http://[::1]:9/..."
        );
        // Nothing left out, nothing to mark.
        assert_eq!(
            show_url("http://127.0.0.1:8091", LogUrl::Host),
            "http://127.0.0.1:8091/"
        );
        assert_eq!(
            show_url("http://u@h.example/", LogUrl::Host),
            "http://h.example:80/..."
        );
    }

    #[test]
    fn full_policy_shows_everything_but_the_password() {
        assert_eq!(
            show_url(SECRET_URL, LogUrl::Full),
            "http://alice:***@hooks.example:8091/services/T1/B2/XyZ?token=QTOKEN&sig=a%2Fb#frag-1"
        );
        assert_eq!(
            show_url("http://h.example/x?a=1", LogUrl::Full),
            "http://h.example/x?a=1"
        );
    }

    #[test]
    fn malformed_urls_are_cut_by_their_characters() {
        assert_eq!(
            show_url("127.0.0.1:8091/hook?token=QTOKEN", LogUrl::Host),
            "127.0.0.1:8091/..."
        );
        assert_eq!(
            show_url("http://u:pw@bad host:99999/p", LogUrl::Host),
            "http://bad host:99999/..."
        );
        assert_eq!(show_url("ftp-ish", LogUrl::Host), "ftp-ish");
        assert_eq!(show_url("a b/c?d", LogUrl::Full), "a b/c?d");
    }

    #[test]
    fn url_secrets_name_every_hidden_part() {
        let url = Url::parse(SECRET_URL).unwrap();
        let secrets = url_secrets(&url);
        for part in [
            "alice",
            "S3cretPW",
            "/services/T1/B2/XyZ?token=QTOKEN&sig=a%2Fb#frag-1",
            "/services/T1/B2/XyZ",
            "token=QTOKEN&sig=a%2Fb",
            "QTOKEN",
            "a%2Fb",
            "a/b",
            "frag-1",
        ] {
            assert!(secrets.iter().any(|s| s == part), "{part} in {secrets:?}");
        }
        let shown = redact(&format!("posting to {SECRET_URL}"), &secrets);
        assert_eq!(
            shown,
            "posting to http://[redacted]:[redacted]@Hooks.Example:8091[redacted]"
        );
    }

    #[test]
    fn redact_hides_secrets_longest_first_but_not_short_noise() {
        let secrets = vec![
            "s3cr3t".to_owned(),
            "Bearer s3cr3t".to_owned(),
            "ab".to_owned(),
        ];
        assert_eq!(
            redact("sent Bearer s3cr3t and s3cr3t, ab", &secrets),
            "sent [redacted] and [redacted], ab"
        );
    }

    #[test]
    fn cap_cuts_on_a_char_boundary() {
        let mut short = "short".to_owned();
        assert!(!cap(&mut short, 10));
        assert_eq!(short, "short");
        let mut long = "abcdef".to_owned();
        assert!(cap(&mut long, 3));
        assert_eq!(long, "abc");
        let mut wide = "éé".to_owned();
        assert!(cap(&mut wide, 3));
        assert_eq!(wide, "é");
    }
}
