//! The image routes of the docker API over the service's store: list, inspect, history, tag,
//! remove, save (a docker archive, streamed), load and push.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use builder_core::digest::Digest;
use builder_core::solve::{Image, Store, tag_name};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::build::{familiar, registry_config, with_logins};
use super::{DockerError, error_message, message};
use crate::state::AppState;

/// `name` as stored: `docker.io/library/` dropped (docker 28 sends it on tag), `:latest` added.
fn stored(name: &str) -> String {
    tag_name(&familiar(name))
}

/// The query's pairs (docker repeats keys: `names=a&names=b`).
fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Every tag with its image, loaded once per image.
fn tagged(store: &Store) -> Result<Vec<(String, Image)>, DockerError> {
    let mut images: BTreeMap<Digest, Image> = BTreeMap::new();
    let mut out = Vec::new();
    for (name, digest) in store.tags().map_err(DockerError::internal)? {
        let image = match images.get(&digest) {
            Some(i) => i.clone(),
            None => {
                let Ok(i) = Image::load_tagged(store, digest) else {
                    continue;
                };
                images.insert(digest, i.clone());
                i
            }
        };
        out.push((name, image));
    }
    Ok(out)
}

/// The image `name` means, as docker resolves it: a tag, `name@sha256:` (a manifest digest), an
/// image ID (`sha256:…`) or a prefix of one of 4 hex digits or more.
fn resolve(store: &Store, name: &str) -> Result<Image, DockerError> {
    let missing = || DockerError::not_found(format!("No such image: {name}"));
    if let Some((_, digest)) = name.split_once('@') {
        let d: Digest = digest.parse().map_err(|_| missing())?;
        return Image::load_tagged(store, d).map_err(|_| missing());
    }
    if let Ok(Some(d)) = store.tag(&stored(name)) {
        return Image::load_tagged(store, d).map_err(|_| missing());
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.len() >= 4 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let found: Vec<Image> = tagged(store)?
            .into_iter()
            .map(|(_, i)| i)
            .filter(|i| i.config_digest.hex().starts_with(hex))
            .collect();
        if let Some(i) = found.into_iter().next() {
            return Ok(i);
        }
    }
    Err(missing())
}

/// Unix seconds of an RFC 3339 time (0 when absent or unreadable).
fn unix(created: Option<&str>) -> i64 {
    created
        .and_then(|c| {
            time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(0, time::OffsetDateTime::unix_timestamp)
}

/// A `path.Match`-like glob: `*` any run without `/`, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => {
                go(&p[1..], t) || (t.first().is_some_and(|c| *c != '/') && go(p, &t[1..]))
            }
            (Some('?'), Some(c)) if *c != '/' => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(
        &pattern.chars().collect::<Vec<_>>(),
        &text.chars().collect::<Vec<_>>(),
    )
}

/// `filters` as docker sends them: `{"reference":{"app":true}}` (or old `{"reference":["app"]}`).
fn filters(raw: Option<&str>) -> Result<BTreeMap<String, Vec<String>>, DockerError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| DockerError::bad(format!("invalid filters: {e}")))?;
    let mut out = BTreeMap::new();
    for (k, vals) in v.as_object().into_iter().flatten() {
        if !matches!(
            k.as_str(),
            "reference" | "dangling" | "label" | "before" | "since"
        ) {
            return Err(DockerError::bad(format!("Invalid filter '{k}'")));
        }
        let list: Vec<String> = match vals {
            serde_json::Value::Object(m) => m.keys().cloned().collect(),
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

/// `GET /images/json`.
pub(crate) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, DockerError> {
    let q = pairs(query.as_deref());
    let f = filters(get(&q, "filters"))?;
    let store = state.store.clone();
    let out =
        tokio::task::spawn_blocking(move || -> Result<Vec<serde_json::Value>, DockerError> {
            let mut by_id: BTreeMap<Digest, (Image, Vec<String>)> = BTreeMap::new();
            for (name, image) in tagged(&store)? {
                let shown = familiar(&name);
                let refs = f.get("reference");
                let repo = shown
                    .rsplit_once(':')
                    .map_or(shown.as_str(), |(r, _)| r)
                    .to_owned();
                if refs.is_some_and(|r| !r.iter().any(|p| glob(p, &shown) || glob(p, &repo))) {
                    continue;
                }
                let labels = image.config.config.labels.clone().unwrap_or_default();
                if let Some(want) = f.get("label") {
                    let ok = want.iter().all(|l| match l.split_once('=') {
                        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                        None => labels.contains_key(l),
                    });
                    if !ok {
                        continue;
                    }
                }
                if f.get("dangling")
                    .is_some_and(|d| d.iter().any(|v| v == "true"))
                {
                    continue; // every image here has a tag
                }
                by_id
                    .entry(image.config_digest)
                    .or_insert_with(|| (image, Vec::new()))
                    .1
                    .push(shown);
            }
            let mut rows: Vec<(i64, serde_json::Value)> = Vec::new();
            for (id, (image, tags)) in by_id {
                let created = unix(image.config.created.as_deref());
                let size = image.size(&store).unwrap_or(0);
                rows.push((
                    created,
                    serde_json::json!({
                        "Id": id.to_string(),
                        "ParentId": "",
                        "RepoTags": tags,
                        "RepoDigests": [],
                        "Created": created,
                        "Size": size,
                        "VirtualSize": size,
                        "SharedSize": -1,
                        "Labels": image.config.config.labels,
                        "Containers": -1,
                    }),
                ));
            }
            rows.sort_by_key(|r| std::cmp::Reverse(r.0));
            Ok(rows.into_iter().map(|(_, v)| v).collect())
        })
        .await
        .map_err(DockerError::internal)??;
    Ok(axum::Json(out).into_response())
}

/// The image's tags, as docker prints them.
fn tags_of(store: &Store, image: &Image) -> Vec<String> {
    tagged(store)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, i)| i.config_digest == image.config_digest)
        .map(|(n, _)| familiar(&n))
        .collect()
}

