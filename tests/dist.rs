//! The release tarball (`make dist`) on its own. Unpacked into an empty directory
//! and run from there, with no `SINKHOST_PLUGIN_DIR`, its `sinkhost` must find the
//! built-in plugins it ships beside itself: `check` accepts the shipped config.d,
//! and `run` on that config.d delivers through all three built-in plugins to a real
//! receiver via a real nats-server. `make test` builds the tarball first.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{Installed, NatsServer, Receiver, Recorded, publish, workspace_root};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(30);

/// The variables the shipped config.d reads, pointed at `receiver` (or at a
/// placeholder URL when there is none), with secrets a test can recognise.
fn deployment_env(receiver: Option<&Receiver>) -> Vec<(&'static str, String)> {
    let url = |path: &str| match receiver {
        Some(receiver) => receiver.url(path),
        None => format!("https://destination.example{path}"),
    };
    vec![
        ("BACKEND_WEBHOOK_URL", url("/api/v1/webhooks/nats")),
        ("NATS_WEBHOOK_SECRET", "dist-backend-secret".into()),
        ("MAILER_WEBHOOK_URL", url("/mail-template")),
        ("MAILER_API_KEY", "dist-mailer-key".into()),
        ("DRUPAL_STRIPE_WEBHOOK_URL", url("/stripe-webhook")),
        ("DRUPAL_WEBHOOK_SECRET", "dist-drupal-secret".into()),
        ("DRUPAL_STRIPE_SIGNING_SECRET", "whsec_dist-t3st".into()),
    ]
}

fn as_env<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

/// `sinkhost-<version>-<arch>-linux`, the tarball's name and its one top directory.
fn dist_name() -> String {
    format!(
        "sinkhost-{}-{}-linux",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

/// The tarball unpacked into a fresh temporary directory (deleted on Drop).
struct Unpacked {
    _dir: TempDir,
    /// The tarball's top directory.
    root: PathBuf,
}

impl Unpacked {
    fn new() -> Self {
        let tarball = workspace_root()
            .join("target/dist")
            .join(format!("{}.tar.gz", dist_name()));
        assert!(
            tarball.is_file(),
            "{} is missing: run `make dist` first",
            tarball.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("sinkhost-dist-")
            .tempdir()
            .expect("creating a temporary directory");
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(dir.path())
            .status()
            .expect("running tar");
        assert!(status.success(), "tar -xzf {}: {status}", tarball.display());
        let root = dir.path().join(dist_name());
        Self { _dir: dir, root }
    }

    /// The unpacked binary, run from the top directory as an operator would.
    fn sinkhost(&self) -> Installed {
        Installed {
            bin: self.root.join("bin/sinkhost"),
            cwd: self.root.clone(),
        }
    }

    /// Every file below the top directory, as relative paths.
    fn files(&self) -> BTreeSet<String> {
        fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).expect("reading the unpacked tarball") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    let relative = path.strip_prefix(root).expect("below the root");
                    out.insert(relative.display().to_string());
                }
            }
        }
        let mut files = BTreeSet::new();
        walk(&self.root, &self.root, &mut files);
        files
    }
}

/// The repository's config.d/*.yml file names.
fn repo_config_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workspace_root().join("config.d"))
        .expect("reading config.d")
        .map(|entry| entry.expect("a directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yml"))
        .collect();
    names.sort();
    names
}

