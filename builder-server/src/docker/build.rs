//! `POST /build` as the classic builder speaks it: docker's query (`t` repeated, `dockerfile`,
//! `buildargs`/`labels`/`cachefrom`/`ulimits` as JSON, …) read into the service's build options,
//! the same build as `POST /v1/build`, and its events written as docker's JSON messages.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use builder_core::exec::Network;
use builder_core::solve::{CacheSpec, tag_name};

use super::{DockerError, error_message, message};
use crate::build::{self, Ended, Params, Render};
use crate::state::AppState;

/// What a docker parameter's value means here: nothing (zero, empty, `null`, `[]`, `{}`), or
/// something.
fn zero(v: &str) -> bool {
    matches!(v, "" | "0" | "null" | "[]" | "{}" | "false")
}

fn flag(v: &str) -> bool {
    matches!(v, "1" | "true" | "True")
}

fn json<T: serde::de::DeserializeOwned>(key: &str, v: &str) -> Result<T, DockerError> {
    serde_json::from_str(v).map_err(|e| DockerError::bad(format!("`{key}` is not valid JSON: {e}")))
}

/// One `ulimits` entry as docker sends it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerUlimit {
    name: String,
    soft: i64,
    hard: i64,
}

/// docker's query as the service's build options (and whether it is quiet).
fn params(query: Option<&str>) -> Result<(Params, bool), DockerError> {
    let mut p = Params::default();
    let mut quiet = false;
    let (mut cpu_quota, mut cpu_period) = (0i64, 0i64);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        p.raw.push((k.clone().into_owned(), v.clone().into_owned()));
        let v = v.as_ref();
        match k.as_ref() {
            "t" => p.tags.push(tag_name(v)),
            "dockerfile" if !v.is_empty() => p.dockerfile = Some(v.to_owned()),
            "buildargs" if !zero(v) => {
                let args: std::collections::BTreeMap<String, Option<String>> =
                    json("buildargs", v)?;
                // A `null` value is a `--build-arg NAME` the CLI's environment did not have.
                p.build_args
                    .extend(args.into_iter().filter_map(|(k, v)| Some((k, v?))));
            }
            "labels" if !zero(v) => {
                let labels: std::collections::BTreeMap<String, String> = json("labels", v)?;
                p.labels.extend(labels);
            }
            "target" if !v.is_empty() => p.target = Some(v.to_owned()),
            "nocache" => p.no_cache = flag(v),
            "pull" => p.pull = flag(v) || v == "force",
            "q" => quiet = flag(v),
            "squash" => p.squash = flag(v),
            "platform" if !v.is_empty() => p.platform = Some(v.to_owned()),
            "networkmode" => {
                p.network = match v {
                    "" | "default" | "bridge" => Network::Private,
                    "none" => Network::None,
                    "host" => Network::Host,
                    other => {
                        return Err(DockerError::bad(format!(
                            "networkmode `{other}`: default, none or host"
                        )));
                    }
                }
            }
            "cachefrom" if !zero(v) => {
                let refs: Vec<String> = json("cachefrom", v)?;
                for r in refs {
                    p.cache_from.push(
                        CacheSpec::parse(&format!("type=registry,ref={r}"))
                            .map_err(|e| DockerError::bad(format!("cachefrom `{r}`: {e}")))?,
                    );
                }
            }
            "memory" if !zero(v) => {
                p.limits.memory = Some(
                    v.parse()
                        .map_err(|_| DockerError::bad(format!("memory `{v}` is not a number")))?,
                );
            }
            "cpuquota" => cpu_quota = v.parse().unwrap_or(0),
            "cpuperiod" => cpu_period = v.parse().unwrap_or(0),
            "ulimits" if !zero(v) => {
                let limits: Vec<DockerUlimit> = json("ulimits", v)?;
                for l in limits {
                    let spec = format!("{}={}:{}", l.name, l.soft, l.hard);
                    p.ulimits.push(
                        spec.parse()
                            .map_err(|e| DockerError::bad(format!("ulimit `{spec}`: {e}")))?,
                    );
                }
            }
            "version" if v == "2" => {
                return Err(DockerError::bad(
                    "this server speaks the classic builder's API, not BuildKit's sessions: set DOCKER_BUILDKIT=0",
                ));
            }
            "isolation" if v.is_empty() || v == "default" => {}
            "memswap" if v == "-1" => {}
            // docker always sends these; zero means unset. Set, they are refused by name.
            name @ ("cpushares" | "cpusetcpus" | "cpusetmems" | "memswap" | "shmsize"
            | "cgroupparent" | "extrahosts" | "securityopt" | "isolation" | "outputs"
            | "remote")
                if !zero(v) =>
            {
                return Err(DockerError::bad(format!(
                    "`{name}={v}` is not supported by rbuild-server"
                )));
            }
            // The rest: zero values of the above, what has no meaning without containers (`rm`,
            // `forcerm`), the defaults, and newer clients' additions, ignored as the daemon
            // ignores them.
            _ => {}
        }
    }
    if cpu_quota > 0 {
        let period = if cpu_period > 0 { cpu_period } else { 100_000 };
        #[allow(clippy::cast_precision_loss)] // microseconds: far below 2^52
        let cpus = cpu_quota as f64 / period as f64;
        p.limits.cpus = Some(cpus);
    }
    Ok((p, quiet))
}

