//! What of a subscription must never be printed: every configured header
//! value, secret-looking settings, the URL's hidden parts and whatever
//! `${VAR}` expansion put there. `plugin` masks these in text a plugin writes;
//! `Debug` of a [`Subscription`] leaves them out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;
use url::Url;

use super::model::{Subscription, Webhook};
use super::redact::{self, LogUrl, MIN_SECRET_LEN};

impl Subscription {
    /// Strings to redact from text a plugin writes (log lines, reject reasons,
    /// init errors, traps), longest first. Values shorter than
    /// [`MIN_SECRET_LEN`] are left out.
    ///
    /// - every webhook header value, and the credential alone of a
    ///   `Bearer <token>`-style value;
    /// - the URL's password; unless `log_url: full`, also its user name, path,
    ///   query (whole and each value) and fragment ([`redact::url_secrets`]);
    /// - every string or number under a settings key containing `secret`,
    ///   `key`, `token` or `password` (at any depth);
    /// - every value `${VAR}` expansion put into a header value or `settings`,
    ///   and unless `log_url: full` into the URL's hidden parts. (Scheme, host
    ///   and port are never secret: the host names them in its own messages.)
    pub fn secrets(&self) -> Vec<String> {
        let url_parts = self.url_secrets();
        let mut found = header_secrets(&self.webhook.headers);
        settings_secrets(&self.settings, false, &mut found);
        // A `${VAR}` value counts where it lands in text a plugin could echo;
        // inside the URL that is only its hidden parts.
        let texts: Vec<String> = self
            .webhook
            .headers
            .values()
            .cloned()
            .chain(settings_scalars(&self.settings))
            .chain(url_parts.iter().cloned())
            .collect();
        let expanded = self
            .expanded
            .iter()
            .filter(|value| contained_in(value, &texts));
        found.extend(expanded.cloned());
        found.extend(url_parts);
        let mut secrets: Vec<String> = found
            .into_iter()
            .filter(|s| s.chars().count() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets
    }

    /// The secret parts of `webhook.url`: all that [`LogUrl::Host`] hides, or
    /// under `log_url: full` the password alone.
    fn url_secrets(&self) -> Vec<String> {
        match Url::parse(&self.webhook.url) {
            Ok(url) if self.webhook.log_url == LogUrl::Host => redact::url_secrets(&url),
            Ok(url) => url.password().map(str::to_owned).into_iter().collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Every header value, and the credential alone of `Bearer <token>`-style
/// values: a plugin may log the token by itself.
fn header_secrets(headers: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for value in headers.values() {
        found.insert(value.clone());
        if let Some((scheme, credential)) = value.trim().split_once(' ')
            && scheme.chars().all(|c| c.is_ascii_alphabetic())
            && !credential.trim().contains(' ')
        {
            found.insert(credential.trim().to_owned());
        }
    }
    found
}

/// Whether `value` occurs in one of `texts`.
pub(super) fn contained_in(value: &str, texts: &[String]) -> bool {
    texts.iter().any(|text| text.contains(value))
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "key", "token", "password"]
        .iter()
        .any(|word| key.contains(word))
}

fn settings_secrets(value: &Value, secret: bool, found: &mut BTreeSet<String>) {
    match value {
        Value::String(s) if secret => {
            found.insert(s.clone());
        }
        Value::Number(n) if secret => {
            found.insert(n.to_string());
        }
        Value::Array(items) => {
            for item in items {
                settings_secrets(item, secret, found);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                settings_secrets(item, secret || is_secret_key(key), found);
            }
        }
        _ => {}
    }
}

/// Every string and number of `settings` as text, except `allow_hosts` (host
/// names, which the host shows anyway).
pub(super) fn settings_scalars(settings: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            Value::Object(map) => map
                .iter()
                .filter(|(key, _)| key.as_str() != "allow_hosts")
                .for_each(|(_, item)| walk(item, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(settings, &mut out);
    out
}

/// Header values, secret-looking settings and `${VAR}` values stay out.
impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|name| (name.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("Webhook")
            .field("url", &redact::show_url(&self.url, self.log_url))
            .field("headers", &headers)
            .field("log_url", &self.log_url)
            .finish()
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .field("consumer", &self.consumer)
            .field("plugin", &self.plugin)
            .field("webhook", &self.webhook)
            .field("settings", &redacted_settings(&self.settings, false))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("max_concurrency", &self.max_concurrency)
            .field("ack_wait", &self.ack_wait)
            .field("ordering", &self.ordering)
            .field("rate_limit", &self.rate_limit)
            .field("breaker", &self.breaker)
            .field("dead_letter_after", &self.dead_letter_after)
            .field(
                "expanded",
                &format_args!("<{} redacted>", self.expanded.len()),
            )
            .field("origin", &self.origin)
            .finish()
    }
}

/// `settings` with secret-looking strings replaced, for `Debug`.
fn redacted_settings(value: &Value, secret: bool) -> Value {
    match value {
        Value::String(_) if secret => Value::String("<redacted>".into()),
        Value::Array(items) => items
            .iter()
            .map(|item| redacted_settings(item, secret))
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(key, item)| {
                let item = redacted_settings(item, secret || is_secret_key(key));
                (key.clone(), item)
            })
            .collect(),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::subscription;

    #[test]
    fn secrets_cover_headers_url_parts_and_secret_settings() {
        let sub = subscription(
            serde_json::json!({
                "signing_secret": "whsec_abcdef",
                "api_key": "k-123456",
                "nested": {"auth_token": ["t-1111", 55555], "name": "not-secret"},
                "template": "welcome",
            }),
            &[("Authorization", "Bearer tok-999"), ("X-Version", "1")],
        );
        assert_eq!(
            sub.secrets(),
            [
                "Bearer tok-999",
                "whsec_abcdef",
                "hunter22",
                "k-123456",
                "tok-999",
                "/x?y=1",
                "t-1111",
                "55555",
                "user",
            ]
        );
    }

    #[test]
    fn log_url_full_keeps_only_the_password_of_the_url() {
        let mut sub = subscription(Value::Object(Default::default()), &[]);
        sub.webhook.url = "https://user:hunter22@hooks.example/path-secret?sig=abcd#frag".into();
        let secrets = sub.secrets();
        assert!(
            secrets.iter().any(|s| s == "/path-secret?sig=abcd#frag"),
            "{secrets:?}"
        );
        sub.webhook.log_url = LogUrl::Full;
        assert_eq!(sub.secrets(), ["hunter22"]);
    }

    #[test]
    fn expanded_values_in_headers_settings_and_hidden_url_parts_are_secrets() {
        let mut sub = subscription(
            serde_json::json!({"note": "hello ${NOTE}", "allow_hosts": ["api.example"]}),
            &[("X-Team", "team-crm")],
        );
        sub.webhook.url = "https://hooks.example:8443/services/PATHPART?x=1".into();
        sub.settings["note"] = "hello note-from-env".into();
        sub.expanded = [
            "note-from-env",
            "team-crm",
            "PATHPART",
            "hooks.example",
            "api.example",
        ]
        .map(String::from)
        .to_vec();
        let secrets = sub.secrets();
        for secret in ["note-from-env", "team-crm", "PATHPART"] {
            assert!(
                secrets.iter().any(|s| s == secret),
                "{secret} in {secrets:?}"
            );
        }
        // The host, and the hosts of allow_hosts, are never secret.
        for shown in ["hooks.example", "api.example"] {
            assert!(
                !secrets.iter().any(|s| s == shown),
                "{shown} in {secrets:?}"
            );
        }
        // Under log_url: full, a value only in the URL is shown with it.
        sub.webhook.log_url = LogUrl::Full;
        let secrets = sub.secrets();
        assert!(!secrets.iter().any(|s| s == "PATHPART"), "{secrets:?}");
        assert!(secrets.iter().any(|s| s == "note-from-env"), "{secrets:?}");
    }

    #[test]
    fn debug_redacts() {
        let sub = subscription(
            serde_json::json!({"signing_secret": "whsec_abcdef", "x": 1}),
            &[("Authorization", "Bearer tok-999")],
        );
        let debug = format!("{sub:?}");
        for secret in sub.secrets() {
            assert!(!debug.contains(&secret), "{secret} in {debug}");
        }
        assert!(debug.contains("Authorization"));
        assert!(
            debug.contains("https://hooks.example.com:8443/..."),
            "{debug}"
        );
    }
}