fn inspect(store: &Store, image: &Image) -> serde_json::Value {
    let tags = tags_of(store, image);
    let size = image.size(store).unwrap_or(0);
    let mut config = serde_json::to_value(&image.config.config).unwrap_or_default();
    for key in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "Labels",
        "Volumes",
        "OnBuild",
    ] {
        if config.get(key).is_none() {
            config[key] = serde_json::Value::Null;
        }
    }
    if config["WorkingDir"].is_null() {
        config["WorkingDir"] = "".into();
    }
    if config["User"].is_null() {
        config["User"] = "".into();
    }
    serde_json::json!({
        "Id": image.config_digest.to_string(),
        "RepoTags": tags,
        "RepoDigests": [],
        "Parent": "",
        "Comment": "",
        "Created": image.config.created.clone().unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
        "Container": "",
        "ContainerConfig": config.clone(),
        "DockerVersion": "",
        "Author": image.config.author.clone().unwrap_or_default(),
        "Config": config,
        "Architecture": image.config.architecture,
        "Variant": image.config.variant,
        "Os": image.config.os,
        "Size": size,
        "VirtualSize": size,
        "GraphDriver": { "Data": null, "Name": "rbuild" },
        "RootFS": { "Type": "layers", "Layers": image.diff_ids().iter().map(ToString::to_string).collect::<Vec<_>>() },
        "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
    })
}

fn history(store: &Store, image: &Image) -> serde_json::Value {
    let tags = tags_of(store, image);
    let mut layers = image.diff_ids().iter();
    let mut rows: Vec<serde_json::Value> = image
        .config
        .history
        .iter()
        .map(|h| {
            let size = if h.empty_layer == Some(true) {
                0
            } else {
                layers.next().map_or(0, |d| store.blob_size(d).unwrap_or(0))
            };
            serde_json::json!({
                "Id": "<missing>",
                "Created": unix(h.created.as_deref()),
                "CreatedBy": h.created_by.clone().unwrap_or_default(),
                "Tags": null,
                "Size": size,
                "Comment": h.comment.clone().unwrap_or_default(),
            })
        })
        .collect();
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top["Id"] = image.config_digest.to_string().into();
        top["Tags"] = serde_json::json!(tags);
    }
    serde_json::Value::Array(rows)
}

/// Work on the store, run off the async threads.
type Blocking = Box<dyn FnOnce(&Store) -> Result<Response, DockerError> + Send>;