/// The registry logins of `X-Registry-Config` (base64url JSON of registry → auth config),
/// written as a docker `config.json` for the build's pulls; `None` without any.
pub(crate) fn registry_config(
    headers: &HeaderMap,
    header: &str,
    single: bool,
) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let raw = headers.get(header)?.to_str().ok()?.trim();
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(raw)
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('='))
        })
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let entries: Vec<(String, serde_json::Value)> = if single {
        let server = value["serveraddress"].as_str()?.to_owned();
        vec![(server, value)]
    } else {
        value.as_object()?.clone().into_iter().collect()
    };
    let mut auths = serde_json::Map::new();
    for (server, a) in entries {
        let (Some(user), Some(pass)) = (a["username"].as_str(), a["password"].as_str()) else {
            continue;
        };
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        auths.insert(server, serde_json::json!({ "auth": auth }));
    }
    (!auths.is_empty()).then(|| serde_json::json!({ "auths": auths }))
}

/// docker's build output: `Step N/T : …`, RUN output, ` ---> Using cache`, then the image ID
/// (`aux`), `Successfully built`, `Successfully tagged`; with `q`, the ID alone.
struct Messages {
    quiet: bool,
    tags: Vec<String>,
    /// The client's registry logins, kept while the build runs.
    _logins: Option<tempfile::TempPath>,
}

/// A tag as docker prints it: `app:v1`, not `docker.io/library/app:v1`.
pub(crate) fn familiar(name: &str) -> String {
    let n = name.strip_prefix("docker.io/").unwrap_or(name);
    n.strip_prefix("library/").unwrap_or(n).to_owned()
}

impl Render for Messages {
    fn event(&mut self, e: &serde_json::Value) -> Vec<Bytes> {
        if self.quiet {
            return Vec::new();
        }
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
        let text = match e["type"].as_str() {
            Some("step") => format!(
                "Step {}/{} : {}\n",
                e["number"],
                e["total"],
                s("instruction")
            ),
            Some("log") => format!("{}\n", s("line")),
            Some("step_done") if e["cached"] == true => " ---> Using cache\n".to_owned(),
            Some("warning") => format!(" ---> [Warning] {} (line {})\n", s("message"), e["line"]),
            Some("pulled") => format!(" ---> Pulled {} ({})\n", s("reference"), s("digest")),
            _ => return Vec::new(),
        };
        vec![message(&serde_json::json!({ "stream": text }))]
    }

