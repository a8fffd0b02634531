//! STS `AssumeRole` and `GetCallerIdentity`, in the awsQuery protocol: a form POST, XML answers
//! and XML errors.

use std::collections::HashMap;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::*;

const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn sts_error(status: u16, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"{STS_NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error>\
         <RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(message),
        uuid::Uuid::new_v4()
    );
    (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), [("content-type", "text/xml")], body)
        .into_response()
}

fn sts_ok(action: &str, result: &str) -> Response {
    let body = format!(
        "<{action}Response xmlns=\"{STS_NS}\"><{action}Result>{result}</{action}Result>\
         <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        uuid::Uuid::new_v4()
    );
    (StatusCode::OK, [("content-type", "text/xml")], body).into_response()
}

pub(crate) fn sts(standin: &Standin, headers: &HeaderMap, body: &[u8]) -> Response {
    let form: HashMap<String, String> = serde_html_form::from_bytes(body).unwrap_or_default();
    let action = form.get("Action").cloned().unwrap_or_default();
    let key = access_key_of(headers).unwrap_or_default();
    let (status, response) = sts_action(standin, headers, &action, &form);
    standin.record(&action, &key, status);
    response
}

fn sts_action(standin: &Standin, headers: &HeaderMap, action: &str, form: &HashMap<String, String>) -> (u16, Response) {
    let mut inner = standin.inner.lock().unwrap();
    if let Some(status) = inner.sts_failure {
        return (status, sts_error(status, "InternalFailure", "The stand-in was told to fail."));
    }
    let Some(who) = caller(&inner, headers) else {
        return (403, sts_error(403, "InvalidClientTokenId", "The security token included in the request is invalid."));
    };
    match action {
        "GetCallerIdentity" => {
            let (arn, account) = match &who {
                Caller::Identity(i) => (i.arn.clone(), account_of(&i.arn)),
                Caller::Session(s) => {
                    let reported = inner.roles.get(&s.role_arn).and_then(|r| r.reports_session_as.clone());
                    let arn = reported.unwrap_or_else(|| s.assumed_role_arn.clone());
                    let account = account_of(&arn);
                    (arn, account)
                }
            };
            let result = format!(
                "<Arn>{}</Arn><UserId>AIDA{}</UserId><Account>{account}</Account>",
                xml_escape(&arn),
                random_string(16, UPPER)
            );
            (200, sts_ok("GetCallerIdentity", &result))
        }
        "AssumeRole" => {
            let role_arn = form.get("RoleArn").cloned().unwrap_or_default();
            let session_name = form.get("RoleSessionName").cloned().unwrap_or_default();
            let caller_principal = match &who {
                Caller::Identity(i) => i.principal.clone(),
                Caller::Session(s) => s.role_arn.clone(),
            };
            let caller_arn = match &who {
                Caller::Identity(i) => i.arn.clone(),
                Caller::Session(s) => s.assumed_role_arn.clone(),
            };
            let denied = || {
                let message =
                    format!("User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}");
                (403, sts_error(403, "AccessDenied", &message))
            };
            let Some(role) = inner.roles.get(&role_arn).cloned() else { return denied() };
            if role.trusted_principal != caller_principal {
                return denied();
            }
            let given = form.get("ExternalId");
            let admitted = match (&role.required_external_id, &role.external_id_like) {
                (Some(required), _) => given == Some(required),
                (None, Some(pattern)) => given.is_some_and(|id| like(pattern, id)),
                (None, None) => true,
            };
            if !admitted {
                return denied();
            }
            // A session of a role assuming another role (role chaining) lasts at most an hour.
            let max = match &who {
                Caller::Session(_) => 3600,
                Caller::Identity(_) => i64::from(role.max_session_duration.unwrap_or(3600)),
            };
            let duration: i64 = form.get("DurationSeconds").and_then(|d| d.parse().ok()).unwrap_or(3600);
            if !(900..=max).contains(&duration) {
                let message = if duration < 900 {
                    "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900".to_owned()
                } else {
                    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.".to_owned()
                };
                return (400, sts_error(400, "ValidationError", &message));
            }
            let expiration =
                (OffsetDateTime::now_utc() + time::Duration::seconds(duration)).replace_nanosecond(0).unwrap();
            let expiration = expiration.format(&time::format_description::well_known::Rfc3339).unwrap();
            let access_key_id = format!("ASIA{}", random_string(16, UPPER));
            let secret = random_string(40, ANY);
            let token = random_string(120, ANY);
            let role_name = role_arn.rsplit('/').next().unwrap_or_default();
            let assumed_role_arn =
                format!("arn:aws:sts::{}:assumed-role/{role_name}/{session_name}", account_of(&role_arn));
            inner.sessions.insert(
                access_key_id.clone(),
                Session {
                    session_token: token.clone(),
                    role_arn: role_arn.clone(),
                    assumed_role_arn: assumed_role_arn.clone(),
                },
            );
            let result = format!(
                "<AssumedRoleUser><AssumedRoleId>AROA{}:{}</AssumedRoleId><Arn>{}</Arn></AssumedRoleUser>\
                 <Credentials><AccessKeyId>{access_key_id}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
                 <SessionToken>{}</SessionToken><Expiration>{expiration}</Expiration></Credentials>",
                random_string(16, UPPER),
                xml_escape(&session_name),
                xml_escape(&assumed_role_arn),
                xml_escape(&secret),
                xml_escape(&token),
            );
            (200, sts_ok("AssumeRole", &result))
        }
        other => (400, sts_error(400, "InvalidAction", &format!("Could not find operation {other}"))),
    }
}

pub(crate) fn account_of(arn: &str) -> String {
    arn.split(':').nth(4).unwrap_or_default().to_owned()
}

/// IAM's `StringLike`: `*` matches any run of characters, `?` any one.
fn like(pattern: &str, text: &str) -> bool {
    match pattern.chars().next() {
        None => text.is_empty(),
        Some('*') => (0..=text.len()).filter(|i| text.is_char_boundary(*i)).any(|i| like(&pattern[1..], &text[i..])),
        Some(p) => {
            let mut chars = text.chars();
            match chars.next() {
                Some(t) if p == '?' || p == t => like(&pattern[p.len_utf8()..], chars.as_str()),
                _ => false,
            }
        }
    }
}