/// `/images/{name}/json|history|tag|get|push` and `DELETE /images/{name}`: the name may hold
/// `/` (`host:5000/team/app:v1`), so the route is a wildcard and the action its last segment.
pub(crate) async fn dispatch(
    State(state): State<AppState>,
    method: Method,
    OriginalUri(_): OriginalUri,
    axum::extract::Path(rest): axum::extract::Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, DockerError> {
    let q = pairs(query.as_deref());
    if method == Method::DELETE {
        return remove(
            &state,
            &rest,
            get(&q, "force").is_some_and(|f| f == "1" || f == "true"),
        )
        .await;
    }
    let (name, action) = rest
        .rsplit_once('/')
        .ok_or_else(|| DockerError::not_found("page not found"))?;
    let (name, action) = (name.to_owned(), action.to_owned());
    let store = state.store.clone();
    let blocking = |f: Blocking| async move {
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(DockerError::internal)?
    };
    match (method.as_str(), action.as_str()) {
        ("GET", "json") => {
            blocking(Box::new(move |s| {
                let image = resolve(s, &name)?;
                Ok(axum::Json(inspect(s, &image)).into_response())
            }))
            .await
        }
        ("GET", "history") => {
            blocking(Box::new(move |s| {
                let image = resolve(s, &name)?;
                Ok(axum::Json(history(s, &image)).into_response())
            }))
            .await
        }
        ("POST", "tag") => {
            let repo = get(&q, "repo").unwrap_or_default().to_owned();
            let tag = get(&q, "tag")
                .filter(|t| !t.is_empty())
                .unwrap_or("latest")
                .to_owned();
            if repo.is_empty() {
                return Err(DockerError::bad(
                    "repository name must have at least one component",
                ));
            }
            blocking(Box::new(move |s| {
                let image = resolve(s, &name)?;
                s.set_tag(&stored(&format!("{repo}:{tag}")), image.manifest_digest)
                    .map_err(DockerError::internal)?;
                Ok(StatusCode::CREATED.into_response())
            }))
            .await
        }
        ("GET", "get") => save(&state, vec![name]).await,
        ("POST", "push") => push(state, name, get(&q, "tag").map(str::to_owned), &headers),
        _ => Err(DockerError::not_found("page not found")),
    }
}

/// `DELETE /images/{name}`: a tag is untagged (and the image, once no tag is left, reported
/// deleted: `rbuild prune` frees its blobs); an ID removes every tag of it with `force`, or when
/// it has one.
async fn remove(state: &AppState, name: &str, force: bool) -> Result<Response, DockerError> {
    let (store, name) = (state.store.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        let image = resolve(&store, &name)?;
        let all = tagged(&store)?;
        let of_image: Vec<String> = all
            .iter()
            .filter(|(_, i)| i.config_digest == image.config_digest)
            .map(|(n, _)| n.clone())
            .collect();
        let by_tag = store.tag(&stored(&name)).ok().flatten().is_some();
        let untag: Vec<String> = if by_tag {
            vec![stored(&name)]
        } else if force || of_image.len() <= 1 {
            of_image.clone()
        } else {
            let short: String = image.config_digest.hex().chars().take(12).collect();
            return Err(DockerError::new(
                StatusCode::CONFLICT,
                format!("conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"),
            ));
        };
        let mut out = Vec::new();
        for n in &untag {
            store.remove_tag(n).map_err(DockerError::internal)?;
            out.push(serde_json::json!({ "Untagged": familiar(n) }));
        }
        if of_image.iter().all(|n| untag.contains(n)) {
            out.push(serde_json::json!({ "Deleted": image.config_digest.to_string() }));
        }
        Ok(axum::Json(out).into_response())
    })
    .await
    .map_err(DockerError::internal)?
}

