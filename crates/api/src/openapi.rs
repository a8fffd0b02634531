//! The OpenAPI document's frame: info, tags, security, and the error responses every secured
//! operation shares. The paths come from the `#[utoipa::path]` of each handler.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::{Problem, PROBLEM_CONTENT_TYPE};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "changetrail",
        description = "What changed? One timeline per environment of AWS CloudTrail changes, deploys, pull requests and alerts.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "tokens", description = "API tokens of your organisation"),
        (name = "environments", description = "The environments timelines are kept for"),
        (name = "connections", description = "AWS accounts whose CloudTrail changes are imported"),
        (name = "timeline", description = "What changed, per environment"),
        (name = "changes", description = "Deploys, alerts and other changes posted by integrators; suspects of an alert"),
        (name = "sources", description = "GitHub and PagerDuty webhooks that feed the timeline by themselves"),
        (name = "rules", description = "Rules that page: matching changes delivered to PagerDuty or a signed webhook"),
    ),
    components(schemas(Problem))
)]
pub struct ApiDoc;

/// Applied to the whole document once every route is merged into it: `#[openapi(modifiers)]`
/// would run on the frame alone, before there is any path to add errors to.
pub struct SecurityAndErrors;

impl Modify for SecurityAndErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token: `Authorization: Bearer ct_…`"))
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                add_shared_errors(operation);
            }
        }
    }
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_CONTENT_TYPE, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
        .build()
}

/// The errors any operation can answer, so that each handler lists only its own outcomes.
fn add_shared_errors(operation: &mut Operation) {
    use utoipa::openapi::path::ParameterIn;
    if operation.operation_id.as_deref() == Some("put_audit_events") {
        // An AWS-compatible operation answers AWS's error shapes, listed on it; only the timeout
        // layer's 503 is shared.
        let timeout = problem_response("`timeout`: the request took longer than the server allows");
        operation.responses.responses.entry("503".to_owned()).or_insert_with(|| timeout.into());
        return;
    }
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has = |place: ParameterIn| parameters.iter().any(|p| p.parameter_in == place);
    let mut shared = vec![
        ("500", "Internal error (the cause is logged, never returned)"),
        ("503", "`timeout`: the request took longer than the server allows; `unavailable`: no database"),
    ];
    if secured {
        shared.push(("401", "Missing or invalid bearer token"));
        shared.push(("403", "The token lacks the required scope (checked before the body or query is read)"));
    }
    if has(ParameterIn::Path) {
        shared.push(("404", "No such resource in your organisation"));
    }
    if operation.request_body.is_some() {
        shared.push(("400", "Malformed JSON"));
        shared.push(("413", "Body too large"));
        shared.push(("415", "Body not sent as application/json"));
    }
    if operation.request_body.is_some() || has(ParameterIn::Query) {
        shared.push(("422", "Invalid fields or parameters, each named in `errors`"));
    }
    if has(ParameterIn::Query) {
        shared.push((
            "400",
            "The query string cannot be read (`invalid_query`), or a cursor this server did not issue for this list (`invalid_cursor`)",
        ));
    }
    for (status, description) in shared {
        operation.responses.responses.entry(status.to_owned()).or_insert_with(|| problem_response(description).into());
    }
}
