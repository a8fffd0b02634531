//! changetrail's HTTP API. [`router`] builds the whole service: routes (one module per resource
//! under `routes/`), their OpenAPI description, and the tower-http layers around them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub mod docs;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod routes;
mod server;
pub mod setup;
pub mod ui;

pub use server::serve;

/// What every handler can reach: the application layer.
pub type AppState = app::App;
pub use app::AwsAccess;

/// The HTTP knobs of the configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub cors_origins: Vec<HeaderValue>,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    /// A connection whose request headers (or, between requests, whose next request) do not
    /// arrive within this is closed.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            cors_origins: Vec::new(),
            body_limit_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The routes and their OpenAPI document, before any layer: the document is what `openapi`
/// prints and what `/openapi.json` serves.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::health::router())
        .merge(routes::tokens::router())
        .merge(routes::environments::router())
        .merge(routes::connections::router())
        .merge(routes::timeline::router())
        .merge(routes::events::router())
        .merge(routes::deploys::router())
        .merge(routes::alerts::router())
        .merge(routes::changes::router())
        .merge(routes::sources::router())
        .merge(routes::hooks::router())
        .merge(routes::push::router())
        .merge(routes::channels::router())
        .merge(routes::rules::router())
        .merge(routes::audit_events::router())
        .split_for_parts();
    utoipa::Modify::modify(&openapi::SecurityAndErrors, &mut document);
    (router, document)
}

/// The OpenAPI 3.1 document the code describes.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The whole service, ready to serve.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let (routes, document) = routes();
    let document = Arc::new(document);
    let app = routes
        .merge(docs::router(document))
        .merge(ui::router())
        .fallback(middleware::no_such_route)
        .with_state(state)
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes));

    let cors = (!settings.cors_origins.is_empty()).then(|| {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(settings.cors_origins.clone()))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([REQUEST_ID])
            .max_age(Duration::from_secs(3600))
    });

    // Layers run outside in: the last added sees the request first.
    app.layer(axum::middleware::from_fn(middleware::problem_for_bare_errors))
        // Answers are JSON (or problem+json, or /docs' HTML) and must be read as what they say
        // they are; API answers carry tenants' data and secrets, which no cache may keep.
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, settings.request_timeout))
        .layer(CompressionLayer::new().gzip(true))
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(CatchPanicLayer::custom(middleware::panic_to_problem))
        .layer(tower::util::option_layer(cors))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(middleware::make_span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::from_fn(middleware::read_out_unread_bodies))
}
