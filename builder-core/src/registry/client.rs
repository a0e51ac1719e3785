//! The HTTP side of the distribution API: one client per operation, answering 401 challenges
//! (bearer tokens for the scopes asked, or basic auth), retrying 429, 5xx and broken
//! connections with backoff, and turning error statuses into errors that name the reference
//! and what the registry said.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderMap, HeaderValue};

use super::auth::{self, Challenge, Credentials};
use super::error::Error;
use super::reference::Reference;

/// How rbuild reaches registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Registries spoken to over plain HTTP (`--insecure-registry`), besides loopback ones.
    pub insecure: Vec<String>,
    /// docker's `config.json` (default: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
    pub docker_config: PathBuf,
    /// How many times a request is tried when the registry answers 429 or 5xx or the
    /// connection breaks.
    pub attempts: u32,
    /// The first wait between attempts; it doubles each time.
    pub backoff: Duration,
    /// Where per-registry TLS files live, docker's and podman's way: `DIR/HOST[:PORT]/*.crt`
    /// are CA certificates to trust, `*.cert` + `*.key` a client certificate (default:
    /// `$RBUILD_CERTS_DIR`, else `/etc/containers/certs.d` and `/etc/docker/certs.d`).
    pub certs_dirs: Vec<PathBuf>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long the registry may stay silent: waiting for an answer, or between two reads of a
    /// body (`--registry-timeout`). Uploads get [`UPLOAD_TIMEOUT`] for the whole request.
    pub read_timeout: Duration,
    /// Once set, no request starts, backoff waits end and bodies read through it stop (a
    /// build's cancel token; never set by default).
    pub cancel: crate::cancel::Cancel,
}

/// How long one upload (a blob's PUT or PATCH) may take in all: the client cannot tell a slow
/// link from a stalled one while it is sending, so the bound is generous.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// The largest token-server answer or error body read (a token is a few kilobytes).
const MAX_SMALL_BODY: u64 = 1 << 20;

/// Whether the system's trust store (`/etc/ssl/certs`, `SSL_CERT_FILE`) holds any CA: then it
/// is what registries are checked against, with `certs.d`; webpki's built-in roots are only
/// the fallback for a machine without one.
fn system_roots_present() -> bool {
    static PRESENT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PRESENT.get_or_init(|| !rustls_native_certs::load_native_certs().certs.is_empty())
}

impl Default for Options {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            docker_config: auth::default_config_path(),
            attempts: 4,
            backoff: Duration::from_millis(250),
            certs_dirs: match std::env::var_os("RBUILD_CERTS_DIR") {
                Some(d) => vec![PathBuf::from(d)],
                None => vec![
                    PathBuf::from("/etc/containers/certs.d"),
                    PathBuf::from("/etc/docker/certs.d"),
                ],
            },
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            cancel: crate::cancel::Cancel::default(),
        }
    }
}

impl Options {
    /// Whether `registry` is spoken to over plain HTTP: loopback hosts and `--insecure-registry`.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = host_of(registry);
        is_loopback(host) || self.insecure.iter().any(|i| i == registry || i == host)
    }
}

