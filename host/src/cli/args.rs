//! Arguments several commands share: where config.d is, how to reach NATS,
//! and the small parsers of `Name: value` headers, `--settings`,
//! `--payload` and `--respond`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::config::{Config, ConfigError, ConfigSource};
use crate::outbound::Answer;
use crate::run::NatsOptions;

#[derive(Debug, Args)]
pub(super) struct ConfigArgs {
    /// The folder of *.yml files.
    #[arg(long, default_value = "config.d")]
    pub(super) config_dir: PathBuf,
}

impl ConfigArgs {
    /// config.d as every command reads it.
    pub(super) fn source(&self) -> ConfigSource {
        ConfigSource::from_env(self.config_dir.clone())
    }

    /// Loads and validates config.d.
    pub(super) fn load(&self) -> Result<Config, ConfigError> {
        self.source().load()
    }
}

#[derive(Debug, Args)]
pub(super) struct NatsArgs {
    /// NATS server URL(s), comma separated.
    #[arg(
        short = 's',
        long = "server",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    url: String,
    /// NATS credentials file.
    #[arg(long, env = "NATS_CREDS")]
    creds: Option<PathBuf>,
    /// NATS user name; without --password it is a token, as in the `nats` CLI.
    #[arg(long, env = "NATS_USER", hide_env_values = true)]
    user: Option<String>,
    /// NATS password (needs --user).
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true, requires = "user")]
    password: Option<String>,
    /// NATS token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// NATS nkey seed file.
    #[arg(long, env = "NATS_NKEY")]
    nkey: Option<PathBuf>,
    /// CA certificate for TLS.
    #[arg(long = "tlsca", env = "NATS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate for TLS.
    #[arg(long = "tlscert", env = "NATS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Client key for TLS.
    #[arg(long = "tlskey", env = "NATS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Reconnect attempts (about 4 s apart after the first few) before the
    /// NATS client is replaced by a new one.
    #[arg(
        long,
        env = "SINKHOST_NATS_RECONNECTS",
        default_value_t = 60,
        hide = true
    )]
    nats_reconnects: usize,
}

impl From<NatsArgs> for NatsOptions {
    fn from(a: NatsArgs) -> Self {
        NatsOptions {
            url: a.url,
            creds: a.creds,
            user: a.user,
            password: a.password,
            token: a.token,
            nkey: a.nkey,
            tls_ca: a.tls_ca,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            max_reconnects: a.nats_reconnects,
        }
    }
}

/// `Name: value` arguments as pairs.
pub(super) fn header_pairs(args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    args.iter()
        .map(|arg| {
            let (name, value) = arg
                .split_once(':')
                .with_context(|| format!("header {arg:?} is not `Name: value`"))?;
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// `--settings`: JSON text, or a JSON or YAML file; absent means `{}`.
pub(super) fn parse_settings(arg: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let Some(arg) = arg else {
        return Ok(serde_json::json!({}));
    };
    if arg.trim_start().starts_with('{') {
        return serde_json::from_str(arg).context("--settings is not valid JSON");
    }
    let text =
        std::fs::read_to_string(arg).with_context(|| format!("reading settings file {arg}"))?;
    serde_yaml::from_str(&text).with_context(|| format!("{arg} is not valid JSON or YAML"))
}

/// `--payload`: a file, `-` for stdin, or JSON text given inline.
pub(super) fn read_payload(arg: &str) -> anyhow::Result<Vec<u8>> {
    if arg == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).context("reading stdin")?;
        return Ok(bytes);
    }
    match std::fs::read(arg) {
        Ok(bytes) => Ok(bytes),
        Err(_) if serde_json::from_str::<serde_json::Value>(arg).is_ok() => Ok(arg.into()),
        Err(e) => Err(anyhow::anyhow!(
            "--payload {arg}: {e} (give a file, `-` for stdin, or JSON text)"
        )),
    }
}

/// `--respond STATUS[:Header=value...]`, e.g. `429:Retry-After=3`. A part
/// without `=` belongs to the value before it, so an HTTP date
/// (`Retry-After=Wed, 21 Oct 2026 07:28:00 GMT`) stays whole.
pub(super) fn parse_answer(arg: &str) -> anyhow::Result<Answer> {
    let mut parts = arg.split(':');
    let status = parts.next().unwrap_or_default();
    let status: u16 = status
        .trim()
        .parse()
        .ok()
        .filter(|s| (100..=999).contains(s))
        .with_context(|| {
            format!(
                "--respond {arg:?}: start with an HTTP status, e.g. `503` or `429:Retry-After=3`"
            )
        })?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for part in parts {
        let header = part.split_once('=').filter(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        match (header, headers.last_mut()) {
            (Some((name, value)), _) => headers.push((name.to_owned(), value.to_owned())),
            (None, Some((_, value))) => {
                value.push(':');
                value.push_str(part);
            }
            (None, None) => anyhow::bail!("--respond {arg:?}: {part:?} is not `Header=value`"),
        }
    }
    Ok(Answer { status, headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_a_status_and_headers() {
        let answer = parse_answer("429:Retry-After=3:X-Why=slow down").unwrap();
        assert_eq!(answer.status, 429);
        assert_eq!(
            answer.headers,
            [
                ("Retry-After".to_owned(), "3".to_owned()),
                ("X-Why".to_owned(), "slow down".to_owned())
            ]
        );
        let date = parse_answer("503:Retry-After=Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        assert_eq!(date.headers[0].1, "Wed, 21 Oct 2026 07:28:00 GMT");
        assert_eq!(parse_answer("200").unwrap().headers, []);
        let bad = parse_answer("ok").unwrap_err().to_string();
        assert!(bad.contains("start with an HTTP status"), "{bad}");
        let bad = parse_answer("500:oops").unwrap_err().to_string();
        assert!(bad.contains("\"oops\" is not `Header=value`"), "{bad}");
    }

    #[test]
    fn a_payload_is_a_file_or_json_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(&file, "{\"a\": 2}").unwrap();
        assert_eq!(read_payload(file.to_str().unwrap()).unwrap(), b"{\"a\": 2}");
        assert_eq!(read_payload(r#"{"a":1}"#).unwrap(), br#"{"a":1}"#);
        let missing = read_payload("nope.json").unwrap_err().to_string();
        assert!(
            missing.starts_with("--payload nope.json: No such file")
                && missing.ends_with("(give a file, `-` for stdin, or JSON text)"),
            "{missing}"
        );
    }

    #[test]
    fn headers_are_name_colon_value() {
        assert_eq!(
            header_pairs(&["X-A: 1".into(), " X-B :two: three ".into()]).unwrap(),
            [
                ("X-A".to_owned(), "1".to_owned()),
                ("X-B".to_owned(), "two: three".to_owned())
            ]
        );
        assert_eq!(
            header_pairs(&["no colon".into()]).unwrap_err().to_string(),
            "header \"no colon\" is not `Name: value`"
        );
    }

    #[test]
    fn settings_are_json_text_or_a_json_or_yaml_file() {
        assert_eq!(parse_settings(None).unwrap(), serde_json::json!({}));
        assert_eq!(
            parse_settings(Some(r#"{"api_key": "k"}"#)).unwrap(),
            serde_json::json!({"api_key": "k"})
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.yml");
        std::fs::write(&file, "reject_status: [400, 422]\n").unwrap();
        assert_eq!(
            parse_settings(Some(file.to_str().unwrap())).unwrap(),
            serde_json::json!({"reject_status": [400, 422]})
        );
        let missing = parse_settings(Some("nope.yml")).unwrap_err();
        assert_eq!(missing.to_string(), "reading settings file nope.yml");
    }
}
