//! The JSON request body extractor: actix's `web::Json` limits and errors, with structs read
//! from JSON objects only (a positional array is refused as the schema refuses it; see
//! [`merit_messages::strict`]).

use std::{future::Future, ops::Deref, pin::Pin};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A request body of type `T`, read as [`web::Json`] reads it (size limit, content type,
/// the same error handler) and then decoded strictly.
pub(crate) struct Body<T>(pub T);

impl<T> Body<T> {
    /// The decoded body.
    pub(crate) fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Body<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = json.await?.into_inner();
            merit_messages::strict::deserialize(value)
                .map(Body)
                .map_err(|e| ApiError::bad_request(format!("body: {e}")).into())
        })
    }
}
