//! `sinkhost plugin new`: write a plugin project that builds and passes
//! `sinkhost plugin conformance` untouched, from templates compiled into the
//! binary.
//!
//! A JS or Python project gets the WIT and the helper module from the binary
//! itself. A Rust project gets the SDK as a release ships it in
//! `share/sinkhost/` (found beside the binary, or given with `--sdk`), copied
//! into the project's `vendor/` so it builds on its own; a binary run from a
//! source checkout without one points at the checkout's `sdk/` instead.
//! Owns only file generation; building the plugin is the language's own
//! toolchain's job ([`Project::next_steps`] says how).

use std::path::{Path, PathBuf};

/// A plugin language with a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, through sinkhost-sdk.
    Rust,
    /// JavaScript, built with componentize-js.
    Js,
    /// Python, built with componentize-py.
    Python,
}

/// The WIT package, copied into JS and Python projects (their toolchains read it).
const WIT: &[(&str, &str)] = &[
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
    ("wit/http.wit", include_str!("../../../wit/http.wit")),
    ("wit/log.wit", include_str!("../../../wit/log.wit")),
    ("wit/sink.wit", include_str!("../../../wit/sink.wit")),
];

/// The JS helper and the TypeScript declarations of it and of the WIT
/// (`sdk/js/`), copied into a JS project's `src/`.
const JS_SDK: &[(&str, &str)] = &[
    (
        "src/sinkhost.js",
        include_str!("../../../sdk/js/sinkhost.js"),
    ),
    (
        "src/sinkhost.d.ts",
        include_str!("../../../sdk/js/sinkhost.d.ts"),
    ),
    (
        "src/types/sink-plugin.d.ts",
        include_str!("../../../sdk/js/types/sink-plugin.d.ts"),
    ),
    (
        "src/types/interfaces/sinkhost-plugin-http.d.ts",
        include_str!("../../../sdk/js/types/interfaces/sinkhost-plugin-http.d.ts"),
    ),
    (
        "src/types/interfaces/sinkhost-plugin-log.d.ts",
        include_str!("../../../sdk/js/types/interfaces/sinkhost-plugin-log.d.ts"),
    ),
    (
        "src/types/interfaces/sinkhost-plugin-sink.d.ts",
        include_str!("../../../sdk/js/types/interfaces/sinkhost-plugin-sink.d.ts"),
    ),
    (
        "src/types/interfaces/sinkhost-plugin-types.d.ts",
        include_str!("../../../sdk/js/types/interfaces/sinkhost-plugin-types.d.ts"),
    ),
];

/// What a release's `share/sinkhost/` holds for Rust projects: copied into
/// the project's `vendor/`.
const RUST_SDK: [&str; 3] = ["wit", "sinkhost-sdk", "sinkhost-trace-context"];

/// Why the project could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not usable as a package name.
    #[error("plugin name {0:?}: use lower-case letters, digits and '-', starting with a letter")]
    BadName(String),
    /// The target folder exists.
    #[error("{} already exists; pick another name or folder", .0.display())]
    Exists(PathBuf),
    /// The Rust SDK was not found.
    #[error(
        "cannot find the Rust SDK (looked in {}); pass --sdk <the share/sinkhost folder of an unpacked release>",
        .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoSdk(Vec<PathBuf>),
    /// Writing failed.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A project written by [`create`].
#[derive(Debug)]
pub struct Project {
    /// Its folder.
    pub root: PathBuf,
    /// The files written (a copied folder counts once).
    pub files: Vec<PathBuf>,
    name: String,
    lang: Lang,
}

impl Project {
    /// The commands that build it and check the result, for the author to run.
    pub fn next_steps(&self) -> String {
        let name = &self.name;
        let (build, wasm) = match self.lang {
            Lang::Rust => (
                "rustup target add wasm32-wasip2   # once\n  cargo build --release --target wasm32-wasip2".to_owned(),
                format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_")),
            ),
            Lang::Js => (
                "npm install\n  npm run build   # the first `plugin test` then compiles it for ~20 s".to_owned(),
                format!("{name}.wasm"),
            ),
            Lang::Python => (
                format!(
                    "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt\n  \
                     .venv/bin/componentize-py -d wit -w sink-plugin componentize app -o {name}.wasm"
                ),
                format!("{name}.wasm"),
            ),
        };
        format!(
            "  cd {}\n  {build}\n  sinkhost plugin test {wasm} --subject order.completed --payload order.json --dry-run\n  \
             sinkhost plugin conformance {wasm}",
            self.root.display()
        )
    }
}

/// The SDK of the source tree this binary was built from, if still there.
fn checkout_sdk() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk")).to_path_buf()
}