/// `GET /images/get?names=…`.
pub(crate) async fn save_many(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, DockerError> {
    let names: Vec<String> = pairs(query.as_deref())
        .into_iter()
        .filter(|(k, _)| k == "names")
        .map(|(_, v)| v)
        .collect();
    save(&state, names).await
}

/// A docker archive of the images `names` name (all checked before the answer starts).
async fn save(state: &AppState, names: Vec<String>) -> Result<Response, DockerError> {
    if names.is_empty() {
        return Err(DockerError::bad("no image named (`names=`)"));
    }
    let store = state.store.clone();
    let (image, tags) = {
        let (store, names) = (store.clone(), names.clone());
        tokio::task::spawn_blocking(move || -> Result<(Image, Vec<String>), DockerError> {
            let mut first: Option<Image> = None;
            let mut tags = Vec::new();
            for n in &names {
                let image = resolve(&store, n)?;
                if first
                    .as_ref()
                    .is_some_and(|f| f.config_digest != image.config_digest)
                {
                    return Err(DockerError::bad(
                        "rbuild-server saves one image at a time (its names may be several)",
                    ));
                }
                if store.tag(&stored(n)).ok().flatten().is_some() {
                    tags.push(familiar(&stored(n)));
                }
                first.get_or_insert(image);
            }
            Ok((first.expect("names is not empty"), tags))
        })
        .await
        .map_err(DockerError::internal)??
    };
    let body = crate::build::written_body(move |w| {
        let epoch = u64::try_from(builder_core::solve::DEFAULT_EPOCH).unwrap_or(0);
        builder_core::oci::write_docker_archive(&store, &image, &tags, epoch, w)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}

/// `POST /images/load`: the archive streamed to the loader; `Loaded image: NAME` per name.
pub(crate) async fn load(
    State(state): State<AppState>,
    axum::Extension(tenant): axum::Extension<crate::auth::Tenant>,
    body: Body,
) -> Result<Response, DockerError> {
    let receiving = crate::build::receive(&state, &tenant.0, body).await;
    let store = state.store.clone();
    let lines = tokio::task::spawn_blocking(move || -> Result<Vec<Bytes>, String> {
        let _lock = store.lock_shared().map_err(|e| e.to_string())?;
        let loaded = builder_core::solve::load_archive(&store, receiving.reader)
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for (image, names) in loaded {
            if names.is_empty() {
                out.push(message(&serde_json::json!({
                    "stream": format!("Loaded image ID: {}\n", image.config_digest),
                })));
            }
            for n in names {
                let n = stored(&n);
                store
                    .set_tag(&n, image.manifest_digest)
                    .map_err(|e| e.to_string())?;
                out.push(message(&serde_json::json!({
                    "stream": format!("Loaded image: {}\n", familiar(&n)),
                })));
            }
        }
        Ok(out)
    })
    .await
    .map_err(DockerError::internal)?;
    let body = match lines {
        Ok(lines) => lines.concat(),
        Err(e) => error_message(&e, 1).to_vec(),
    };
    // Exactly `application/json`: anything else and the CLI prints the raw stream.
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `POST /images/{name}/push?tag=…` (no tag: every tag of the repository), logging in with
/// `X-Registry-Auth`. Registry failures go in the stream, never as a 401 (the CLI would ask for
/// a login on its terminal).
fn push(
    mut state: AppState,
    repo: String,
    tag: Option<String>,
    headers: &HeaderMap,
) -> Result<Response, DockerError> {
    let logins = match registry_config(headers, "x-registry-auth", true) {
        Some(config) => Some(with_logins(&mut state, &config)?),
        None => None,
    };
    let store = state.store.clone();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::task::spawn_blocking(move || {
        let _logins = logins;
        let names: Vec<String> = match tag.filter(|t| !t.is_empty()) {
            Some(t) => vec![format!("{repo}:{t}")],
            None => tagged(&store)
                .unwrap_or_default()
                .into_iter()
                .map(|(n, _)| familiar(&n))
                .filter(|n| {
                    n.rsplit_once(':')
                        .is_some_and(|(r, _)| r == familiar(&repo))
                })
                .collect(),
        };

        let send = |b: Bytes| {
            let _ = tx.blocking_send(b);
        };
        send(message(&serde_json::json!({
            "status": format!("The push refers to repository [{repo}]"),
        })));
        if names.is_empty() {
            send(error_message(
                &format!("An image does not exist locally with the tag: {repo}"),
                1,
            ));
        }
        for n in names {
            let result = (|| -> Result<(String, String, u64), String> {
                let image = resolve(&store, &n).map_err(|e| e.message)?;
                let reference: builder_core::registry::Reference = n
                    .parse()
                    .map_err(|e: builder_core::registry::Error| e.to_string())?;
                let pushed = builder_core::registry::push(
                    &store,
                    &image,
                    std::slice::from_ref(&reference),
                    &state.registry,
                    &builder_core::registry::PushOptions::default(),
                )
                .map_err(|e| e.to_string())?;
                let digest = pushed
                    .first()
                    .map(|p| p.digest.to_string())
                    .unwrap_or_default();
                let size = image.size(&store).unwrap_or(0);
                let tag = n.rsplit_once(':').map_or("latest", |(_, t)| t).to_owned();
                Ok((tag, digest, size))
            })();
            match result {
                Ok((tag, digest, size)) => {
                    send(message(&serde_json::json!({
                        "status": format!("{tag}: digest: {digest} size: {size}"),
                    })));
                    send(message(&serde_json::json!({
                        "progressDetail": {},
                        "aux": { "Tag": tag, "Digest": digest, "Size": size },
                    })));
                }
                Err(e) => {
                    send(error_message(&e, 1));
                    break;
                }
            }
        }
    });
    let body = tokio_stream(rx);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn tokio_stream(rx: mpsc::Receiver<Bytes>) -> Body {
    Body::from_stream(
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
            .map(Ok::<_, std::convert::Infallible>),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_filters_read_as_dockers() {
        assert_eq!(stored("docker.io/library/app"), "app:latest");
        assert_eq!(stored("app:v1"), "app:v1");
        assert_eq!(stored("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert!(glob("app", "app"));
        assert!(glob("ap*", "app"));
        assert!(glob("app:v?", "app:v1"));
        assert!(!glob("*", "team/app"));
        let f = filters(Some(r#"{"reference":{"app":true},"label":["a=b"]}"#)).unwrap();
        assert_eq!(f["reference"], ["app"]);
        assert_eq!(f["label"], ["a=b"]);
        assert!(filters(Some(r#"{"nope":{"x":true}}"#)).is_err());
        assert_eq!(unix(Some("2000-01-01T00:00:00Z")), 946_684_800);
    }
}