    fn end(&mut self, ended: &Ended) -> Vec<Bytes> {
        let last = &ended.last;
        if last["type"] != "result" {
            let mut text = last["message"]
                .as_str()
                .or(last["error"].as_str())
                .unwrap_or("the build failed")
                .to_owned();
            if let Some(line) = last["location"]["line"].as_u64() {
                text = format!("{text} (Dockerfile line {line})");
            }
            return vec![error_message(&text, 1)];
        }
        let id = last["image_id"].as_str().unwrap_or_default();
        if self.quiet {
            return vec![message(&serde_json::json!({ "stream": format!("{id}\n") }))];
        }
        let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
        let mut out = vec![
            message(&serde_json::json!({ "stream": format!(" ---> {short}\n") })),
            message(&serde_json::json!({ "aux": { "ID": id } })),
            message(&serde_json::json!({ "stream": format!("Successfully built {short}\n") })),
        ];
        for t in &self.tags {
            out.push(message(&serde_json::json!({
                "stream": format!("Successfully tagged {}\n", familiar(t)),
            })));
        }
        out
    }
}

/// `POST /build`.
pub(crate) async fn build(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    axum::Extension(tenant): axum::Extension<crate::auth::Tenant>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, DockerError> {
    let (params, quiet) = params(query.as_deref())?;
    crate::routes::build::announced_size(&state, &headers)?;
    let mut state = state;
    let logins = match registry_config(&headers, "x-registry-config", false) {
        Some(config) => Some(with_logins(&mut state, &config)?),
        None => None,
    };
    let receiving = build::receive(&state, &tenant.0, body).await;
    let render = Messages {
        quiet,
        tags: params.tags.clone(),
        _logins: logins,
    };
    Ok(build::stream(
        state,
        params,
        receiving,
        tenant.0,
        "application/json",
        render,
    )
    .await?)
}

/// Points `state`'s registry options at a `config.json` holding `config` (removed when the
/// returned file is dropped): the build's pulls and pushes log in with the client's logins.
pub(crate) fn with_logins(
    state: &mut AppState,
    config: &serde_json::Value,
) -> Result<tempfile::TempPath, DockerError> {
    let mut file = tempfile::Builder::new()
        .prefix("docker-config-")
        .suffix(".json")
        .tempfile_in(state.store.root().join("tmp"))
        .map_err(DockerError::internal)?;
    std::io::Write::write_all(&mut file, config.to_string().as_bytes())
        .map_err(DockerError::internal)?;
    let path = file.into_temp_path();
    state.registry.docker_config = path.to_path_buf();
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_build_query_reads_as_the_services_options() {
        let q = "buildargs=%7B%22A%22%3A%221%22%2C%22B%22%3Anull%7D&cachefrom=%5B%5D&cgroupparent=&cpuperiod=0&cpuquota=0&cpusetcpus=&cpusetmems=&cpushares=0&dockerfile=other%2FDockerfile&labels=%7B%22x%22%3A%22y+z%22%7D&memory=0&memswap=0&networkmode=none&rm=1&shmsize=0&t=app%3Av1&t=app&target=&ulimits=null&version=1&q=1";
        let (p, quiet) = params(Some(q)).unwrap();
        assert!(quiet);
        assert_eq!(p.tags, ["app:v1", "app:latest"]);
        assert_eq!(p.dockerfile.as_deref(), Some("other/Dockerfile"));
        assert_eq!(
            p.build_args.len(),
            1,
            "B (null) is not passed: {:?}",
            p.build_args
        );
        assert_eq!(p.labels["x"], "y z");
        assert_eq!(p.network, Network::None);
        assert!(p.target.is_none() && p.limits.memory.is_none());
        let (p, _) = params(Some("cpuquota=50000&cpuperiod=100000&memory=67108864")).unwrap();
        assert_eq!(
            (p.limits.cpus, p.limits.memory),
            (Some(0.5), Some(64 << 20))
        );
        for (q, says) in [
            ("cpushares=2", "cpushares=2"),
            ("extrahosts=h%3A1.2.3.4", "extrahosts"),
            ("version=2", "DOCKER_BUILDKIT=0"),
            ("networkmode=container%3Ax", "networkmode"),
        ] {
            let e = params(Some(q)).unwrap_err();
            assert!(e.message.contains(says), "{q}: {}", e.message);
        }
    }
}
