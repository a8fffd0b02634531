//! Organizations `ListAccounts`, in the awsJson1.1 protocol: `X-Amz-Target`
//! (`AWSOrganizationsV20161128.ListAccounts`), JSON answers paged by `NextToken`, JSON errors.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::cloudtrail::json_error;
use crate::sts::account_of;
use crate::*;

/// AWS's largest (and default) page of ListAccounts.
const PAGE: usize = 20;

pub(crate) fn organizations(standin: &Standin, headers: &HeaderMap, target: &str, body: &[u8]) -> Response {
    let action = target.rsplit('.').next().unwrap_or(target).to_owned();
    let key = access_key_of(headers).unwrap_or_default();
    let (status, response) = organizations_action(standin, headers, &action, body);
    standin.record(&action, &key, status);
    response
}

fn organizations_action(standin: &Standin, headers: &HeaderMap, action: &str, body: &[u8]) -> (u16, Response) {
    let inner = standin.inner.lock().unwrap();
    let Some(who) = caller(&inner, headers) else {
        return (
            400,
            json_error(400, "UnrecognizedClientException", "The security token included in the request is invalid."),
        );
    };
    if action != "ListAccounts" {
        return (400, json_error(400, "UnknownOperationException", &format!("{action} is not served by the stand-in")));
    }
    let (caller_arn, role) = match &who {
        Caller::Identity(i) => (i.arn.clone(), None),
        Caller::Session(s) => (s.assumed_role_arn.clone(), inner.roles.get(&s.role_arn)),
    };
    let Some((management, accounts)) = inner.organization.as_ref() else {
        return (
            400,
            json_error(400, "AWSOrganizationsNotInUseException", "Your account is not a member of an organization."),
        );
    };
    // Only the management account (or a delegated administrator, which the stand-in does not
    // model) may list the accounts, and only with the permission.
    let allowed = role.is_some_and(|r| r.allow_list_accounts && account_of(&r.arn) == *management);
    if !allowed {
        let message = format!(
            "User: {caller_arn} is not authorized to perform: organizations:ListAccounts (you must be in the management account or a delegated administrator, with the permission)"
        );
        return (400, json_error(400, "AccessDeniedException", &message));
    }
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let start = match request.get("NextToken").and_then(|t| t.as_str()) {
        None => 0,
        Some(token) => match token.strip_prefix("accounts-after-").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n <= accounts.len() => n,
            _ => return (400, json_error(400, "InvalidInputException", "The NextToken is not valid.")),
        },
    };
    let size = request.get("MaxResults").and_then(|m| m.as_u64()).map_or(PAGE, |m| (m as usize).clamp(1, PAGE));
    let page: Vec<serde_json::Value> = accounts
        .iter()
        .skip(start)
        .take(size)
        .map(|a| {
            serde_json::json!({
                "Id": a.id,
                "Arn": format!("arn:aws:organizations::{management}:account/o-standin/{}", a.id),
                "Email": format!("aws+{}@example.com", a.id),
                "Name": a.name,
                "Status": a.status,
                "JoinedMethod": "CREATED",
                "JoinedTimestamp": 1_700_000_000.0,
            })
        })
        .collect();
    let mut answer = serde_json::json!({ "Accounts": page });
    if start + size < accounts.len() {
        answer["NextToken"] = serde_json::Value::String(format!("accounts-after-{}", start + size));
    }
    (200, (StatusCode::OK, [("content-type", "application/x-amz-json-1.1")], answer.to_string()).into_response())
}
