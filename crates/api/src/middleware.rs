//! Cross-cutting behaviour: problem documents for errors produced outside handlers, panics,
//! request spans, Prometheus metrics, and refused bodies read out.

use std::any::Any;
use std::sync::OnceLock;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::{ApiError, PROBLEM_CONTENT_TYPE};

pub async fn no_such_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see /docs for the API")
}

/// Errors made by axum or a tower layer (405, a timeout's 408, …) come with an empty or plain
/// body; give them the same problem document as every other error.
pub async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // The web view's error pages are HTML that says what is wrong, for a person reading them.
    let is_problem = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()) || v.as_bytes().starts_with(b"text/html")
    });
    // An AWS-compatible operation's errors are AWS's shape (`x-amzn-ErrorType`), which SDKs read.
    let is_aws_error = response.headers().contains_key(crate::routes::audit_events::AWS_ERROR_TYPE);
    if !(status.is_client_error() || status.is_server_error()) || is_problem || is_aws_error {
        return response;
    }
    let (code, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this path does not accept this method".to_owned()),
        // The only bare 503 is the timeout layer's: handlers answer problems of their own.
        StatusCode::SERVICE_UNAVAILABLE => ("timeout", crate::error::TIMEOUT_DETAIL.to_owned()),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "the body is larger than this server accepts".to_owned())
        }
        StatusCode::NOT_FOUND => ("not_found", "not found".to_owned()),
        other if other.is_server_error() => ("internal", "the server failed to handle this request".to_owned()),
        other => ("bad_request", other.canonical_reason().unwrap_or("bad request").to_lowercase()),
    };
    let mut problem = ApiError::new(status, code, detail).into_response();
    // Keep headers such as Allow on a 405.
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// A panic is a bug: log it, answer a bare 500, keep serving.
pub fn panic_to_problem(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}

/// The span of one request: its id, method and route, never its headers (they carry tokens).
pub fn make_span(request: &Request) -> tracing::Span {
    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str()).unwrap_or(request.uri().path());
    tracing::info_span!("request", request_id, method = %request.method(), route)
}

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// From a push's second to a poll's quarter of an hour and a backfill's days.
const INGEST_DELAY_BUCKETS: &[f64] =
    &[0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 21600.0, 86400.0];

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
            .expect("latency buckets are not empty")
            .set_buckets_for_metric(Matcher::Full("changetrail_ingest_delay_seconds".into()), INGEST_DELAY_BUCKETS)
            .expect("delay buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed, in which case ours just stays unused.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Request counts and latencies per route template (never the raw path, whose IDs would make
/// the label set unbounded).
pub async fn record_metrics(request: Request, next: Next) -> Response {
    prometheus();
    let started = Instant::now();
    // Only the methods the API knows get their own label: any other string a client sends
    // would add series without bound to an unauthenticated endpoint.
    let method = match *request.method() {
        Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::HEAD | Method::OPTIONS => {
            request.method().as_str().to_owned()
        }
        _ => "other".to_owned(),
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2]).record(started.elapsed().as_secs_f64());
    response
}

/// The most of a refused body read out after the answer, and for how long.
const READ_OUT_BYTES: u64 = 32 * 1024 * 1024;
const READ_OUT_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Gives every request with a body one that, when dropped unread (a 413 answered from the declared
/// length, a body refused after its first megabyte), is read to its end in the background.
/// Closing a connection with unread bytes makes the kernel reset it, and a reset that reaches
/// the client before it reads the answer loses the answer: the client sees a broken
/// connection instead of the 413 that says what is wrong. Bodies declared larger than
/// `READ_OUT_BYTES` are not read out; their connections just close.
pub async fn read_out_unread_bodies(request: Request, next: Next) -> Response {
    // Most requests (every GET) have no body: nothing to wrap.
    if http_body::Body::is_end_stream(request.body()) {
        return next.run(request).await;
    }
    next.run(request.map(|body| Body::new(ReadOutOnDrop(body)))).await
}

struct ReadOutOnDrop(Body);

impl http_body::Body for ReadOutOnDrop {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

impl Drop for ReadOutOnDrop {
    fn drop(&mut self) {
        let body = std::mem::take(&mut self.0);
        let declared = http_body::Body::size_hint(&body).upper();
        if http_body::Body::is_end_stream(&body) || declared.is_some_and(|n| n > READ_OUT_BYTES) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            use tokio_stream::StreamExt;
            let mut chunks = body.into_data_stream();
            let mut read = 0u64;
            let _ = tokio::time::timeout(READ_OUT_TIME, async {
                while let Some(Ok(chunk)) = chunks.next().await {
                    read += chunk.len() as u64;
                    if read > READ_OUT_BYTES {
                        break;
                    }
                }
            })
            .await;
        });
    }
}
