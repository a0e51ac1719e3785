//! Compose files as `rbuild bake` reads them: each service's `build:` section and `image:`,
//! after Compose's variable interpolation (the environment, then the project's `.env`).
//! Pure: it describes builds and runs none.
//!
//! Imports: nothing of the crate (see `tests/architecture.rs`).

mod interpolate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use interpolate::{InterpolateError, interpolate};

/// The largest Compose file read (a project's file is a few kilobytes).
pub const MAX_FILE: u64 = 4 << 20;

/// The files `rbuild bake` looks for without `-f`, in Compose's order.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// What is wrong with a Compose file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or `.env` cannot be read.
    #[error("cannot read `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Larger than [`MAX_FILE`].
    #[error("`{path}` is larger than {MAX_FILE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not YAML.
    #[error("`{path}` is not valid YAML: {reason}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with its line and column.
        reason: String,
    },
    /// A value's variables cannot be interpolated.
    #[error("`{path}`: {field}")]
    Interpolate {
        /// The file.
        path: PathBuf,
        /// Where: `services.web.build.args.VERSION`.
        field: String,
        /// Why.
        #[source]
        source: InterpolateError,
    },
    /// A field of the wrong shape.
    #[error("`{path}`: {field}: {reason}")]
    Field {
        /// The file.
        path: PathBuf,
        /// Where: `services.web.build`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A service asked for that the file does not have, or has no `build:`.
    #[error("no service `{name}` with a build section; there are: {available}")]
    UnknownService {
        /// The name given.
        name: String,
        /// The services that can be built.
        available: String,
    },
}

/// A secret a build reads: a file or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretSource {
    /// `file:`, absolute.
    File(PathBuf),
    /// `environment:`, the variable's name.
    Env(String),
}

/// One service's build, every value interpolated and every path absolute.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Build {
    /// The context: a directory (absolute) or a URL.
    pub context: String,
    /// The Dockerfile (absolute, or relative to a URL context); `None` with `dockerfile_inline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// `dockerfile_inline`: the Dockerfile's text.
    #[serde(rename = "dockerfile-inline", skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    /// `args`: `None` takes the value from the environment.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, Option<String>>,
    /// `target`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `image:` first, then `build.tags`.
    pub tags: Vec<String>,
    /// `labels`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `cache_from`.
    #[serde(rename = "cache-from", skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    /// `cache_to`.
    #[serde(rename = "cache-to", skip_serializing_if = "Vec::is_empty")]
    pub cache_to: Vec<String>,
    /// `platforms`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// `secrets`: the id the build sees, and where its value is.
    #[serde(rename = "secret", skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretSource>,
    /// `additional_contexts`: name → directory (absolute), URL or `docker-image://REF`.
    #[serde(rename = "contexts", skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_contexts: BTreeMap<String, String>,
    /// `network`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `no_cache`.
    #[serde(rename = "no-cache", skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
    /// `pull`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pull: bool,
}

/// A Compose project's builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The project's name: `name:`, else the file's directory's name, lower case.
    pub name: String,
    /// The directory relative paths are read against.
    pub dir: PathBuf,
    /// Each service that has a `build:` section, by name.
    pub builds: BTreeMap<String, Build>,
}

impl Project {
    /// The builds of `names` (all when empty), in name order.
    ///
    /// # Errors
    /// A name that is not a service with a build section.
    pub fn select(&self, names: &[String]) -> Result<Vec<(&str, &Build)>, Error> {
        if names.is_empty() {
            return Ok(self.builds.iter().map(|(n, b)| (n.as_str(), b)).collect());
        }
        let mut out = Vec::new();
        for n in names {
            let (name, build) =
                self.builds
                    .get_key_value(n)
                    .ok_or_else(|| Error::UnknownService {
                        name: n.clone(),
                        available: self.builds.keys().cloned().collect::<Vec<_>>().join(", "),
                    })?;
            if !out.iter().any(|(o, _)| *o == name.as_str()) {
                out.push((name.as_str(), build));
            }
        }
        Ok(out)
    }