/// The host of `registry` (`host[:port]`, `[v6]:port`), without port or brackets.
fn host_of(registry: &str) -> &str {
    registry
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(registry, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

/// Whether `host` (no port, no brackets) is this machine's loopback.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A body that can be sent again on a retry.
pub(crate) type MakeBody<'a> = &'a dyn Fn() -> Result<reqwest::blocking::Body, Error>;

/// A client for one registry, on behalf of one reference (named in errors).
pub(crate) struct Client {
    http: reqwest::blocking::Client,
    opts: Options,
    /// The reference being worked on, as errors name it.
    pub(crate) reference: String,
    /// The registry host (as in references).
    pub(crate) registry: String,
    base: String,
    credentials: Option<Credentials>,
    /// Authorization headers by scope set.
    tokens: Mutex<HashMap<String, String>>,
}

/// The registry's own words from an error body (`{"errors":[{"code","message"}]}`), else the
/// status line.
fn registry_message(status: StatusCode, body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_str::<Errors>(body) {
        let said: Vec<String> = e
            .errors
            .into_iter()
            .map(|i| match (i.code.is_empty(), i.message.is_empty()) {
                (false, false) => format!("{}: {}", i.code, i.message),
                (false, true) => i.code,
                _ => i.message,
            })
            .collect();
        if !said.is_empty() {
            return said.join("; ");
        }
    }
    let body = body.trim();
    if body.is_empty() || body.len() > 300 {
        status.to_string()
    } else {
        format!("{status}: {body}")
    }
}

/// A body that is not a layer (a token, an error), read up to [`MAX_SMALL_BODY`]: a registry
/// cannot make rbuild hold more of it than that.
fn small_text(resp: Response) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    resp.take(MAX_SMALL_BODY).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The TLS material configured for one registry.
struct TlsFiles {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

/// Reads `DIR/REGISTRY/*.crt` (CAs) and `*.cert` + `*.key` (a client certificate) from each
/// certificates directory, as docker and podman lay them out.
fn tls_files(opts: &Options, registry: &str) -> Result<TlsFiles, Error> {
    let mut out = TlsFiles {
        roots: Vec::new(),
        identity: None,
    };
    for dir in &opts.certs_dirs {
        let host_dir = dir.join(registry);
        let Ok(entries) = fs_err::read_dir(&host_dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        let bad = |path: &std::path::Path, message: String| Error::Tls {
            registry: registry.to_owned(),
            path: path.to_owned(),
            message,
        };
        let read = |path: &std::path::Path| {
            fs_err::read(path).map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })
        };
        for path in names {
            match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => {
                    let certs = reqwest::Certificate::from_pem_bundle(&read(&path)?)
                        .map_err(|e| bad(&path, e.to_string()))?;
                    if certs.is_empty() {
                        return Err(bad(&path, "no PEM certificate in it".into()));
                    }
                    out.roots.extend(certs);
                }
                Some("cert") if out.identity.is_none() => {
                    let key = path.with_extension("key");
                    let mut pem = read(&path)?;
                    pem.push(b'\n');
                    pem.extend(read(&key).map_err(|_| {
                        bad(
                            &path,
                            format!("no key `{}` for this certificate", key.display()),
                        )
                    })?);
                    out.identity = Some(
                        reqwest::Identity::from_pem(&pem).map_err(|e| bad(&path, e.to_string()))?,
                    );
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// A token server's answer (docker's `token`, or `OAuth2`'s `access_token`).
#[derive(serde::Deserialize)]
struct Token {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

impl Client {
    /// A client for `reference`'s registry, with the credentials docker's config holds for it.
    pub(crate) fn new(reference: &Reference, opts: &Options) -> Result<Self, Error> {
        let credentials = auth::lookup(&opts.docker_config, &reference.registry)?;
        Self::with_credentials(reference, opts, credentials)
    }

    /// A client with the given credentials (for `login`).
    pub(crate) fn with_credentials(
        reference: &Reference,
        opts: &Options,
        credentials: Option<Credentials>,
    ) -> Result<Self, Error> {
        let mut builder = reqwest::blocking::Client::builder()
            .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.read_timeout)
            .tls_built_in_native_certs(true)
            .tls_built_in_webpki_certs(!system_roots_present());
        let tls = tls_files(opts, &reference.registry)?;
        let tls_configured = !tls.roots.is_empty() || tls.identity.is_some();
        for cert in tls.roots {
            builder = builder.add_root_certificate(cert);
        }
        if let Some(identity) = tls.identity {
            builder = builder.identity(identity);
        }
        // TLS files for a host mean it speaks TLS, loopback or not.
        let scheme = if opts.is_insecure(&reference.registry) && !tls_configured {
            "http"
        } else {
            "https"
        };
        let http = builder.build().map_err(|e| Error::Tls {
            registry: reference.registry.clone(),
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        Ok(Self {
            http,
            opts: opts.clone(),
            reference: reference.to_string(),
            registry: reference.registry.clone(),
            base: format!("{scheme}://{}", reference.api_host()),
            credentials,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// `path` (starting with `/v2/`) or an absolute `Location` as a URL.
    pub(crate) fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn connect_error(&self, url: &str, source: reqwest::Error) -> Error {
        Error::Connect {
            registry: self.registry.clone(),
            reference: self.reference.clone(),
            url: url.to_owned(),
            source,
        }
    }

    /// Sends a request, answering auth challenges for `scopes` and retrying what may be
    /// retried. Error statuses are returned as responses when `accept_errors` holds for them.
    pub(crate) fn send(
        &self,
        method: &reqwest::Method,
        path: &str,
        scopes: &[String],
        headers: &HeaderMap,
        body: Option<MakeBody<'_>>,
    ) -> Result<Response, Error> {
        let url = self.url(path);
        let key = scopes.join(" ");
        let mut authed_after_challenge = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.opts.cancel.check().map_err(|_| Error::Cancelled)?;
            let mut req: RequestBuilder = self
                .http
                .request(method.clone(), &url)
                .headers(headers.clone());
            if let Some(auth) = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned()) {
                req = req.header(reqwest::header::AUTHORIZATION, auth);
            }
            if let Some(make) = body {
                req = req.body(make()?).timeout(UPLOAD_TIMEOUT);
            }
            let resp = match req.send() {
                Ok(r) => r,
                Err(e)
                    if attempt < self.opts.attempts
                        && (e.is_connect() || e.is_timeout() || e.is_request()) =>
                {
                    self.pause(self.backoff(attempt, None))?;
                    continue;
                }
                Err(e) => return Err(self.connect_error(&url, e)),
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !authed_after_challenge {
                let challenge = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(auth::parse_challenge);
                if let Some(challenge) = challenge {
                    let header = self.authorize(&challenge, scopes)?;
                    if let Ok(mut t) = self.tokens.lock() {
                        t.insert(key.clone(), header);
                    }
                    authed_after_challenge = true;
                    attempt -= 1;
                    continue;
                }
            }
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                && attempt < self.opts.attempts
            {
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                self.pause(self.backoff(attempt, retry_after))?;
                continue;
            }
            return Ok(resp);
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<u64>) -> Duration {
        let exp = self.opts.backoff * 2u32.saturating_pow(attempt.saturating_sub(1));
        match retry_after {
            Some(s) => Duration::from_secs(s.min(30)).max(exp),
            None => exp,
        }
    }

    /// Whether the token server at `realm` may be given the registry's credentials: over
    /// HTTPS, or on the registry's own host, or on loopback.
    fn may_send_credentials(&self, realm: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(realm) else {
            return false;
        };
        let host = host_of(url.host_str().unwrap_or_default());
        url.scheme() == "https"
            || host.eq_ignore_ascii_case(host_of(&self.registry))
            || is_loopback(host)
    }

    /// The `Authorization` header that answers `challenge`.
    fn authorize(&self, challenge: &Challenge, scopes: &[String]) -> Result<String, Error> {
        let denied = |message: String| Error::Unauthorized {
            registry: self.registry.clone(),
            reference: self.reference.clone(),
            message,
        };
        match challenge {
            Challenge::Basic => match &self.credentials {
                Some(Credentials::Basic { username, password }) => {
                    use base64::Engine as _;
                    let encoded = base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"));
                    Ok(format!("Basic {encoded}"))
                }
                _ => Err(denied(format!(
                    "the registry wants a user name and password; run `rbuild login {}`",
                    self.registry
                ))),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let mut query: Vec<(&str, String)> = Vec::new();
                if let Some(s) = service {
                    query.push(("service", s.clone()));
                }
                let mut all: Vec<String> = scopes.to_vec();
                if let Some(s) = scope {
                    if !all.contains(s) {
                        all.push(s.clone());
                    }
                }
                // Credentials go to the registry's own host, or to a token server over HTTPS
                // (or on loopback); a realm that would carry them in the clear to another host
                // gets an anonymous request.
                let withheld = self.credentials.is_some() && !self.may_send_credentials(realm);
                let credentials = if withheld {
                    None
                } else {
                    self.credentials.as_ref()
                };
                let mut req = match credentials {
                    Some(Credentials::IdentityToken(refresh)) => {
                        let mut form = vec![
                            ("grant_type", "refresh_token".to_owned()),
                            ("refresh_token", refresh.clone()),
                            ("client_id", "rbuild".to_owned()),
                        ];
                        form.extend(query.iter().cloned());
                        form.extend(all.iter().map(|s| ("scope", s.clone())));
                        let body = form
                            .iter()
                            .map(|(k, v)| format!("{k}={}", urlencode(v)))
                            .collect::<Vec<_>>()
                            .join("&");
                        self.http
                            .post(realm)
                            .header(
                                reqwest::header::CONTENT_TYPE,
                                "application/x-www-form-urlencoded",
                            )
                            .body(body)
                    }
                    creds => {
                        query.extend(all.iter().map(|s| ("scope", s.clone())));
                        let mut r = self.http.get(realm).query(&query);
                        if let Some(Credentials::Basic { username, password }) = creds {
                            r = r.basic_auth(username, Some(password));
                        }
                        r
                    }
                };
                req = req.header(reqwest::header::ACCEPT, "application/json");
                let resp = req.send().map_err(|e| self.connect_error(realm, e))?;
                let status = resp.status();
                let text = small_text(resp).map_err(|e| Error::Interrupted {
                    registry: self.registry.clone(),
                    reference: self.reference.clone(),
                    what: format!("the token from `{realm}`"),
                    source: e,
                })?;
                if !status.is_success() {
                    let message = registry_message(status, &text);
                    let why = if withheld {
                        " (rbuild did not send it your credentials: it is neither HTTPS nor the registry's own host)"
                    } else {
                        ""
                    };
                    return Err(denied(format!(
                        "token server `{realm}` said {message}{why}"
                    )));
                }
                let t: Token = serde_json::from_str(&text).map_err(|source| Error::Invalid {
                    reference: self.reference.clone(),
                    what: "token response",
                    source,
                })?;
                let token = if t.token.is_empty() {
                    t.access_token
                } else {
                    t.token
                };
                if token.is_empty() {
                    return Err(denied(format!("token server `{realm}` sent no token")));
                }
                Ok(format!("Bearer {token}"))
            }
        }
    }

    /// Turns an error status into an error naming `what` was asked for.
    pub(crate) fn check(
        &self,
        resp: Response,
        method: &reqwest::Method,
        what: &str,
    ) -> Result<Response, Error> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let url = resp.url().to_string();
        let body = small_text(resp).unwrap_or_default();
        let message = registry_message(status, &body);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized {
                registry: self.registry.clone(),
                reference: self.reference.clone(),
                message,
            },
            StatusCode::NOT_FOUND => Error::NotFound {
                registry: self.registry.clone(),
                reference: self.reference.clone(),
                what: what.to_owned(),
                message,
            },
            _ => Error::Status {
                registry: self.registry.clone(),
                reference: self.reference.clone(),
                method: method.to_string(),
                url,
                status: status.as_u16(),
                message,
            },
        })
    }

    /// A GET that must succeed.
    pub(crate) fn get(
        &self,
        path: &str,
        scopes: &[String],
        accept: &str,
        what: &str,
    ) -> Result<Response, Error> {
        let mut headers = HeaderMap::new();
        if !accept.is_empty() {
            if let Ok(v) = HeaderValue::from_str(accept) {
                headers.insert(reqwest::header::ACCEPT, v);
            }
        }
        let resp = self.send(&reqwest::Method::GET, path, scopes, &headers, None)?;
        self.check(resp, &reqwest::Method::GET, what)
    }

    /// How many attempts a request gets.
    pub(crate) fn attempts(&self) -> u32 {
        self.opts.attempts
    }

    /// Waits before attempt `attempt + 1`.
    ///
    /// # Errors
    /// The operation was cancelled meanwhile.
    pub(crate) fn wait(&self, attempt: u32) -> Result<(), Error> {
        self.pause(self.backoff(attempt, None))
    }

    /// Sleeps `d`, ending early (with [`Error::Cancelled`]) at a cancel.
    fn pause(&self, d: Duration) -> Result<(), Error> {
        self.opts.cancel.sleep(d).map_err(|_| Error::Cancelled)
    }

    /// The operation's cancel token: bodies are read through it.
    pub(crate) fn cancel(&self) -> &crate::cancel::Cancel {
        &self.opts.cancel
    }
}

/// Percent-encodes a form or query value.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            use std::fmt::Write as _;
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The scope to pull from a repository.
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The scope to push to a repository.
pub(crate) fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_registries_are_insecure() {
        let o = Options {
            insecure: vec!["reg.lan:5000".into(), "other.lan".into()],
            ..Options::default()
        };
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "reg.lan:5000",
            "other.lan:443",
        ] {
            assert!(o.is_insecure(r), "{r}");
        }
        for r in ["docker.io", "reg.lan", "quay.io:443"] {
            assert!(!o.is_insecure(r), "{r}");
        }
    }

    #[test]
    fn registry_errors_are_quoted() {
        assert_eq!(
            registry_message(
                StatusCode::NOT_FOUND,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#
            ),
            "MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(
            registry_message(StatusCode::BAD_GATEWAY, ""),
            "502 Bad Gateway"
        );
    }
}
