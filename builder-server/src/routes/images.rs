//! `GET /v1/images` and `GET /v1/images/{name}`.

use axum::Json;
use axum::extract::{Path, State};
use builder_core::solve::Image;

use crate::error::ApiError;
use crate::state::AppState;

/// The tagged images: name, image ID, manifest digest, size.
#[utoipa::path(
    get,
    path = "/v1/images",
    tag = "images",
    responses(
        (status = 200, description = "`[{name, id, digest, size}]`", body = Object),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.store.clone();
    let images =
        tokio::task::spawn_blocking(move || -> Result<Vec<serde_json::Value>, ApiError> {
            let mut out = Vec::new();
            for (name, digest) in store.tags()? {
                let image = Image::load_tagged(&store, digest)?;
                out.push(serde_json::json!({
                    "name": name,
                    "id": image.config_digest.to_string(),
                    "digest": image.manifest_digest.to_string(),
                    "size": image.size(&store)?,
                }));
            }
            Ok(out)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(serde_json::Value::Array(images)))
}

/// One image: its ID, manifest digest and config.
#[utoipa::path(
    get,
    path = "/v1/images/{name}",
    tag = "images",
    params(("name" = String, Path, description = "The image's name (`app:v1`)")),
    responses(
        (status = 200, description = "`{Id, Digest, Config}`", body = Object),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 404, description = "No such image", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn inspect(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let tagged = builder_core::solve::tag_name(&name);
        let Some(digest) = store.tag(&tagged)? else {
            return Err(ApiError::not_found(format!("no image `{tagged}`")));
        };
        let image = Image::load_tagged(&store, digest)?;
        Ok(Json(serde_json::json!({
            "Id": image.config_digest.to_string(),
            "Digest": image.manifest_digest.to_string(),
            "Config": image.config,
        })))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}