    /// The builds as `docker buildx bake --print` shows them: a `default` group of every
    /// target, and each target's definition.
    pub fn print(&self, names: &[(&str, &Build)]) -> serde_json::Value {
        let targets: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
        let defs: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .map(|(n, b)| ((*n).to_owned(), serde_json::to_value(b).unwrap_or_default()))
            .collect();
        serde_json::json!({
            "group": {"default": {"targets": targets}},
            "target": defs,
        })
    }
}

/// Reads the Compose file `path`. Variables come from `env` (the process's), then from the
/// `.env` beside the file (the environment wins, as Compose's).
///
/// # Errors
/// The file cannot be read or is not a Compose file, a variable cannot be interpolated.
pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Project, Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let dir = std::path::absolute(&dir).map_err(|source| Error::Read {
        path: dir.clone(),
        source,
    })?;
    let src = read_bounded(path)?;
    let mut vars = match read_bounded(&dir.join(".env")) {
        Ok(text) => dotenv(&text),
        Err(Error::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            BTreeMap::new()
        }
        Err(e) => return Err(e),
    };
    vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut doc: serde_json::Value = serde_saphyr::from_str(&src).map_err(|e| Error::Yaml {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    interpolate_all(&mut doc, &vars, "", path)?;
    let reader = Reader {
        path,
        dir: &dir,
        doc: &doc,
    };
    let name = doc
        .get("name")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "project".into())
        .to_ascii_lowercase();
    let mut builds = BTreeMap::new();
    if let Some(services) = doc.get("services") {
        let services = services
            .as_object()
            .ok_or_else(|| reader.field("services", "expected a mapping"))?;
        for (service, def) in services {
            if let Some(b) = reader.build(&name, service, def)? {
                builds.insert(service.clone(), b);
            }
        }
    }
    Ok(Project { name, dir, builds })
}

