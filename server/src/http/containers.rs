//! `GET /api/v1/containers` and `GET /api/v1/containers/{id}`: the catalog, with each image's
//! digest and whether it is built here.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use shared::meta::ContainerMeta;

use super::{AppError, SharedState};

pub fn router() -> Router<SharedState> {
    Router::new().route("/api/v1/containers", get(list)).route("/api/v1/containers/{id}", get(one))
}

/// A catalog entry as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContainerInfo {
    #[serde(flatten)]
    pub meta: ContainerMeta,
    /// The Markdown description beside the metadata, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_description: Option<String>,
    /// Whether the image is built on this server (the metadata's `image` is its recipe).
    pub image_status: ImageStatus,
}

/// Whether the container's image is built on this server, and which.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImageStatus {
    pub built: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Present while the server builds the image (or waits to): `queued`, `building` or
    /// `failed`, with the place in line or the progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::builds::BuildState>,
}

pub fn info(state: &SharedState, entry: &crate::catalog::Entry) -> ContainerInfo {
    // An outdated image is rebuilt while it serves: it shows as built, with its rebuild.
    let build = state.builds.state(&entry.meta.id);
    let image = match state.images.resolve(&entry.meta.id) {
        Ok(image) => {
            ImageStatus { built: true, digest: Some(image.digest), size: Some(image.size), build }
        }
        Err(_) => ImageStatus { built: false, digest: None, size: None, build },
    };
    ContainerInfo {
        meta: entry.meta.clone(),
        long_description: entry.long_description.clone(),
        image_status: image,
    }
}

async fn list(State(state): State<SharedState>) -> Json<Vec<ContainerInfo>> {
    Json(state.catalog.iter().map(|entry| info(&state, entry)).collect())
}

async fn one(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<ContainerInfo>, AppError> {
    let entry =
        state.catalog.get(&id).ok_or_else(|| AppError::NotFound(format!("no container {id:?}")))?;
    Ok(Json(info(&state, entry)))
}
