//! Extractors and answers every route shares: query parameters named in their errors, JSON
//! bodies refused in the error model, pre-sized JSON answers, path segments, the device id.

use std::collections::HashMap;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::error::ApiError;

/// Raw query parameters. Handlers parse each one by name with [`Params::required`] or
/// [`Params::optional`], so that an error message always names the parameter at fault.
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(map) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_parameter(format!("query string: {e}")))?;
        Ok(Params(map))
    }
}

impl Params {
    pub fn optional<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e| ApiError::bad_parameter(format!("parameter `{name}`: {e}"))),
        }
    }

    pub fn required<T: FromStr>(&self, name: &str) -> Result<T, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        self.optional(name)?.ok_or_else(|| ApiError::bad_parameter(format!("parameter `{name}` is required")))
    }
}

/// A JSON response serialised into a buffer of `capacity_hint` bytes: large bodies (a search
/// answer is ~16 KB) then skip the repeated grow-and-copy of axum's default 128-byte start.
pub struct JsonOut<T> {
    pub value: T,
    pub capacity_hint: usize,
}

impl<T: Serialize> JsonOut<T> {
    /// The JSON body alone (a search keeps it to send again).
    pub fn body(&self) -> Result<Bytes, ApiError> {
        let mut buf = Vec::with_capacity(self.capacity_hint);
        serde_json::to_writer(&mut buf, &self.value)
            .map_err(|e| ApiError::internal(format!("serialising the response: {e}")))?;
        Ok(Bytes::from(buf))
    }
}

/// A response of JSON already serialised.
pub fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl<T: Serialize> IntoResponse for JsonOut<T> {
    fn into_response(self) -> Response {
        match self.body() {
            Ok(body) => json_response(body),
            Err(e) => e.into_response(),
        }
    }
}

/// A JSON request body; every way it can be wrong answers in the error model (415 without a
/// JSON content type, 413 over the size limit, 400 with code 40011 naming what is malformed).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::unsupported_media_type("send `Content-Type: application/json`"))
            }
            Err(JsonRejection::BytesRejection(e)) => Err(ApiError::body_too_large(e.body_text())),
            Err(e) => Err(ApiError::malformed_body(e.body_text())),
        }
    }
}

/// A path parameter, or 400 naming what is wrong with it.
pub fn path<T>(p: Result<axum::extract::Path<T>, axum::extract::rejection::PathRejection>) -> Result<T, ApiError> {
    p.map(|axum::extract::Path(v)| v).map_err(|e| ApiError::bad_parameter(e.body_text()))
}

/// Longest device id accepted.
pub const DEVICE_ID_LEN_MAX: usize = 128;

/// The caller's device fingerprint (`X-Device-Id`, optional), read without copying the other
/// headers.
pub struct DeviceId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for DeviceId {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get(chepiao_api::headers::DEVICE_ID).map(|v| v.to_str()) {
            // An empty header is no header: a client is never refused for lacking a device id.
            None | Some(Ok("")) => Ok(DeviceId(None)),
            Some(Ok(v)) if !v.is_empty() && v.len() <= DEVICE_ID_LEN_MAX => Ok(DeviceId(Some(v.to_string()))),
            Some(_) => Err(ApiError::bad_parameter(format!(
                "header `X-Device-Id`: 1 to {DEVICE_ID_LEN_MAX} visible ASCII characters"
            ))),
        }
    }
}

/// The queue token of a sale's waiting room (`X-Queue-Token`, optional), read without copying
/// the other headers.
pub struct QueueToken(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for QueueToken {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let token = parts.headers.get(chepiao_api::headers::QUEUE_TOKEN).and_then(|v| v.to_str().ok());
        Ok(QueueToken(token.map(str::to_string)))
    }
}

/// Where a request comes from (`X-Client: web | app | api | console`, optional; anything else
/// counts as `api`), for the sales statistics.
pub struct ClientSource(pub &'static str);

impl<S: Send + Sync> FromRequestParts<S> for ClientSource {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let v = parts.headers.get(chepiao_api::headers::CLIENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        Ok(ClientSource(match v.trim() {
            "web" => "web",
            "app" => "app",
            "console" => "console",
            _ => "api",
        }))
    }
}

/// What a buying request says about its caller besides the token: device, queue token and
/// source, in one extractor (the buy routes take all three).
pub struct Buyer {
    pub device: Option<String>,
    pub queue_token: Option<String>,
    pub source: &'static str,
}

impl<S: Send + Sync> FromRequestParts<S> for Buyer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let DeviceId(device) = DeviceId::from_request_parts(parts, state).await?;
        let QueueToken(queue_token) = QueueToken::from_request_parts(parts, state).await?;
        let ClientSource(source) = ClientSource::from_request_parts(parts, state).await?;
        Ok(Buyer { device, queue_token, source })
    }
}
