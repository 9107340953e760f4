//! The configuration a plugin's `init` receives: the subscription's name, its
//! `webhook` block and its plugin-specific `settings`, as the host hands them
//! over in JSON after `${VAR}` expansion.
//!
//! Unknown top-level keys are ignored so that a newer host can pass more
//! without breaking older plugins; the plugin's own `settings` are as strict
//! as the type it parses them into. (The host keeps its own key
//! `settings.allow_hosts` to itself.)

use std::fmt;

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::http::RedactedHeaders;

/// A plugin instance's configuration, handed to [`Sink::init`](crate::Sink::init).
///
/// `Debug` shows header names only: their values are usually credentials.
#[derive(Clone, Deserialize)]
pub struct Config {
    /// The subscription's `name`, e.g. `stripe-drupal`.
    pub subscription: String,
    /// The subscription's `webhook` block; empty when the config has none.
    #[serde(default)]
    pub webhook: Webhook,
    #[serde(default)]
    settings: Value,
}

/// The subscription's `webhook` block:
///
/// ```yaml
/// webhook:
///   url: "${DRUPAL_STRIPE_WEBHOOK_URL}"
///   headers:
///     Authorization: "Bearer ${DRUPAL_WEBHOOK_SECRET}"
/// ```
#[derive(Clone, Default, Deserialize)]
pub struct Webhook {
    /// The destination URL; empty when not configured (plugins that need one
    /// should fail `init` then).
    #[serde(default)]
    pub url: String,
    /// The configured headers, in the order the config lists them.
    #[serde(default, deserialize_with = "ordered_headers")]
    pub headers: Vec<(String, String)>,
}

impl Config {
    /// Parses the JSON text the host passes to `init`. [`export_sink!`](crate::export_sink)
    /// calls this for you; it is public so plugins can build a `Config` in tests.
    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| format!("invalid plugin configuration: {e}"))
    }

    /// Parses the subscription's `settings` block into the plugin's own type.
    /// A missing or `null` block parses as `{}`, so a `T` whose fields all have
    /// defaults needs no `settings:` in the config. Give `T`
    /// `#[serde(deny_unknown_fields)]` so a misspelt key fails `init` (and
    /// `sinkhost check`) instead of being silently ignored:
    ///
    /// ```
    /// use sinkhost_sdk::{serde::Deserialize, Config};
    ///
    /// #[derive(Debug, Deserialize)]
    /// #[serde(crate = "sinkhost_sdk::serde", deny_unknown_fields)]
    /// struct Settings {
    ///     #[serde(default)]
    ///     reject_status: Vec<u16>,
    /// }
    ///
    /// let config = Config::from_json(r#"{"subscription": "s", "settings": {"reject_stauts": [422]}}"#)?;
    /// let err = config.settings::<Settings>().unwrap_err();
    /// assert_eq!(err, "invalid settings: unknown field `reject_stauts`, expected `reject_status`");
    /// # Ok::<(), String>(())
    /// ```
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, String> {
        let settings = match &self.settings {
            Value::Null => Value::Object(serde_json::Map::new()),
            settings => settings.clone(),
        };
        T::deserialize(settings).map_err(|e| format!("invalid settings: {e}"))
    }
}

impl Webhook {
    /// The `url`, when it is an absolute `http://` or `https://` URL with a
    /// host; else the error `init` should return. (The host checks the URL
    /// further when it sends; this catches an empty or unexpanded value early.)
    pub fn require_url(&self) -> Result<String, String> {
        let rest = self
            .url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(self.url.clone()),
            _ => Err("webhook.url must be an absolute http:// or https:// URL".into()),
        }
    }

    /// Whether the configured headers set `name` (case-insensitive). Plugins
    /// that compute a header themselves (a signature, an API key from
    /// `settings`) refuse a configured one in `init` rather than send both.
    pub fn has_header(&self, name: &str) -> bool {
        crate::http::find_header(&self.headers, name).is_some()
    }

    /// The configured headers, preceded by each of `defaults` whose name they
    /// do not set, e.g. `headers_with_defaults(&[("Content-Type", "application/json")])`.
    pub fn headers_with_defaults(&self, defaults: &[(&str, &str)]) -> Vec<(String, String)> {
        defaults
            .iter()
            .filter(|(name, _)| !self.has_header(name))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .chain(self.headers.iter().cloned())
            .collect()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Settings may hold secrets too (API keys, signing secrets): keys only.
        let settings: Vec<&str> = match &self.settings {
            Value::Object(map) => map.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        f.debug_struct("Config")
            .field("subscription", &self.subscription)
            .field("webhook", &self.webhook)
            .field("settings_keys", &settings)
            .finish()
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("headers", &RedactedHeaders(&self.headers))
            .finish()
    }
}

