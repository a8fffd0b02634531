//! Organisation connections end to end through HTTP against the AWS stand-in's Organizations
//! (ListAccounts, paged): discovery keeps a member per account, validated with the same checks
//! as a single role, and members import like any connection. Also the service's own identity.

use std::sync::Arc;
use std::time::Duration;

use aws_standin::{RoleSpec, StandinAccount};
use serde_json::{json, Value};
use test_support::{Backend, TestApp, SERVICE_ACCESS_KEY, SERVICE_PRINCIPAL};
use worker::{Discoverer, ImportSettings, Importer};

on_both_backends!(
    an_organisation_of_25_accounts_keeps_a_member_per_account,
    service_credentials_only_where_the_operator_allows_them,
);

const MANAGEMENT: &str = "100000000001";
const ORG_ROLE: &str = "arn:aws:iam::100000000001:role/changetrail-organization-reader";
const SUSPENDED: &str = "100000000005";
const NO_ROLE: &str = "100000000010";
const LOOSE_TRUST: &str = "100000000015";
const ADDED_LATER: &str = "100000000025";
/// The account whose events the test imports through its member.
const WITH_EVENTS: &str = "100000000002";

fn account_id(n: usize) -> String {
    format!("1000000000{n:02}")
}

fn account(id: &str, status: &str) -> StandinAccount {
    StandinAccount { id: id.into(), name: format!("team-{id}"), status: status.into() }
}

fn role(arn: String, external_id: Option<String>, list_accounts: bool) -> RoleSpec {
    RoleSpec {
        allow_lookup_events: !list_accounts,
        allow_list_accounts: list_accounts,
        ..RoleSpec::reader(arn, SERVICE_PRINCIPAL, external_id)
    }
}

/// The first `n` changes (not read-only calls) of the real records.
fn write_records(n: usize) -> Vec<Value> {
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    records.into_iter().filter(|r| r["readOnly"].as_bool() != Some(true)).take(n).collect()
}

