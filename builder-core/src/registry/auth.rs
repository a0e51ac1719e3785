//! Credentials, read and written in docker's `config.json` format so docker and rbuild share
//! logins: `auths` (base64 `user:password`, or an identity token), `credsStore` (one helper for
//! every registry) and `credHelpers` (a helper per registry), where a helper is the program
//! `docker-credential-<name>` speaking `get`/`store`/`erase` on stdin and stdout. Also the
//! `WWW-Authenticate` challenge a registry answers 401 with.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::error::Error;
use super::reference::DOCKER_HUB;

/// What a registry login holds. Its `Debug` form names the user, never the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (or access token) for basic auth and token requests.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An `OAuth2` refresh token (`identitytoken`), exchanged at the token server.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::IdentityToken(_) => f.debug_tuple("IdentityToken").field(&"<redacted>").finish(),
        }
    }
}

/// The key docker uses in `auths` for a registry: Docker Hub keeps its historical URL.
fn config_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

/// An `auths` key as a registry host: scheme and path dropped.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        h => h,
    }
}

/// docker's config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn default_config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".docker/config.json")
}

fn config_error(path: &Path, message: impl Into<String>) -> Error {
    Error::DockerConfig {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn read_config(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
    match fs_err::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(serde_json::Map::new()),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| config_error(path, format!("not a JSON object: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::Map::new()),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The helper configured for `registry`, if any.
fn helper_for(
    config: &serde_json::Map<String, serde_json::Value>,
    registry: &str,
) -> Option<String> {
    if let Some(helpers) = config.get("credHelpers").and_then(|v| v.as_object()) {
        for (k, v) in helpers {
            if key_host(k) == registry {
                return v.as_str().map(str::to_owned);
            }
        }
    }
    config
        .get("credsStore")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn run_helper(helper: &str, registry: &str, verb: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
    let fail = |message: String| Error::CredentialHelper {
        helper: helper.to_owned(),
        registry: registry.to_owned(),
        message,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| fail(format!("cannot write to it: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot wait for it: {e}")))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let said = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .trim()
        .to_owned();
        Err(fail(format!("{} ({said})", out.status)))
    }
}

/// What `docker-credential-<name> get` prints.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// The credentials docker's config holds for `registry` (a normalised host, `docker.io` for
/// Docker Hub), asking a credential helper if one is configured.
pub(crate) fn lookup(config_path: &Path, registry: &str) -> Result<Option<Credentials>, Error> {
    let config = read_config(config_path)?;
    if let Some(helper) = helper_for(&config, registry) {
        let out = match run_helper(&helper, registry, "get", config_key(registry).as_bytes()) {
            Ok(out) => out,
            // "credentials not found" is an answer, not a failure.
            Err(Error::CredentialHelper { message, .. })
                if message.contains("credentials not found") =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let got: HelperAnswer =
            serde_json::from_slice(&out).map_err(|e| Error::CredentialHelper {
                helper: helper.clone(),
                registry: registry.to_owned(),
                message: format!("unreadable answer: {e}"),
            })?;
        return Ok(Some(if got.username == "<token>" {
            Credentials::IdentityToken(got.secret)
        } else {
            Credentials::Basic {
                username: got.username,
                password: got.secret,
            }
        }));
    }
    let Some(auths) = config.get("auths").and_then(|v| v.as_object()) else {
        return Ok(None);
    };
    for (key, entry) in auths {
        if key_host(key) != registry {
            continue;
        }
        if let Some(token) = entry
            .get("identitytoken")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
        {
            return Ok(Some(Credentials::IdentityToken(token.to_owned())));
        }
        if let Some(auth) = entry
            .get("auth")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
        {
            let decoded = B64
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    config_error(config_path, format!("`auths.{key}.auth` is not base64"))
                })?;
            let (username, password) = decoded.split_once(':').ok_or_else(|| {
                config_error(
                    config_path,
                    format!("`auths.{key}.auth` is not `user:password`"),
                )
            })?;
            return Ok(Some(Credentials::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
    }
    Ok(None)
}

fn write_config(
    path: &Path,
    config: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), Error> {
    let io = |source: std::io::Error| Error::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs_err::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let mut bytes =
        serde_json::to_vec_pretty(config).map_err(|e| config_error(path, e.to_string()))?;
    bytes.push(b'\n');
    tmp.write_all(&bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    // tempfile creates it 0600, as docker keeps the file.
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Saves a login for `registry`: to its credential helper if one is configured, else base64
/// in `auths`. Other keys of the file are kept.
pub(crate) fn store(
    config_path: &Path,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<(), Error> {
    let mut config = read_config(config_path)?;
    if let Some(helper) = helper_for(&config, registry) {
        let input = serde_json::json!({
            "ServerURL": config_key(registry),
            "Username": username,
            "Secret": password,
        });
        run_helper(&helper, registry, "store", input.to_string().as_bytes())?;
        return Ok(());
    }
    let auths = config
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    let Some(auths) = auths.as_object_mut() else {
        return Err(config_error(config_path, "`auths` is not an object"));
    };
    auths.retain(|k, _| key_host(k) != registry);
    auths.insert(
        config_key(registry),
        serde_json::json!({ "auth": B64.encode(format!("{username}:{password}")) }),
    );
    write_config(config_path, &config)
}

/// Forgets the login for `registry`; says whether there was one.
pub(crate) fn erase(config_path: &Path, registry: &str) -> Result<bool, Error> {
    let mut config = read_config(config_path)?;
    if let Some(helper) = helper_for(&config, registry) {
        run_helper(&helper, registry, "erase", config_key(registry).as_bytes())?;
        return Ok(true);
    }
    let Some(auths) = config.get_mut("auths").and_then(|v| v.as_object_mut()) else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|k, _| key_host(k) != registry);
    if auths.len() == before {
        return Ok(false);
    }
    write_config(config_path, &config)?;
    Ok(true)
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Basic realm="…"`.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Reads `Scheme k="v",k2=v2`; quoted values may hold commas and `\"`.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        params.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_never_shows_the_secret() {
        let basic = Credentials::Basic {
            username: "ann".into(),
            password: "hunter2".into(),
        };
        let token = Credentials::IdentityToken("refresh-secret".into());
        let shown = format!("{basic:?} {token:?} {:?}", Some(&basic));
        assert!(shown.contains("ann"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("refresh-secret"),
            "{shown}"
        );
    }

    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge("Bearer realm=http://x/t, service=reg"),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: Some("reg".into()),
                scope: None,
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn logins_round_trip_through_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs_err::write(
            &path,
            r#"{"auths":{"other.io":{"auth":"eDp5"}},"psFormat":"x"}"#,
        )
        .unwrap();
        store(&path, "127.0.0.1:5000", "user", "pa:ss").unwrap();
        store(&path, DOCKER_HUB, "hub", "pw").unwrap();
        let text = fs_err::read_to_string(&path).unwrap();
        assert!(text.contains("https://index.docker.io/v1/"), "{text}");
        assert!(text.contains("psFormat"), "other keys are kept: {text}");
        assert_eq!(
            lookup(&path, "127.0.0.1:5000").unwrap(),
            Some(Credentials::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            lookup(&path, "other.io").unwrap(),
            Some(Credentials::Basic {
                username: "x".into(),
                password: "y".into()
            })
        );
        assert!(
            matches!(lookup(&path, DOCKER_HUB).unwrap(), Some(Credentials::Basic { username, .. }) if username == "hub")
        );
        assert!(erase(&path, "127.0.0.1:5000").unwrap());
        assert!(!erase(&path, "127.0.0.1:5000").unwrap());
        assert_eq!(lookup(&path, "127.0.0.1:5000").unwrap(), None);
        assert_eq!(lookup(&dir.path().join("missing.json"), "x").unwrap(), None);
    }

    #[test]
    fn a_broken_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs_err::write(&path, "[1]").unwrap();
        let e = lookup(&path, "x").unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
    }
}