/// `share/sinkhost` of the release this binary runs from (`bin/sinkhost`).
fn installed_share() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    Some(exe.parent()?.parent()?.join("share/sinkhost"))
}

/// Where a Rust project gets its SDK from.
enum RustSdk {
    /// A release's `share/sinkhost`: copied into `vendor/`.
    Shipped(PathBuf),
    /// A source checkout's `sdk/`: depended on by path.
    Checkout(PathBuf),
}

impl RustSdk {
    fn find(given: Option<&Path>) -> Result<Self, ScaffoldError> {
        let candidates: Vec<PathBuf> = match given {
            Some(dir) => vec![dir.to_owned()],
            None => installed_share()
                .into_iter()
                .chain([checkout_sdk()])
                .collect(),
        };
        for dir in &candidates {
            let Ok(dir) = dir.canonicalize() else {
                continue;
            };
            if dir.join("sinkhost-sdk/Cargo.toml").is_file() {
                return Ok(RustSdk::Shipped(dir));
            }
            if dir.join("Cargo.toml").is_file() && dir.join("src/lib.rs").is_file() {
                return Ok(RustSdk::Checkout(dir));
            }
        }
        Err(ScaffoldError::NoSdk(candidates))
    }
}

/// Writes a new plugin project `name` for `lang` into `parent/name`; a Rust
/// project takes its SDK from `sdk` (see [`RustSdk`]) when given.
pub fn create(
    name: &str,
    lang: Lang,
    parent: &Path,
    sdk: Option<&Path>,
) -> Result<Project, ScaffoldError> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    let root = parent.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    let fill = |text: &str| text.replace("{{name}}", name);
    let mut copies = Vec::new();
    let mut files: Vec<(&str, String)> = match lang {
        Lang::Rust => {
            let sdk_path = match RustSdk::find(sdk)? {
                RustSdk::Shipped(share) => {
                    copies.extend(RUST_SDK.map(|dir| (share.join(dir), format!("vendor/{dir}"))));
                    "vendor/sinkhost-sdk".to_owned()
                }
                RustSdk::Checkout(dir) => dir.display().to_string(),
            };
            let fill = |text: &str| {
                fill(text)
                    .replace("{{crate}}", &name.replace('-', "_"))
                    .replace("{{sdk_path}}", &sdk_path)
            };
            vec![
                (
                    "Cargo.toml",
                    fill(include_str!("../../../templates/rust/Cargo.toml.tmpl")),
                ),
                (
                    "src/lib.rs",
                    fill(include_str!("../../../templates/rust/src/lib.rs.tmpl")),
                ),
            ]
        }
        Lang::Js => vec![
            (
                "package.json",
                fill(include_str!("../../../templates/js/package.json.tmpl")),
            ),
            (
                "src/plugin.js",
                include_str!("../../../templates/js/src/plugin.js").to_owned(),
            ),
            (
                "jsconfig.json",
                include_str!("../../../templates/js/jsconfig.json").to_owned(),
            ),
        ]
        .into_iter()
        .chain(
            JS_SDK
                .iter()
                .map(|(path, text)| (*path, (*text).to_owned())),
        )
        .collect(),
        Lang::Python => vec![
            (
                "requirements.txt",
                include_str!("../../../templates/python/requirements.txt").to_owned(),
            ),
            (
                "app.py",
                fill(include_str!("../../../templates/python/app.py")),
            ),
            (
                "sinkhost.py",
                include_str!("../../../sdk/python/sinkhost.py").to_owned(),
            ),
        ],
    };
    if lang != Lang::Rust {
        files.extend(WIT.iter().map(|(path, text)| (*path, (*text).to_owned())));
    }
    files.push((
        "order.json",
        include_str!("../../../templates/order.json").to_owned(),
    ));
    let mut written = Vec::new();
    for (relative, contents) in files {
        let path = root.join(relative);
        let io = |source| ScaffoldError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(path.parent().expect("a file in the project")).map_err(io)?;
        std::fs::write(&path, contents).map_err(io)?;
        written.push(path);
    }
    for (from, relative) in copies {
        let to = root.join(relative);
        copy_tree(&from, &to)?;
        written.push(to);
    }
    Ok(Project {
        root,
        files: written,
        name: name.to_owned(),
        lang,
    })
}

/// Copies the folder `from` to `to`, recursively.
fn copy_tree(from: &Path, to: &Path) -> Result<(), ScaffoldError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ScaffoldError::Io { path, source }
    };
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io(&entry.path()))?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(io(&target))?;
        }
    }
    Ok(())
}