/// Runs an importer until the connection's (one) region is scanned up to `now`.
async fn import_until_caught_up(
    app: &TestApp,
    aws: aws::Aws,
    org_id: uuid::Uuid,
    connection_id: uuid::Uuid,
    now: time::OffsetDateTime,
) {
    let settings = ImportSettings {
        call_interval: Duration::from_millis(500),
        poll: Duration::from_millis(50),
        ..Default::default()
    };
    let importer = Importer::new(app.db.store.clone(), aws, settings);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        importer.run_due_jobs_once().await;
        let jobs = app.db.store.list_import_jobs(org_id, connection_id).await.unwrap();
        if jobs[0].scanned_until >= now && jobs[0].walk.is_none() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the import did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Members by account id: (status, last error code, account status).
fn by_account(members: &Value) -> std::collections::BTreeMap<String, (String, Option<String>, String)> {
    members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["account_id"].as_str().unwrap().to_owned(),
                (
                    m["status"].as_str().unwrap().to_owned(),
                    m["last_error"]["code"].as_str().map(str::to_owned),
                    m["account_status"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

async fn an_organisation_of_25_accounts_keeps_a_member_per_account(backend: Backend) {
    let standin = test_support::start_standin().await;
    let aws = test_support::aws_access(&standin.url(), None).await;
    let Some(app) = TestApp::spawn_with(backend, api::HttpSettings::default(), aws.clone()).await else {
        return test_support::skipped("an_organisation_of_25_accounts_keeps_a_member_per_account");
    };
    let org = app.org("acme").await;
    let token = org.admin_token.as_str();
    let (status, env) = app.post("/v1/environments", token, json!({"name": "production"})).await;
    assert_eq!(status, 201, "{env}");

    let (status, parent) = app
        .post(
            "/v1/connections",
            token,
            json!({"name": "acme org", "kind": "organization", "regions": ["us-east-1"],
                   "default_environment": env["slug"], "lookback_days": 1,
                   "event_filter": {"exclude_session_noise": false}}),
        )
        .await;
    assert_eq!(status, 201, "{parent}");
    assert_eq!(parent["kind"], "organization");
    assert_eq!(parent["member_role_name"], "changetrail-reader");
    let id = parent["id"].as_str().unwrap().to_owned();
    let external_id = parent["external_id"].as_str().unwrap().to_owned();

    // The setup documents: the StackSet template (and the member template it deploys) lint clean.
    let (status, setup) = app.get(&format!("/v1/connections/{id}/setup"), token).await;
    assert_eq!(status, 200, "{setup}");
    let template = setup["cloudformation_template"].as_str().unwrap();
    assert!(template.contains("AWS::CloudFormation::StackSet") && template.contains("SERVICE_MANAGED"));
    assert!(template.contains(&external_id));
    crate::setup_tools::cfn_lint(template);
    crate::setup_tools::cfn_lint(setup["member_cloudformation_template"].as_str().unwrap());
    let terraform = setup["terraform"].as_str().unwrap();
    assert!(terraform.contains("aws_cloudformation_stack_set") && terraform.contains("SERVICE_MANAGED"));
    assert_eq!(setup["permissions_policy"]["Statement"][0]["Action"][0], "organizations:ListAccounts");

    // 24 accounts now, the 25th joins later; the management account is the first.
    let accounts: Vec<StandinAccount> = (1..=24)
        .map(|n| account(&account_id(n), if account_id(n) == SUSPENDED { "SUSPENDED" } else { "ACTIVE" }))
        .collect();
    standin.standin.set_organization(MANAGEMENT, accounts);
    for n in 1..=25 {
        let member = account_id(n);
        let arn = format!("arn:aws:iam::{member}:role/changetrail-reader");
        match member.as_str() {
            NO_ROLE => {}
            LOOSE_TRUST => standin.standin.add_role(role(arn, None, false)),
            _ => standin.standin.add_role(role(arn, Some(format!("{external_id}-{member}")), false)),
        }
    }

    // A role that may not list the accounts is refused with why.
    standin.standin.add_role(role(ORG_ROLE.into(), Some(external_id.clone()), false));
    let (status, refused) =
        app.call("PUT", &format!("/v1/connections/{id}/role"), Some(token), Some(json!({"role_arn": ORG_ROLE}))).await;
    assert_eq!((status, refused["code"].as_str()), (422, Some("list_accounts_denied")), "{refused}");
    standin.standin.add_role(role(ORG_ROLE.into(), Some(external_id.clone()), true));
    let (status, registered) =
        app.call("PUT", &format!("/v1/connections/{id}/role"), Some(token), Some(json!({"role_arn": ORG_ROLE}))).await;
    assert_eq!(status, 200, "{registered}");
    assert_eq!(registered["status"], "active");

    let discoverer = Discoverer::new(app_of(&app, aws.clone()), Duration::from_secs(3600));
    assert_eq!(discoverer.run_due_once().await, 1, "registering the role makes a discovery due");
    assert_eq!(discoverer.run_due_once().await, 0, "not due again before the interval");

    let (status, members) = app.get(&format!("/v1/connections/{id}/members"), token).await;
    assert_eq!(status, 200, "{members}");
    assert!(members["discovered_at"].is_string());
    let found = by_account(&members);
    assert_eq!(found.len(), 24, "one member per listed account (ListAccounts pages of 20)");
    let active: Vec<&String> = found.iter().filter(|(_, m)| m.0 == "active").map(|(a, _)| a).collect();
    assert_eq!(active.len(), 21, "{found:?}");
    assert_eq!(found[SUSPENDED], ("error".into(), Some("account_suspended".into()), "SUSPENDED".into()));
    assert_eq!(found[NO_ROLE].1.as_deref(), Some("assume_role_denied"));
    assert_eq!(found[LOOSE_TRUST].1.as_deref(), Some("external_id_not_enforced"));
    assert_ne!(found[NO_ROLE].0, "active");
    assert_ne!(found[LOOSE_TRUST].0, "active");

    // Members are ordinary connections: they inherit the settings and import to the timeline.
    let member = members["items"].as_array().unwrap().iter().find(|m| m["account_id"] == WITH_EVENTS).unwrap();
    assert_eq!(member["kind"], "member");
    assert_eq!(member["organization_connection_id"], id.as_str());
    assert_eq!(member["default_environment"], env["slug"]);
    assert_eq!(member["external_id"], format!("{external_id}-{WITH_EVENTS}"));
    let records = write_records(40);
    let now = time::OffsetDateTime::now_utc();
    let newest = now - time::Duration::minutes(30);
    let expected =
        test_support::seed(&standin.standin, WITH_EVENTS, "us-east-1", &records, newest, |_| time::Duration::ZERO);
    assert_eq!(expected.len(), 40);
    let member_id: uuid::Uuid = member["id"].as_str().unwrap().parse().unwrap();
    import_until_caught_up(&app, aws.aws.clone(), org.id, member_id, now).await;
    let stored = test_support::stored_source_keys(&app.db.url, org.id).await;
    assert_eq!(stored, expected, "the member's changes, each once");
    let (status, timeline) =
        app.get(&format!("/v1/environments/{}/timeline?limit=100", env["slug"].as_str().unwrap()), token).await;
    assert_eq!(status, 200, "{timeline}");
    assert_eq!(timeline["items"].as_array().unwrap().len(), expected.len().min(100));

    // The account that joins later is picked up by the next discovery (sync makes it due now).
    standin.standin.put_organization_account(account(ADDED_LATER, "ACTIVE"));
    let (status, _) = app.call("POST", &format!("/v1/connections/{id}/sync"), Some(token), None).await;
    assert_eq!(status, 202);
    assert_eq!(discoverer.run_due_once().await, 1);
    let (_, members) = app.get(&format!("/v1/connections/{id}/members"), token).await;
    let found = by_account(&members);
    assert_eq!(found.len(), 25);
    assert_eq!(found[ADDED_LATER].0, "active", "{:?}", found[ADDED_LATER]);
    assert_eq!(found.values().filter(|m| m.0 == "active").count(), 22, "22 importing members: {found:?}");
    let failing: Vec<(&str, Option<&str>)> =
        found.iter().filter(|(_, m)| m.0 != "active").map(|(a, m)| (a.as_str(), m.1.as_deref())).collect();
    assert_eq!(
        failing,
        [
            (SUSPENDED, Some("account_suspended")),
            (NO_ROLE, Some("assume_role_denied")),
            (LOOSE_TRUST, Some("external_id_not_enforced"))
        ]
    );

    // One that leaves stops, and says why; its events stay.
    standin.standin.remove_organization_account(WITH_EVENTS);
    app.call("POST", &format!("/v1/connections/{id}/sync"), Some(token), None).await;
    assert_eq!(discoverer.run_due_once().await, 1);
    let (_, members) = app.get(&format!("/v1/connections/{id}/members"), token).await;
    let found = by_account(&members);
    assert_eq!(found[WITH_EVENTS], ("error".into(), Some("account_left_organization".into()), "LEFT".into()));
    assert_eq!(found.values().filter(|m| m.0 == "active").count(), 21);
    assert_eq!(test_support::stored_source_keys(&app.db.url, org.id).await, expected);

    // A member's role is discovery's, and a member cannot be deleted on its own.
    let (status, refused) = app
        .call("PUT", &format!("/v1/connections/{member_id}/role"), Some(token), Some(json!({"role_arn": ORG_ROLE})))
        .await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("organization_member")));
    let (status, _) = app.call("DELETE", &format!("/v1/connections/{member_id}"), Some(token), None).await;
    assert_eq!(status, 409);

    // The organisation's new settings reach the members that have none of their own.
    let (status, _) = app
        .call("PATCH", &format!("/v1/connections/{member_id}"), Some(token), Some(json!({"lookback_days": 3})))
        .await;
    assert_eq!(status, 200);
    let (status, patched) = app
        .call("PATCH", &format!("/v1/connections/{id}"), Some(token), Some(json!({"include_read_only": true})))
        .await;
    assert_eq!(status, 200, "{patched}");
    let (_, members) = app.get(&format!("/v1/connections/{id}/members"), token).await;
    for m in members["items"].as_array().unwrap() {
        let overridden = m["id"] == member_id.to_string().as_str();
        assert_eq!(m["settings_overridden"], overridden);
        assert_eq!(m["include_read_only"], !overridden, "{}", m["account_id"]);
    }

    // Another organisation sees none of it; deleting the organisation connection deletes its
    // members and their events.
    let other = app.org("other").await;
    let (status, _) = app.get(&format!("/v1/connections/{id}/members"), &other.admin_token).await;
    assert_eq!(status, 404);
    let (status, _) = app.call("DELETE", &format!("/v1/connections/{id}"), Some(token), None).await;
    assert_eq!(status, 204);
    let (_, list) = app.get("/v1/connections", token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
    assert!(test_support::stored_source_keys(&app.db.url, org.id).await.is_empty());
}

fn app_of(app: &TestApp, aws: Arc<api::AwsAccess>) -> app::App {
    app::App::new(app.db.store.clone(), aws, Duration::from_secs(20 * 60), test_support::webhooks(&app.base_url))
}

async fn service_credentials_only_where_the_operator_allows_them(backend: Backend) {
    let standin = test_support::start_standin().await;
    let refusing = test_support::aws_access(&standin.url(), None).await;
    let Some(app) = TestApp::spawn_with(backend, api::HttpSettings::default(), refusing).await else {
        return test_support::skipped("service_credentials_only_where_the_operator_allows_them");
    };
    let token = app.org("acme").await.admin_token;
    let body = json!({"name": "our own account", "regions": ["us-east-1"], "lookback_days": 1,
                      "event_filter": {"exclude_session_noise": false}});
    let (_, connection) = app.post("/v1/connections", &token, body.clone()).await;
    let path = format!("/v1/connections/{}/role", connection["id"].as_str().unwrap());
    let (status, refused) = app.call("PUT", &path, Some(&token), Some(json!({"credentials": "service"}))).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("service_credentials_disabled")), "{refused}");
    let (status, _) =
        app.call("PUT", &path, Some(&token), Some(json!({"credentials": "service", "role_arn": ORG_ROLE}))).await;
    assert_eq!(status, 422, "credentials and a role at once");

    // Where the operator allows it: the account of the service's own identity, no AssumeRole.
    let aws = test_support::aws_client(&standin.url()).await;
    let allowing = Arc::new(api::AwsAccess::new(aws.clone(), None, None).with_service_credentials(true));
    let Some(app) = TestApp::spawn_with(backend, api::HttpSettings::default(), allowing).await else { return };
    let org = app.org("acme").await;
    let (_, connection) = app.post("/v1/connections", &org.admin_token, body.clone()).await;
    let path = format!("/v1/connections/{}/role", connection["id"].as_str().unwrap());
    let (status, refused) =
        app.call("PUT", &path, Some(&org.admin_token), Some(json!({"credentials": "service"}))).await;
    assert_eq!((status, refused["code"].as_str()), (422, Some("lookup_denied")), "{refused}");
    standin.standin.allow_identity_lookups(SERVICE_ACCESS_KEY);
    let (status, registered) =
        app.call("PUT", &path, Some(&org.admin_token), Some(json!({"credentials": "service"}))).await;
    assert_eq!(status, 200, "{registered}");
    assert_eq!(
        (registered["credentials"].as_str(), registered["account_id"].as_str(), registered["role_arn"].as_str()),
        (Some("service"), Some("111111111111"), None)
    );
    let records = write_records(30);
    let now = time::OffsetDateTime::now_utc();
    let expected = test_support::seed(
        &standin.standin,
        "111111111111",
        "us-east-1",
        &records,
        now - time::Duration::minutes(30),
        |_| time::Duration::ZERO,
    );
    let id: uuid::Uuid = connection["id"].as_str().unwrap().parse().unwrap();
    import_until_caught_up(&app, aws, org.id, id, now).await;
    assert_eq!(expected.len(), 30);
    assert_eq!(test_support::stored_source_keys(&app.db.url, org.id).await, expected);
    assert!(
        !standin.standin.calls().iter().any(|c| c.action == "AssumeRole"),
        "the service's own identity needs no role"
    );

    // One organisation only: the operator's identity is not every tenant's.
    let other = app.org("other").await;
    let (_, theirs) = app.post("/v1/connections", &other.admin_token, body).await;
    let path = format!("/v1/connections/{}/role", theirs["id"].as_str().unwrap());
    let (status, refused) =
        app.call("PUT", &path, Some(&other.admin_token), Some(json!({"credentials": "service"}))).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("service_credentials_taken")), "{refused}");
}
