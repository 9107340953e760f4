//! NATS authentication and TLS, against real `nats-server`s that require them:
//! token, user/password, nkey, TLS with a verified client certificate, and a
//! creds file in JWT operator mode. Each case runs `sinkhost run` with the
//! credential (as a flag, or as the `nats` CLI's environment variable) and
//! proves a message published with `sinkhost publish` reaches the destination;
//! then a wrong credential: the one-shot command fails with the reason, and
//! `run` keeps retrying (logging it) instead of crashing.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::{stream_yaml, sub_yaml};
use support::{CliOutput, ConfigDir, Host, NatsServer, Receiver, sinkhost_cli, unique};

use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(30);

/// One server under test with a stream over `<prefix>.>` and one
/// subscription delivering it to `receiver` (one stream per server: its
/// dead-letter stream takes `dlq.>`).
struct Case {
    nats: NatsServer,
    receiver: Receiver,
    config: ConfigDir,
    prefix: String,
}

impl Case {
    async fn start(server_config: &str) -> Self {
        let nats = NatsServer::start_with_config(server_config);
        let receiver = Receiver::ok().await;
        let prefix = unique("auth");
        let config = ConfigDir::new().file(
            "10.yml",
            format!(
                "{}subscriptions:\n{}",
                stream_yaml(&format!("{prefix}_s"), &[&format!("{prefix}.>")]),
                sub_yaml("auth", &format!("{prefix}.>"), &receiver.url("/hook"), ""),
            ),
        );
        Self {
            nats,
            receiver,
            config,
            prefix,
        }
    }

    /// `sinkhost <args> <auth>` against the server, with `env` set.
    async fn cli(&self, args: &[&str], auth: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let all: Vec<&str> = args.iter().chain(auth).copied().collect();
        sinkhost_cli(&all, &self.nats.url(), env, WAIT).await
    }

    /// How many requests with message id `id` the receiver got.
    fn count(&self, id: &str) -> usize {
        self.receiver
            .requests()
            .iter()
            .filter(|r| r.idempotency_key() == Some(id))
            .count()
    }

    /// `sinkhost run` with `auth` flags and `env` delivers a message that
    /// `sinkhost publish` (with the same flags and env) published with id
    /// `id`; `dlq list` and `replay` connect with them too.
    async fn delivers(&self, auth: &[&str], env: &[(&str, &str)], id: &str) {
        let dir = self.config.path().to_str().expect("a UTF-8 path");
        let host = Host::start_with_args(self.config.path(), &self.nats.url(), auth, env).await;
        host.wait_healthy(WAIT).await;

        let subject = format!("{}.{id}", self.prefix);
        let out = self
            .cli(
                &["publish", &subject, "{\"hello\": \"world\"}", "--id", id],
                auth,
                env,
            )
            .await;
        assert!(out.status.success(), "{out:?}");
        let sequence = out
            .stdout
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        let got = self
            .receiver
            .wait_until(|r| r.iter().any(|r| r.idempotency_key() == Some(id)), WAIT)
            .await;
        let request = got
            .iter()
            .find(|r| r.idempotency_key() == Some(id))
            .expect("the request");
        assert_eq!(request.json()["data"]["hello"], "world");
        assert_eq!(request.json()["subject"], subject);

        let out = self
            .cli(&["dlq", "list", "--config-dir", dir], auth, env)
            .await;
        assert!(out.status.success(), "{out:?}");
        assert!(out.stdout.contains("0 dead letter(s)"), "{}", out.stdout);
        let out = self
            .cli(
                &[
                    "replay",
                    "--config-dir",
                    dir,
                    "--subscription",
                    "auth",
                    "--from-seq",
                    &sequence,
                    "--to-seq",
                    &sequence,
                ],
                auth,
                env,
            )
            .await;
        assert!(out.status.success(), "{out:?}");
        assert!(
            out.stdout.contains("replayed 1, delivered 1"),
            "{}",
            out.stdout
        );
        assert_eq!(self.count(id), 2, "the original and the replay");
    }

    /// With the wrong credential `bad`, `sinkhost publish` exits 1 saying
    /// `reason`, and `sinkhost run` stays up, unhealthy, logging `reason` on
    /// every retry.
    async fn refused(&self, bad: &[&str], env: &[(&str, &str)], reason: &str) {
        let out = self.cli(&["publish", "nowhere.x", "lost"], bad, env).await;
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let expected = format!("error: connecting to NATS at {}: {reason}", self.nats.url());
        assert!(
            out.stderr.contains(&expected),
            "expected {expected:?} in:\n{}",
            out.stderr
        );

        let host = Host::start_with_args(self.config.path(), &self.nats.url(), bad, env).await;
        // A second retry naming the reason: it did not give up after the first refusal.
        let retrying =
            |line: &str| line.contains("NATS unavailable; retrying in 1s") && line.contains(reason);
        let first = host
            .wait_for_log_where("a retry naming the reason", retrying, WAIT)
            .await;
        host.wait_for_log_where(
            "a second retry naming the reason",
            |line| retrying(line) && line != first,
            WAIT,
        )
        .await;
        assert_eq!(host.exit_status(), None, "sinkhost run exited");
        let (status, _) = host.http_get("/healthz").await;
        assert_eq!(status, 503);
    }
}

/// A temporary folder for key and certificate files.
struct Files(TempDir);

