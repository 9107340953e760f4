//! The release tarball (`make dist`) on its own. Unpacked into an empty directory
//! and run from there, with no `SINKHOST_PLUGIN_DIR`, its `sinkhost` must find the
//! built-in plugins it ships beside itself: `check` accepts the shipped config.d,
//! and `run` on that config.d delivers through all three built-in plugins to a real
//! receiver via a real nats-server; and `plugin new` in each language writes a
//! project that builds with that language's toolchain against what the tarball
//! ships alone and passes `plugin conformance`. `make test` builds the tarball
//! first.

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
    let (sdk, rest): (BTreeSet<String>, BTreeSet<String>) = unpacked
        .files()
        .into_iter()
        .partition(|f| f.starts_with("share/sinkhost/"));
    assert_eq!(rest, expected);
    // What plugin authors build against, the WIT as the repository has it.
    for file in [
        "share/sinkhost/sinkhost-sdk/Cargo.toml",
        "share/sinkhost/sinkhost-sdk/src/lib.rs",
        "share/sinkhost/sinkhost-trace-context/Cargo.toml",
        "share/sinkhost/sinkhost-trace-context/src/lib.rs",
        "share/sinkhost/js/sinkhost.js",
        "share/sinkhost/js/sinkhost.d.ts",
        "share/sinkhost/js/types/sink-plugin.d.ts",
        "share/sinkhost/python/sinkhost.py",
    ] {
        assert!(sdk.contains(file), "{file} is not in the tarball: {sdk:?}");
    }
    for wit in ["types", "http", "log", "sink"] {
        assert_eq!(
            std::fs::read(unpacked.root.join(format!("share/sinkhost/wit/{wit}.wit"))).unwrap(),
            std::fs::read(workspace_root().join(format!("wit/{wit}.wit"))).unwrap(),
            "share/sinkhost/wit/{wit}.wit differs from the repository's"
        );
    }

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

/// `plugin new NAME --lang LANG` with the unpacked binary in an empty folder,
/// the build commands its "next" lines print (run in the project, with
/// `env`), then `plugin conformance` on the component: every check passes.
async fn plugin_new_builds_and_conforms(
    lang: &str,
    build: &[&[&str]],
    wasm: impl Fn(&Path) -> PathBuf,
    env: &[(&str, String)],
) {
    let unpacked = Unpacked::new();
    let sinkhost = unpacked.sinkhost();
    let parent = TempDir::new().unwrap();
    let name = format!("my-{lang}-sink");
    let dir = parent.path().to_str().unwrap();
    let out = sinkhost
        .cli(
            &["plugin", "new", &name, "--lang", lang, "--dir", dir],
            "nats://unused:1",
            &[],
            WAIT,
        )
        .await;
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("\nnext:\n"), "{}", out.stdout);
    let project = parent.path().join(&name);
    if lang == "rust" {
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(r#"sinkhost-sdk = { path = "vendor/sinkhost-sdk" }"#),
            "{manifest}"
        );
    }
    for command in build {
        // `.venv/bin/pip` and the like: the project's own.
        let program = match command[0] {
            local if local.starts_with(".venv/") => project.join(local),
            program => PathBuf::from(program),
        };
        let output = tokio::process::Command::new(program)
            .args(&command[1..])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(&project)
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
        assert!(
            output.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wasm = wasm(&project);
    let out = sinkhost
        .cli(
            &["plugin", "conformance", wasm.to_str().unwrap()],
            "nats://unused:1",
            &[],
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stdout
            .ends_with("passed: 12 checks, 0 failed, 0 advice (not required)\n"),
        "{}",
        out.stdout
    );
    let dry_run = sinkhost
        .cli(
            &[
                "plugin",
                "test",
                wasm.to_str().unwrap(),
                "--subject",
                "order.completed",
                "--payload",
                project.join("order.json").to_str().unwrap(),
                "--respond",
                "404",
            ],
            "nats://unused:1",
            &[],
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(dry_run.status.code(), Some(1), "{dry_run:?}");
    assert!(
        dry_run.stdout.contains(r#""order_id":42"#) || dry_run.stdout.contains(r#""order_id": 42"#),
        "{}",
        dry_run.stdout
    );
    assert!(
        dry_run.stdout.contains("\nhost: dead-letter: rejected: "),
        "{}",
        dry_run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_new_rust_builds_from_the_tarball_alone_and_conforms() {
    // A target dir under the workspace's keeps re-runs incremental.
    let target = workspace_root().join("target/scaffold-test");
    plugin_new_builds_and_conforms(
        "rust",
        &[&[
            env!("CARGO"),
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
        ]],
        |_| target.join("wasm32-wasip2/release/my_rust_sink.wasm"),
        &[("CARGO_TARGET_DIR", target.display().to_string())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_new_js_builds_from_the_tarball_alone_and_conforms() {
    plugin_new_builds_and_conforms(
        "js",
        &[
            &[
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefer-offline",
            ],
            &["npm", "run", "build"],
        ],
        |project| project.join("my-js-sink.wasm"),
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_new_python_builds_from_the_tarball_alone_and_conforms() {
    plugin_new_builds_and_conforms(
        "python",
        &[
            &["python3", "-m", "venv", ".venv"],
            &[
                ".venv/bin/pip",
                "install",
                "--quiet",
                "-r",
                "requirements.txt",
            ],
            &[
                ".venv/bin/componentize-py",
                "-d",
                "wit",
                "-w",
                "sink-plugin",
                "componentize",
                "app",
                "-o",
                "my-python-sink.wasm",
            ],
        ],
        |project| project.join("my-python-sink.wasm"),
        &[],
    )
    .await;
}
