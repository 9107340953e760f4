//! `sinkhost plugin new`: write a plugin project that builds and passes
//! `sinkhost plugin test` untouched, from templates compiled into the binary.
//!
//! Owns only file generation; building the plugin is the language's own
//! toolchain's job (the generated README says how).

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
    #[error("cannot find sinkhost-sdk (looked at {}); pass --sdk <path to the repo's sdk/>", .0.display())]
    NoSdk(PathBuf),
    /// Writing failed.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The SDK of the source tree this binary was built from, if still there.
pub fn default_sdk() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk")).to_path_buf()
}

/// Writes a new plugin project `name` for `lang` into `parent/name` and
/// returns the files written.
pub fn create(
    name: &str,
    lang: Lang,
    parent: &Path,
    sdk: &Path,
) -> Result<Vec<PathBuf>, ScaffoldError> {
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
    let mut files: Vec<(&str, String)> = match lang {
        Lang::Rust => {
            let sdk = sdk
                .canonicalize()
                .ok()
                .filter(|p| p.join("Cargo.toml").is_file())
                .ok_or_else(|| ScaffoldError::NoSdk(sdk.to_owned()))?;
            let fill = |text: &str| {
                fill(text)
                    .replace("{{crate}}", &name.replace('-', "_"))
                    .replace("{{sdk_path}}", &sdk.display().to_string())
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
        ],
        Lang::Python => vec![
            (
                "requirements.txt",
                include_str!("../../../templates/python/requirements.txt").to_owned(),
            ),
            (
                "app.py",
                fill(include_str!("../../../templates/python/app.py")),
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
    Ok(written)
}