fn read_bounded(path: &Path) -> Result<String, Error> {
    use std::io::Read;
    let read = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let f = fs_err::File::open(path).map_err(read)?;
    let mut text = String::new();
    f.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_FILE {
        return Err(Error::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

/// `KEY=VALUE` lines (`#` comments, `export `, quotes), as Compose reads `.env`.
fn dotenv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = match (v.chars().next(), v.chars().last()) {
                (Some(q @ ('"' | '\'')), Some(e)) if e == q && v.len() >= 2 => &v[1..v.len() - 1],
                _ => v.split(" #").next().unwrap_or(v).trim_end(),
            };
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

/// Every string of `doc` interpolated, except under `x-` extension keys' values (Compose
/// interpolates those too, but nothing rbuild reads is there).
fn interpolate_all(
    doc: &mut serde_json::Value,
    vars: &BTreeMap<String, String>,
    at: &str,
    path: &Path,
) -> Result<(), Error> {
    match doc {
        serde_json::Value::String(s) => {
            *s = interpolate(s, vars).map_err(|source| Error::Interpolate {
                path: path.to_owned(),
                field: at.trim_start_matches('.').to_owned(),
                source,
            })?;
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                interpolate_all(v, vars, &format!("{at}[{i}]"), path)?;
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                interpolate_all(v, vars, &format!("{at}.{k}"), path)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Reads fields of one document, naming them in errors.
struct Reader<'a> {
    path: &'a Path,
    dir: &'a Path,
    doc: &'a serde_json::Value,
}

impl Reader<'_> {
    fn field(&self, field: &str, reason: &str) -> Error {
        Error::Field {
            path: self.path.to_owned(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// A relative path made absolute against `base`; a URL kept.
    fn path_in(base: &Path, p: &str) -> String {
        if p.contains("://") || p.starts_with("git@") {
            p.to_owned()
        } else {
            let joined = base.join(p);
            std::path::absolute(&joined)
                .unwrap_or(joined)
                .display()
                .to_string()
        }
    }

    fn build(
        &self,
        project: &str,
        service: &str,
        def: &serde_json::Value,
    ) -> Result<Option<Build>, Error> {
        let at = format!("services.{service}.build");
        let build = match def.get("build") {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(context)) => {
                serde_json::json!({ "context": context })
            }
            Some(b @ serde_json::Value::Object(_)) => b.clone(),
            Some(_) => return Err(self.field(&at, "expected a context path or a mapping")),
        };
        let s = |key: &str| -> Result<Option<String>, Error> {
            match build.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(v)) => Ok(Some(v.clone())),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    Ok(Some(v.to_string()))
                }
                Some(_) => Err(self.field(&format!("{at}.{key}"), "expected a string")),
            }
        };
        let context = Self::path_in(self.dir, &s("context")?.unwrap_or_else(|| ".".into()));
        let inline = s("dockerfile_inline")?;
        let dockerfile = match (s("dockerfile")?, &inline) {
            (Some(_), Some(_)) => {
                return Err(self.field(
                    &at,
                    "`dockerfile` and `dockerfile_inline` cannot both be set",
                ));
            }
            (Some(f), None) if context.contains("://") || Path::new(&f).is_absolute() => Some(f),
            (Some(f), None) => Some(Self::path_in(Path::new(&context), &f)),
            (None, Some(_)) => None,
            (None, None) if context.contains("://") => Some("Dockerfile".into()),
            (None, None) => Some(Self::path_in(Path::new(&context), "Dockerfile")),
        };
        let mut tags: Vec<String> = Vec::new();
        match def.get("image").and_then(serde_json::Value::as_str) {
            Some(image) => tags.push(image.to_owned()),
            // Compose's default name for a built image: PROJECT-SERVICE.
            None => tags.push(format!("{project}-{service}")),
        }
        tags.extend(self.strings(&build, &at, "tags")?);
        let flag = |key: &str| -> Result<bool, Error> {
            match build.get(key) {
                None | Some(serde_json::Value::Null) => Ok(false),
                Some(serde_json::Value::Bool(b)) => Ok(*b),
                Some(serde_json::Value::String(v)) if v == "true" || v == "false" => {
                    Ok(v == "true")
                }
                Some(_) => Err(self.field(&format!("{at}.{key}"), "expected true or false")),
            }
        };
        let labels = self
            .pairs(&build, &at, "labels")?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        let mut additional_contexts = BTreeMap::new();
        for (k, v) in self.pairs(&build, &at, "additional_contexts")? {
            let v =
                v.ok_or_else(|| self.field(&format!("{at}.additional_contexts.{k}"), "no value"))?;
            let v = if v.starts_with("docker-image://") {
                v
            } else {
                Self::path_in(self.dir, &v)
            };
            additional_contexts.insert(k, v);
        }
        Ok(Some(Build {
            context,
            dockerfile,
            dockerfile_inline: inline,
            args: self.pairs(&build, &at, "args")?,
            target: s("target")?,
            tags,
            labels,
            cache_from: self.strings(&build, &at, "cache_from")?,
            cache_to: self.strings(&build, &at, "cache_to")?,
            platforms: self.strings(&build, &at, "platforms")?,
            secrets: self.secrets(&build, &at)?,
            additional_contexts,
            network: s("network")?,
            no_cache: flag("no_cache")?,
            pull: flag("pull")?,
        }))
    }

    /// A list of strings.
    fn strings(
        &self,
        build: &serde_json::Value,
        at: &str,
        key: &str,
    ) -> Result<Vec<String>, Error> {
        match build.get(key) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str().map(str::to_owned).ok_or_else(|| {
                        self.field(&format!("{at}.{key}"), "expected a list of strings")
                    })
                })
                .collect(),
            Some(_) => Err(self.field(&format!("{at}.{key}"), "expected a list of strings")),
        }
    }

    /// A mapping (`KEY: value`) or a list (`KEY=value`, a bare `KEY`: no value).
    fn pairs(
        &self,
        build: &serde_json::Value,
        at: &str,
        key: &str,
    ) -> Result<BTreeMap<String, Option<String>>, Error> {
        let bad = || {
            self.field(
                &format!("{at}.{key}"),
                "expected a mapping or a list of KEY=VALUE",
            )
        };
        match build.get(key) {
            None | Some(serde_json::Value::Null) => Ok(BTreeMap::new()),
            Some(serde_json::Value::Object(map)) => map
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                            Some(v.to_string())
                        }
                        _ => return Err(bad()),
                    };
                    Ok((k.clone(), v))
                })
                .collect(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| {
                    let i = i.as_str().ok_or_else(bad)?;
                    Ok(match i.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (i.to_owned(), None),
                    })
                })
                .collect(),
            Some(_) => Err(bad()),
        }
    }

    /// `build.secrets` (short `- name` or long `- source: name, target: id`), each looked up
    /// in the top-level `secrets:`.
    fn secrets(
        &self,
        build: &serde_json::Value,
        at: &str,
    ) -> Result<BTreeMap<String, SecretSource>, Error> {
        let mut out = BTreeMap::new();
        let Some(list) = build.get("secrets") else {
            return Ok(out);
        };
        let list = list
            .as_array()
            .ok_or_else(|| self.field(&format!("{at}.secrets"), "expected a list"))?;
        for item in list {
            let (source, target) = match item {
                serde_json::Value::String(s) => (s.clone(), s.clone()),
                serde_json::Value::Object(m) => {
                    let source = m
                        .get("source")
                        .and_then(serde_json::Value::as_str)
                        .ok_or_else(|| {
                            self.field(&format!("{at}.secrets"), "a secret needs `source`")
                        })?;
                    let target = m
                        .get("target")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or(source);
                    (source.to_owned(), target.to_owned())
                }
                _ => {
                    return Err(
                        self.field(&format!("{at}.secrets"), "expected a name or a mapping")
                    );
                }
            };
            let def = self
                .doc
                .get("secrets")
                .and_then(|s| s.get(&source))
                .ok_or_else(|| {
                    self.field(&format!("secrets.{source}"), "not defined at the top level")
                })?;
            let found = if let Some(file) = def.get("file").and_then(serde_json::Value::as_str) {
                SecretSource::File(PathBuf::from(Self::path_in(self.dir, file)))
            } else if let Some(var) = def.get("environment").and_then(serde_json::Value::as_str) {
                SecretSource::Env(var.to_owned())
            } else {
                return Err(self.field(
                    &format!("secrets.{source}"),
                    "needs `file` or `environment`",
                ));
            };
            out.insert(target, found);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines() {
        let env = dotenv("# c\nA=1\nexport B = two \nC=\"q #x\"\nD=v # comment\nE='s'\n");
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("A", "1"),
                ("B", "two"),
                ("C", "q #x"),
                ("D", "v"),
                ("E", "s")
            ]
        );
    }

    #[test]
    fn a_hostile_file_is_refused_not_expanded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compose.yaml");
        // A billion laughs: aliases of aliases.
        let mut src =
            String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("l{}", i - 1)
            };
            let refs = vec![format!("*{prev}"); 9].join(",");
            src.push('l');
            src.push_str(&i.to_string());
            src.push_str(": &l");
            src.push_str(&i.to_string());
            src.push_str(" [");
            src.push_str(&refs);
            src.push_str("]\n");
        }
        fs_err::write(&path, src).unwrap();
        assert!(matches!(
            load(&path, &BTreeMap::new()),
            Err(Error::Yaml { .. })
        ));
        fs_err::write(&path, vec![b'x'; usize::try_from(MAX_FILE).unwrap() + 1]).unwrap();
        assert!(matches!(
            load(&path, &BTreeMap::new()),
            Err(Error::TooLarge { .. })
        ));
    }
}