#[test]
fn tarball_holds_the_binary_the_built_in_plugins_config_d_and_the_systemd_unit() {
    let unpacked = Unpacked::new();

    let mut expected: BTreeSet<String> = [
        "INSTALL.md",
        "bin/sinkhost",
        "bin/plugins/http-webhook.wasm",
        "bin/plugins/mailer-apikey.wasm",
        "bin/plugins/drupal-stripe.wasm",
        "systemd/sinkhost.service",
        "systemd/sinkhost.env",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    expected.extend(repo_config_files().iter().map(|n| format!("config.d/{n}")));
    assert_eq!(unpacked.files(), expected);

    let mode = std::fs::metadata(unpacked.root.join("bin/sinkhost"))
        .expect("bin/sinkhost")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o111,
        0o111,
        "bin/sinkhost is not executable: {mode:o}"
    );
    for name in repo_config_files() {
        assert_eq!(
            std::fs::read(unpacked.root.join("config.d").join(&name)).unwrap(),
            std::fs::read(workspace_root().join("config.d").join(&name)).unwrap(),
            "config.d/{name} differs from the repository's"
        );
    }
    let unit = std::fs::read_to_string(unpacked.root.join("systemd/sinkhost.service")).unwrap();
    for line in [
        "ExecStart=/opt/sinkhost/bin/sinkhost run --config-dir /etc/sinkhost/config.d",
        "EnvironmentFile=/etc/sinkhost/sinkhost.env",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "DynamicUser=yes",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "sinkhost.service lacks {line:?}:\n{unit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpacked_check_accepts_the_shipped_config_d_without_a_plugin_dir() {
    let unpacked = Unpacked::new();
    let env = deployment_env(None);

    let out = unpacked
        .sinkhost()
        .cli(
            &["check", "--config-dir", "config.d"],
            "nats://127.0.0.1:4222",
            &as_env(&env),
            WAIT,
        )
        .await;

    assert!(
        out.status.success(),
        "`sinkhost check` failed ({}):\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );
    for (name, subject, plugin) in [
        ("backend-all-events", ">", "http-webhook"),
        ("mailer-auth-events", "mail.>", "mailer-apikey"),
        ("stripe-drupal", "stripe.drupal", "drupal-stripe"),
    ] {
        assert!(
            out.stdout.lines().any(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.starts_with(&["ok", name, subject, "plugin", plugin])
            }),
            "no `ok  {name} {subject} plugin {plugin}` line in:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .lines()
            .any(|line| line == "config.d is valid: 3 subscription(s)"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpacked_run_delivers_through_every_built_in_plugin() {
    let unpacked = Unpacked::new();
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let env = deployment_env(Some(&receiver));

    let host = unpacked
        .sinkhost()
        .start(Path::new("config.d"), &nats.url(), &as_env(&env))
        .await;
    host.wait_healthy(WAIT).await;

    let js = nats.jetstream().await;
    let mail = r#"{"to":"fan@example.com"}"#;
    let stripe = r#"{"id":"evt_dist_1","type":"charge.succeeded","data":{"object":{}}}"#;
    publish(&js, "mail.welcome", mail, &[("Nats-Msg-Id", "dist-mail-1")]).await;
    publish(
        &js,
        "stripe.drupal",
        stripe,
        &[("Nats-Msg-Id", "dist-stripe-1")],
    )
    .await;

    // The catch-all gets both; the mailer and Drupal one each.
    let requests = receiver.wait_for(4, WAIT).await;
    let at =
        |path: &str| -> Vec<&Recorded> { requests.iter().filter(|r| r.path == path).collect() };

    let mailer = at("/mail-template");
    assert_eq!(mailer.len(), 1, "{requests:?}");
    assert_eq!(mailer[0].header("x-api-key"), Some("dist-mailer-key"));
    assert_eq!(mailer[0].json()["template"], "welcome");
    assert_eq!(mailer[0].json()["data"]["to"], "fan@example.com");

    let drupal = at("/stripe-webhook");
    assert_eq!(drupal.len(), 1, "{requests:?}");
    assert_eq!(drupal[0].body_text(), stripe);
    assert_eq!(
        drupal[0].header("authorization"),
        Some("Bearer dist-drupal-secret")
    );
    let signature = drupal[0].header("stripe-signature").unwrap_or_default();
    assert!(
        signature.starts_with("t=") && signature.contains(",v1="),
        "Stripe-Signature: {signature:?}"
    );

    let backend = at("/api/v1/webhooks/nats");
    let subjects: BTreeSet<String> = backend
        .iter()
        .map(|r| r.json()["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        subjects,
        BTreeSet::from(["mail.welcome".to_owned(), "stripe.drupal".to_owned()])
    );
    for request in backend {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer dist-backend-secret")
        );
    }
}
