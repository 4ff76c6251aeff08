//! A query-string extractor whose errors are problem+json naming the parameter, like
//! [`crate::ApiJson`] for bodies.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::Problem;

pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let msg = crate::json::without_values(&e.into_inner().to_string());
                let field = crate::json::unknown_field(&msg)
                    .map(str::to_string)
                    .unwrap_or(path);
                Problem::invalid(field.clone(), format!("{field}: {msg}"))
            })
    }
}