impl Files {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("a temporary folder"))
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, contents).expect("writing a key file");
        path
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token() {
    let case = Case::start("authorization { token: \"s3cret-token\" }\n").await;
    case.delivers(&["--token", "s3cret-token"], &[], "flag")
        .await;
    // The `nats` CLI's variable works as well as the flag.
    case.delivers(&[], &[("NATS_TOKEN", "s3cret-token")], "env")
        .await;
    // As in the `nats` CLI, a user without a password is a token.
    case.delivers(&["--user", "s3cret-token"], &[], "user")
        .await;
    case.refused(
        &["--token", "wrong"],
        &[],
        "authorization violation: the server refused the credentials",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password() {
    let case =
        Case::start("authorization { users = [ { user: \"alice\", password: \"pw-alice\" } ] }\n")
            .await;
    case.delivers(&["--user", "alice", "--password", "pw-alice"], &[], "flag")
        .await;
    case.delivers(
        &[],
        &[("NATS_USER", "alice"), ("NATS_PASSWORD", "pw-alice")],
        "env",
    )
    .await;
    case.refused(
        &["--user", "alice", "--password", "wrong"],
        &[],
        "authorization violation: the server refused the credentials",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let case = Case::start(&format!(
        "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
        user.public_key()
    ))
    .await;
    let files = Files::new();
    let seed = files.write("user.nk", &format!("{}\n", user.seed().expect("a seed")));
    case.delivers(&["--nkey", text(&seed)], &[], "flag").await;
    case.delivers(&[], &[("NATS_NKEY", text(&seed))], "env")
        .await;
    let stranger = nkeys::KeyPair::new_user();
    let wrong = files.write("stranger.nk", &stranger.seed().expect("a seed"));
    case.refused(
        &["--nkey", text(&wrong)],
        &[],
        "authorization violation: the server refused the credentials",
    )
    .await;
}

/// PEM files for a test CA, a server certificate for 127.0.0.1 and a
/// client certificate, all signed by the CA.
struct Pki {
    files: Files,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn new() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let files = Files::new();
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sinkhost test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("the CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str| {
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            params.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate().expect("a leaf key");
            let cert = params.signed_by(&key, &issuer).expect("a leaf certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "127.0.0.1",
        );
        let (client_cert, client_key) =
            leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, "sinkhost");
        Self {
            ca: files.write("ca.pem", &ca_cert.pem()),
            server_cert: files.write("server.pem", &server_cert),
            server_key: files.write("server-key.pem", &server_key),
            client_cert: files.write("client.pem", &client_cert),
            client_key: files.write("client-key.pem", &client_key),
            files,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_verified_client_certificate() {
    let pki = Pki::new();
    let case = Case::start(&format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 5\n}}\n",
        text(&pki.server_cert),
        text(&pki.server_key),
        text(&pki.ca)
    ))
    .await;
    let (ca, cert, key) = (text(&pki.ca), text(&pki.client_cert), text(&pki.client_key));
    case.delivers(
        &["--tlsca", ca, "--tlscert", cert, "--tlskey", key],
        &[],
        "flag",
    )
    .await;
    case.delivers(
        &[],
        &[("NATS_CA", ca), ("NATS_CERT", cert), ("NATS_KEY", key)],
        "env",
    )
    .await;
    // Without the client certificate the server ends the handshake.
    case.refused(
        &["--tlsca", ca],
        &[],
        "IO error: received fatal alert: CertificateRequired",
    )
    .await;
    let _ = &pki.files;
}

/// One signed NATS JWT: `claims` plus `jti`, `iat`, `iss` (the signer) and
/// `sub`, signed with the issuer's nkey as nats-server verifies it.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": unique("jti"),
        "iat": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let signed = format!("{header}.{}", b64.encode(claims.to_string()));
    let signature = issuer.sign(signed.as_bytes()).expect("signing a JWT");
    format!("{signed}.{}", b64.encode(signature))
}

/// A `.creds` file as `nsc` writes it.
fn creds(user_jwt: &str, user: &nkeys::KeyPair) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().expect("a seed")
    )
}

/// A user JWT of `account` for `user`.
fn user_jwt(account: &nkeys::KeyPair, user: &nkeys::KeyPair) -> String {
    jwt(
        account,
        &user.public_key(),
        "sinkhost",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_file_in_operator_mode() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "test-account",
        serde_json::json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
            },
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account", "version": 2
        }),
    );
    // JetStream in operator mode needs a system account.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    let case = Case::start(&format!(
        "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{\n  {sys}: \"{system_jwt}\"\n  {acc}: \"{account_jwt}\"\n}}\n",
        sys = system.public_key(),
        acc = account.public_key(),
    ))
    .await;
    let files = Files::new();
    let good = files.write("user.creds", &creds(&user_jwt(&account, &user), &user));
    case.delivers(&["--creds", text(&good)], &[], "flag").await;
    case.delivers(&[], &[("NATS_CREDS", text(&good))], "env")
        .await;
    // A user of an account the server does not know.
    let stranger = nkeys::KeyPair::new_account();
    let bad = files.write("stranger.creds", &creds(&user_jwt(&stranger, &user), &user));
    case.refused(
        &["--creds", text(&bad)],
        &[],
        "authorization violation: the server refused the credentials",
    )
    .await;
}
