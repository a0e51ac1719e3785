//! Who may build: bearer tokens, each naming its tenant. Tokens come from `--tokens FILE` (one
//! `TOKEN TENANT` per line; `#` starts a comment) or `RBUILD_TOKENS` (the same text), and a
//! file is read again on SIGHUP. A request's `Authorization: Bearer TOKEN` is compared with
//! every known token in constant time (both hashed first, so neither content nor length
//! leaks through timing); the tenant it names travels with the request as [`Tenant`].
//! `/healthz` is open, for load balancers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};

use crate::state::AppState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The tenant a request's token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tenant(pub(crate) String);

/// A tokens file or variable that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokensError {
    #[error("cannot read the tokens file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name} line {line}: expected `TOKEN TENANT`, got {words} words")]
    Line {
        source_name: String,
        line: usize,
        words: usize,
    },
    #[error("{source_name} line {line}: a token must be at least 16 characters")]
    Short { source_name: String, line: usize },
    #[error("{source_name}: no token in it")]
    Empty { source_name: String },
}

/// Known tokens (their SHA-256 digests) and the tenant of each.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    by_hash: Vec<([u8; 32], String)>,
}

impl Tokens {
    /// Reads `TOKEN TENANT` lines; `source_name` names the text in errors.
    pub(crate) fn parse(text: &str, source_name: &str) -> Result<Self, TokensError> {
        let mut by_hash = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [token, tenant] => {
                    if token.len() < 16 {
                        return Err(TokensError::Short {
                            source_name: source_name.to_owned(),
                            line: i + 1,
                        });
                    }
                    by_hash.push((hash(token.as_bytes()), (*tenant).to_owned()));
                }
                other => {
                    return Err(TokensError::Line {
                        source_name: source_name.to_owned(),
                        line: i + 1,
                        words: other.len(),
                    });
                }
            }
        }
        if by_hash.is_empty() {
            return Err(TokensError::Empty {
                source_name: source_name.to_owned(),
            });
        }
        Ok(Self { by_hash })
    }

    /// Reads a tokens file.
    pub(crate) fn load(path: &Path) -> Result<Self, TokensError> {
        let text = fs_err::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &format!("`{}`", path.display()))
    }

    /// The tenant `token` names. Every known token is compared, in constant time.
    pub(crate) fn tenant(&self, token: &[u8]) -> Option<&str> {
        let given = hash(token);
        let mut found = None;
        for (known, tenant) in &self.by_hash {
            if bool::from(known.ct_eq(&given)) {
                found = Some(tenant.as_str());
            }
        }
        found
    }

    /// How many tokens, and how many tenants.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let tenants: std::collections::BTreeSet<&str> =
            self.by_hash.iter().map(|(_, t)| t.as_str()).collect();
        (self.by_hash.len(), tenants.len())
    }
}

fn hash(bytes: &[u8]) -> [u8; 32] {
    *builder_core::digest::Digest::of(bytes).as_bytes()
}

/// The service's tokens, replaced whole on reload; `None`: no authentication (loopback only).
pub(crate) type Shared = Option<Arc<RwLock<Tokens>>>;

/// The middleware: a request without a known token is a 401 (with `WWW-Authenticate`), and
/// nothing of it reaches a route.
pub(crate) async fn require(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(tokens) = state.tokens else {
        req.extensions_mut().insert(Tenant("default".into()));
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().as_bytes().to_vec());
    let tenant = given.and_then(|t| {
        tokens
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tenant(&t)
            .map(str::to_owned)
    });
    match tenant {
        Some(t) => {
            req.extensions_mut().insert(Tenant(t));
            next.run(req).await
        }
        None => unauthorized(),
    }
}

fn unauthorized() -> Response {
    let mut err = ApiError::bad_request("a valid `Authorization: Bearer TOKEN` header is needed");
    err.status = StatusCode::UNAUTHORIZED;
    let mut resp = err.into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"rbuild\""),
    );
    resp
}

/// Reads `path` again whenever the process gets SIGHUP; a file that cannot be used keeps the
/// tokens in force and says why.
pub(crate) fn reload_on_hangup(path: PathBuf, tokens: Arc<RwLock<Tokens>>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match Tokens::load(&path) {
                Ok(new) => {
                    let (n, t) = new.counts();
                    *tokens
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = new;
                    tracing::info!("tokens reloaded: {n} tokens, {t} tenants");
                }
                Err(e) => tracing::error!("tokens not reloaded, the old ones stay: {e}"),
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_tenant_and_bad_lines_name_their_line() {
        let t = Tokens::parse(
            "# ci tokens\n0123456789abcdef team-a\n\nfedcba9876543210 team-b # b\n",
            "RBUILD_TOKENS",
        )
        .unwrap();
        assert_eq!(t.tenant(b"0123456789abcdef"), Some("team-a"));
        assert_eq!(t.tenant(b"fedcba9876543210"), Some("team-b"));
        assert_eq!(t.tenant(b"0123456789abcdeX"), None);
        assert_eq!(t.tenant(b""), None);
        assert_eq!(t.counts(), (2, 2));
        let err = Tokens::parse("0123456789abcdef a\nlonely\n", "`t`").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`t` line 2: expected `TOKEN TENANT`, got 1 words"
        );
        assert!(matches!(
            Tokens::parse("short a\n", "x"),
            Err(TokensError::Short { line: 1, .. })
        ));
        assert!(matches!(
            Tokens::parse("# nothing\n", "x"),
            Err(TokensError::Empty { .. })
        ));
    }
}
