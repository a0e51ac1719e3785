//! Image references, normalised as docker does: `alpine` is `docker.io/library/alpine:latest`,
//! a first component with a `.` or a `:` or `localhost` is a registry host, and `@sha256:…` pins.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

use super::error::Error;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// `[registry/]repository[:tag][@digest]`, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with its port if any (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/alpine`).
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// The pinned manifest digest.
    pub digest: Option<Digest>,
}

fn invalid(reference: &str, reason: impl Into<String>) -> Error {
    Error::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.into(),
    }
}

fn valid_component(c: &str) -> bool {
    // distribution's path-component: [a-z0-9]+ joined by `.`, `_`, `__` or `-`+.
    let bytes = c.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return false;
    }
    let mut run = String::new();
    for &b in bytes {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            if !run.is_empty()
                && !matches!(run.as_str(), "." | "_" | "__")
                && !run.bytes().all(|r| r == b'-')
            {
                return false;
            }
            run.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            run.push(char::from(b));
        } else {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Err(invalid(s, "it is empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((name, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|_| invalid(s, format!("`{d}` is not a sha256 digest")))?;
                (name, Some(digest))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid(s, format!("`{t}` is not a valid tag")));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(s, "repository names must be lowercase"));
        }
        if let Some(bad) = repository.split('/').find(|c| !valid_component(c)) {
            return Err(invalid(
                s,
                format!("`{bad}` is not a valid repository path component"),
            ));
        }
        if registry.is_empty() || registry.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(invalid(
                s,
                format!("`{registry}` is not a valid registry host"),
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl Reference {
    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What the manifest endpoint is asked for: the digest if pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// This reference with another tag and no digest.
    #[must_use]
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The host the API is served on (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }
}

/// The API host of a registry name.
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn references_are_normalised_as_docker_does() {
        assert_eq!(norm("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(
            norm("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/app:v1"), "localhost:5000/app:v1");
        assert_eq!(norm("127.0.0.1:5000/a/b/c:v1"), "127.0.0.1:5000/a/b/c:v1");
        assert_eq!(norm("quay.io/org/app"), "quay.io/org/app:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("alpine@{d}")),
            format!("docker.io/library/alpine@{d}")
        );
        assert_eq!(
            norm(&format!("alpine:3@{d}")),
            format!("docker.io/library/alpine:3@{d}")
        );
        // A first component without `.`/`:` is a Docker Hub namespace.
        assert_eq!(norm("myhost/app"), "docker.io/myhost/app:latest");
    }

    #[test]
    fn bad_references_say_why() {
        for (s, why) in [
            ("", "empty"),
            ("Alpine", "lowercase"),
            ("alpine:", "valid tag"),
            ("alpine:-x", "valid tag"),
            ("a//b", "path component"),
            ("alpine@sha256:12", "sha256 digest"),
            ("app_", "path component"),
        ] {
            let e = s.parse::<Reference>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn docker_hub_api_is_registry_1() {
        let r: Reference = "alpine".parse().unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r: Reference = "localhost:5000/x".parse().unwrap();
        assert_eq!(r.api_host(), "localhost:5000");
        assert_eq!(r.manifest_ref(), "latest");
    }
}