/// Reads a JSON object of string values into `(name, value)` pairs in
/// document order (a map type would sort them or need another dependency).
fn ordered_headers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of header names to string values")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(pair) = map.next_entry()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }
    d.deserialize_any(Pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[serde(default)]
        reject_status: Vec<u16>,
    }

    #[test]
    fn parses_the_documented_shape_keeping_header_order() {
        let config = Config::from_json(
            r#"{"subscription": "orders",
                "webhook": {"url": "https://example.com/h",
                            "headers": {"Z-Last": "z", "Authorization": "Bearer t", "A-First": "a"}},
                "settings": {"reject_status": [400, 422]},
                "added_by_a_newer_host": true}"#,
        )
        .unwrap();
        assert_eq!(config.subscription, "orders");
        assert_eq!(config.webhook.url, "https://example.com/h");
        let names: Vec<&str> = config
            .webhook
            .headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["Z-Last", "Authorization", "A-First"]);
        assert_eq!(
            config.settings::<Settings>().unwrap(),
            Settings {
                reject_status: vec![400, 422]
            }
        );
    }

    #[test]
    fn missing_or_null_settings_parse_as_empty_object() {
        for json in [
            r#"{"subscription": "s"}"#,
            r#"{"subscription": "s", "settings": null, "webhook": {"url": "u", "headers": null}}"#,
        ] {
            let config = Config::from_json(json).unwrap();
            assert_eq!(
                config.settings::<Settings>().unwrap().reject_status,
                Vec::<u16>::new()
            );
            assert!(config.webhook.headers.is_empty());
        }
    }

    #[test]
    fn settings_errors_name_the_problem() {
        let config =
            Config::from_json(r#"{"subscription": "s", "settings": {"reject_status": "422"}}"#)
                .unwrap();
        let err = config.settings::<Settings>().unwrap_err();
        assert!(
            err.starts_with("invalid settings: invalid type: string \"422\""),
            "{err}"
        );
    }

    #[test]
    fn malformed_config_is_an_error_not_a_panic() {
        let err = Config::from_json(r#"{"webhook": {}}"#).unwrap_err();
        assert!(err.contains("missing field `subscription`"), "{err}");
        let err =
            Config::from_json(r#"{"subscription": "s", "webhook": {"headers": {"X-Port": 8080}}}"#)
                .unwrap_err();
        assert!(err.contains("invalid type: integer `8080`"), "{err}");
    }

    fn webhook(url: &str, headers: &[(&str, &str)]) -> Webhook {
        Webhook {
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn require_url_wants_an_absolute_http_url() {
        for good in [
            "http://h",
            "https://example.com/hook?x=1",
            "http://127.0.0.1:8091/x",
        ] {
            assert_eq!(webhook(good, &[]).require_url().as_deref(), Ok(good));
        }
        for bad in [
            "",
            "example.com/hook",
            "ftp://h/x",
            "https://",
            "http:///path",
            "${URL}",
        ] {
            assert_eq!(
                webhook(bad, &[]).require_url(),
                Err("webhook.url must be an absolute http:// or https:// URL".into()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn defaults_come_first_unless_configured() {
        let hook = webhook(
            "http://h",
            &[("Authorization", "Bearer t"), ("X-Team", "ops")],
        );
        assert!(hook.has_header("authorization") && !hook.has_header("content-type"));
        assert_eq!(
            hook.headers_with_defaults(&[("Content-Type", "application/json")]),
            [
                ("Content-Type".to_string(), "application/json".to_string()),
                ("Authorization".to_string(), "Bearer t".to_string()),
                ("X-Team".to_string(), "ops".to_string()),
            ]
        );
        let own = webhook(
            "http://h",
            &[("content-type", "application/cloudevents+json")],
        );
        assert_eq!(
            own.headers_with_defaults(&[("Content-Type", "application/json")]),
            [(
                "content-type".to_string(),
                "application/cloudevents+json".to_string()
            )]
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let config = Config::from_json(
            r#"{"subscription": "s",
                "webhook": {"url": "https://x", "headers": {"Authorization": "Bearer s3cret"}},
                "settings": {"api_key": "k3y"}}"#,
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("k3y"),
            "{debug}"
        );
        assert!(
            debug.contains("Authorization: <redacted>") && debug.contains("api_key"),
            "{debug}"
        );
    }
}
