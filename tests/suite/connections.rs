//! AWS connections end to end through HTTP, against the AWS stand-in: generated external IDs,
//! setup documents, and each outcome of role validation.

use std::sync::Arc;

use aws_standin::RoleSpec;
use serde_json::{json, Value};
use test_support::{Backend, TestApp, SERVICE_PRINCIPAL};

on_both_backends!(
    connections_are_validated_and_external_ids_immutable,
    every_role_validation_outcome,
    registered_role_that_breaks_puts_connection_in_error,
    one_account_region_belongs_to_one_connection,
    setup_documents_are_filled_in,
    external_ids_of_10000_connections_are_distinct,
    a_loose_trust_policy_does_not_pass_and_no_other_organisation_can_use_the_role,
);

const ROLE: &str = "arn:aws:iam::222222222222:role/changetrail-cloudtrail-reader";

struct Fixture {
    app: TestApp,
    standin: aws_standin::RunningStandin,
    token: String,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let standin = test_support::start_standin().await;
    let aws = test_support::aws_access(&standin.url(), None).await;
    let app = TestApp::spawn_with(backend, api::HttpSettings::default(), aws).await?;
    let token = app.org("acme").await.admin_token;
    Some(Fixture { app, standin, token })
}

macro_rules! fixture_or_skip {
    ($backend:expr, $test:expr) => {
        match fixture($backend).await {
            Some(f) => f,
            None => return test_support::skipped($test),
        }
    };
}

impl Fixture {
    async fn connection(&self, regions: Value) -> Value {
        let (status, c) =
            self.app.post("/v1/connections", &self.token, json!({"name": "prod account", "regions": regions})).await;
        assert_eq!(status, 201, "{c}");
        c
    }

    fn role(&self, arn: &str, external_id: Option<&str>, lookups: bool) {
        self.standin.standin.add_role(RoleSpec {
            allow_lookup_events: lookups,
            ..RoleSpec::reader(arn, SERVICE_PRINCIPAL, external_id.map(str::to_owned))
        });
    }

    async fn register(&self, connection: &Value, role_arn: &str) -> (u16, Value) {
        let path = format!("/v1/connections/{}/role", connection["id"].as_str().unwrap());
        self.app.call("PUT", &path, Some(&self.token), Some(json!({"role_arn": role_arn}))).await
    }

    async fn get(&self, connection: &Value) -> Value {
        self.app.get(&format!("/v1/connections/{}", connection["id"].as_str().unwrap()), &self.token).await.1
    }
}

fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| e.iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

async fn connections_are_validated_and_external_ids_immutable(backend: Backend) {
    let f = fixture_or_skip!(backend, "connections_are_validated_and_external_ids_immutable");
    let (app, t) = (&f.app, f.token.as_str());
    app.post("/v1/environments", t, json!({"name": "production"})).await;

    let (status, p) = app
        .post(
            "/v1/connections",
            t,
            json!({"name": "x", "regions": ["us-east-1", "mars-north-1", "us-east-1"], "lookback_days": 91,
                   "default_environment": "nowhere", "external_id": "mine",
                   "environment_rules": [{"environment": "production", "resource_pattern": "arn:[bad"}, {"environment": "Bad Slug"}]}),
        )
        .await;
    assert_eq!(status, 422, "{p}");
    let fields = error_fields(&p);
    for expected in [
        "external_id",
        "regions[1]",
        "regions[2]",
        "lookback_days",
        "environment_rules[0].resource_pattern",
        "environment_rules[1]",
    ] {
        assert!(fields.contains(&expected.to_owned()), "{expected} missing from {fields:?}");
    }
    assert!(p.to_string().contains("mars-north-1"), "the unknown region is named: {p}");

    let (status, p) = app
        .post("/v1/connections", t, json!({"name": "x", "regions": ["us-east-1"], "default_environment": "nowhere"}))
        .await;
    assert_eq!((status, error_fields(&p)), (422, vec!["default_environment".to_owned()]), "{p}");
    let (status, p) = app.post("/v1/connections", t, json!({"name": "x", "regions": []})).await;
    assert_eq!((status, error_fields(&p)), (422, vec!["regions".to_owned()]));

    let (status, c) = app
        .post(
            "/v1/connections",
            t,
            json!({"name": "prod account", "regions": ["us-east-1", "eu-west-1"], "default_environment": "production",
                   "environment_rules": [{"environment": "production", "event_sources": ["ec2.amazonaws.com"], "actor_pattern": "deploy-*"}]}),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["status"], "pending_role");
    assert_eq!(c["lookback_days"], 7);
    assert_eq!(c["enabled"], true);
    let external_id = c["external_id"].as_str().unwrap().to_owned();
    assert!(external_id.starts_with("ct-") && external_id.len() >= 40, "{external_id}");
    let id = c["id"].as_str().unwrap();

    let path = format!("/v1/connections/{id}");
    let (status, p) = app.call("PATCH", &path, Some(t), Some(json!({"external_id": "ct-chosen-by-me"}))).await;
    assert_eq!((status, error_fields(&p)), (422, vec!["external_id".to_owned()]), "{p}");
    let (status, updated) = app
        .call("PATCH", &path, Some(t), Some(json!({"name": "renamed", "enabled": false, "default_environment": null})))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!((updated["name"].as_str(), updated["enabled"].as_bool()), (Some("renamed"), Some(false)));
    assert_eq!(updated["default_environment"], Value::Null);
    assert_eq!(updated["regions"], json!(["us-east-1", "eu-west-1"]), "absent fields are kept");
    assert_eq!(updated["external_id"], external_id.as_str(), "the external ID never changes");

    let (_, list) = app.get("/v1/connections", t).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.call("DELETE", &path, Some(t), None).await.0, 204);
    assert_eq!(app.get(&path, t).await.0, 404);
}

async fn every_role_validation_outcome(backend: Backend) {
    let f = fixture_or_skip!(backend, "every_role_validation_outcome");
    let c = f.connection(json!(["us-east-1"])).await;
    let external_id = c["external_id"].as_str().unwrap();

    // 1. Malformed ARNs: each says which part is wrong.
    for (arn, says) in [
        ("arn:aws:iam::222222222222:user/alice", "user"),
        ("arn:aws:iam::222222222222:policy/ReadOnly", "policy"),
        ("arn:aws:sts::222222222222:assumed-role/reader/session", "assumed-role"),
        ("changetrail-cloudtrail-reader", "role name"),
        (" arn:aws:iam::222222222222:role/reader", "spaces"),
        ("arn:aws-cn:iam::222222222222:role/reader", "partition"),
        ("arn:azure:iam::222222222222:role/reader", "partition"),
        ("arn:aws:iam::22222222222:role/reader", "12 digits"),
        (&format!("arn:aws:iam::222222222222:role/{}", "r".repeat(65)), "64"),
    ] {
        let (status, p) = f.register(&c, arn).await;
        assert_eq!((status, p["code"].as_str()), (422, Some("invalid_role_arn")), "{arn}: {p}");
        assert_eq!(error_fields(&p), ["role_arn"]);
        assert!(p["detail"].as_str().unwrap().contains(says), "{arn}: {p}");
    }

    // 2. No such role, or a trust policy with another external ID: assume_role_denied.
    let (status, p) = f.register(&c, ROLE).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("assume_role_denied")), "{p}");
    assert!(p["detail"].as_str().unwrap().contains(SERVICE_PRINCIPAL), "tells the admin which principal to trust: {p}");
    f.role(ROLE, Some("ct-someone-elses-external-id"), true);
    assert_eq!(f.register(&c, ROLE).await.1["code"], "assume_role_denied");
    let pending = f.get(&c).await;
    assert_eq!(pending["status"], "pending_role", "a failed registration registers nothing");
    assert_eq!(pending["role_arn"], Value::Null);
    assert_eq!(pending["last_error"]["code"], "assume_role_denied");

    // 3. A session that is not the role's: identity_mismatch.
    f.standin.standin.add_role(RoleSpec {
        reports_session_as: Some("arn:aws:sts::222222222222:assumed-role/someone-else/s".into()),
        ..RoleSpec::reader(ROLE, SERVICE_PRINCIPAL, Some(external_id.into()))
    });
    let (status, p) = f.register(&c, ROLE).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("identity_mismatch")), "{p}");

    // 4. A trust policy without the external ID condition: external_id_not_enforced.
    f.role(ROLE, None, true);
    let (status, p) = f.register(&c, ROLE).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("external_id_not_enforced")), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("sts:ExternalId"));
    assert_eq!(f.get(&c).await["status"], "pending_role");

    // 5. No cloudtrail:LookupEvents: lookup_denied.
    f.role(ROLE, Some(external_id), false);
    let (status, p) = f.register(&c, ROLE).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("lookup_denied")), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("us-east-1"));

    // 5b. Sessions longer than the role's MaxSessionDuration: session_duration_too_long. The
    // setup's template asks for a long enough MaxSessionDuration; a role that has it passes.
    let path = format!("/v1/connections/{}", c["id"].as_str().unwrap());
    let (status, p) = f.app.call("PATCH", &path, Some(&f.token), Some(json!({"session_duration": 60}))).await;
    assert_eq!((status, error_fields(&p)), (422, vec!["session_duration".to_owned()]), "{p}");
    let (status, p) = f.app.call("PATCH", &path, Some(&f.token), Some(json!({"session_duration": 7200}))).await;
    assert_eq!((status, &p["session_duration"]), (200, &json!(7200)), "{p}");
    f.role(ROLE, Some(external_id), true);
    let (status, p) = f.register(&c, ROLE).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("session_duration_too_long")), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("MaxSessionDuration"), "{p}");
    let (_, setup) = f.app.get(&format!("{path}/setup"), &f.token).await;
    assert!(setup["cloudformation_template"].as_str().unwrap().contains("MaxSessionDuration: 7200"));
    assert!(setup["terraform"].as_str().unwrap().contains("max_session_duration = 7200"));
    let (status, p) = f.app.call("PATCH", &path, Some(&f.token), Some(json!({"session_duration": 3600}))).await;
    assert_eq!(status, 200, "{p}");

    // 6. AWS failing: aws_unavailable, nothing registered.
    f.role(ROLE, Some(external_id), true);
    f.standin.standin.set_sts_failure(Some(500));
    let (status, p) = f.register(&c, ROLE).await;
    assert_eq!((status, p["code"].as_str()), (502, Some("aws_unavailable")), "{p}");
    assert_eq!(f.get(&c).await["status"], "pending_role");
    f.standin.standin.set_sts_failure(None);

    // And a correct role: active, with the steps in the contract's order.
    let before = f.standin.standin.calls().len();
    let (status, active) = f.register(&c, ROLE).await;
    assert_eq!(status, 200, "{active}");
    assert_eq!(active["status"], "active");
    assert_eq!(active["account_id"], "222222222222");
    assert_eq!(active["role_arn"], ROLE);
    let session = format!(
        "arn:aws:sts::222222222222:assumed-role/changetrail-cloudtrail-reader/changetrail-{}",
        c["id"].as_str().unwrap().replace('-', "")
    );
    assert_eq!(active["assumed_role_arn"], session.as_str());
    assert!(active["validated_at"].is_string());
    assert_eq!(active["last_error"], Value::Null);
    let steps: Vec<(String, u16)> =
        f.standin.standin.calls()[before..].iter().map(|c| (c.action.clone(), c.status)).collect();
    assert_eq!(
        steps,
        [
            ("AssumeRole".into(), 200),
            ("GetCallerIdentity".into(), 200),
            // Without an external ID, then with one nobody was given: both must be denied.
            ("AssumeRole".into(), 403),
            ("AssumeRole".into(), 403),
            ("LookupEvents".into(), 200)
        ]
    );
    assert!(!active.to_string().contains("ASIA"), "temporary credentials are never returned");

    // Validate without a role: 409.
    let fresh = f.connection(json!(["eu-west-1"])).await;
    let (status, p) =
        f.app.post(&format!("/v1/connections/{}/validate", fresh["id"].as_str().unwrap()), &f.token, json!({})).await;
    assert_eq!((status, p["code"].as_str()), (409, Some("no_role")), "{p}");
}

async fn registered_role_that_breaks_puts_connection_in_error(backend: Backend) {
    let f = fixture_or_skip!(backend, "registered_role_that_breaks_puts_connection_in_error");
    let c = f.connection(json!(["us-east-1"])).await;
    f.role(ROLE, Some(c["external_id"].as_str().unwrap()), true);
    assert_eq!(f.register(&c, ROLE).await.0, 200);
    let validate = format!("/v1/connections/{}/validate", c["id"].as_str().unwrap());
    let (status, ok) = f.app.post(&validate, &f.token, json!({})).await;
    assert_eq!((status, ok["status"].as_str()), (200, Some("active")));

    f.role(ROLE, Some(c["external_id"].as_str().unwrap()), false);
    let (status, p) = f.app.post(&validate, &f.token, json!({})).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("lookup_denied")));
    let broken = f.get(&c).await;
    assert_eq!(broken["status"], "error");
    assert_eq!(broken["last_error"]["code"], "lookup_denied");
    assert!(broken["last_error"]["message"].as_str().unwrap().contains("permissions_policy"));
    assert_eq!(broken["role_arn"], ROLE, "the role stays registered, so fixing it in AWS is enough");

    f.role(ROLE, Some(c["external_id"].as_str().unwrap()), true);
    let (status, fixed) = f.app.post(&validate, &f.token, json!({})).await;
    assert_eq!((status, fixed["status"].as_str()), (200, Some("active")), "{fixed}");
    assert_eq!(fixed["last_error"], Value::Null);
}

async fn one_account_region_belongs_to_one_connection(backend: Backend) {
    let f = fixture_or_skip!(backend, "one_account_region_belongs_to_one_connection");
    let first = f.connection(json!(["us-east-1", "eu-west-1"])).await;
    f.role(ROLE, Some(first["external_id"].as_str().unwrap()), true);
    assert_eq!(f.register(&first, ROLE).await.0, 200);

    let second = f.connection(json!(["eu-west-1", "eu-central-1"])).await;
    let other_role = "arn:aws:iam::222222222222:role/second-reader";
    f.role(other_role, Some(second["external_id"].as_str().unwrap()), true);
    let (status, p) = f.register(&second, other_role).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("region_overlap")), "{p}");
    assert!(p["detail"].as_str().unwrap().contains(first["id"].as_str().unwrap()), "names the other connection: {p}");

    let path = format!("/v1/connections/{}", second["id"].as_str().unwrap());
    assert_eq!(f.app.call("PATCH", &path, Some(&f.token), Some(json!({"regions": ["eu-central-1"]}))).await.0, 200);
    assert_eq!(f.register(&second, other_role).await.0, 200, "no overlap, no problem");
    let first_path = format!("/v1/connections/{}", first["id"].as_str().unwrap());
    let (status, p) =
        f.app.call("PATCH", &first_path, Some(&f.token), Some(json!({"regions": ["eu-central-1"]}))).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("region_overlap")), "{p}");
}

async fn setup_documents_are_filled_in(backend: Backend) {
    let f = fixture_or_skip!(backend, "setup_documents_are_filled_in");
    let c = f.connection(json!(["eu-west-1"])).await;
    let external_id = c["external_id"].as_str().unwrap();
    let (status, setup) = f.app.get(&format!("/v1/connections/{}/setup", c["id"].as_str().unwrap()), &f.token).await;
    assert_eq!(status, 200, "{setup}");
    assert_eq!(setup["external_id"], external_id);
    assert_eq!(setup["service_principal_arn"], SERVICE_PRINCIPAL, "found with GetCallerIdentity: the service's role");
    let statement = &setup["trust_policy"]["Statement"][0];
    assert_eq!(statement["Principal"]["AWS"], SERVICE_PRINCIPAL);
    assert_eq!(statement["Condition"]["StringEquals"]["sts:ExternalId"], external_id);
    assert_eq!(setup["permissions_policy"]["Statement"][0]["Action"], "cloudtrail:LookupEvents");
    assert_eq!(setup["permissions_policy"]["Statement"].as_array().unwrap().len(), 1, "least privilege");

    let template = setup["cloudformation_template"].as_str().unwrap();
    assert!(template.contains(&format!("Default: {external_id}")));
    assert!(template.contains(&format!("Default: {SERVICE_PRINCIPAL}")));
    assert!(template.contains("RoleArn:"), "the role ARN is an output");
    assert!(!template.contains("CHANGETRAIL_"), "every placeholder is filled in");
    crate::setup_tools::cfn_lint(template);

    let terraform = setup["terraform"].as_str().unwrap();
    let body: hcl::Body = hcl::from_str(terraform).expect("the Terraform module parses as HCL");
    let attrs = hcl::to_string(&body).unwrap();
    assert!(attrs.contains(external_id) && attrs.contains(SERVICE_PRINCIPAL));
    assert!(body
        .blocks()
        .any(|b| b.identifier() == "output" && b.labels().first().map(|l| l.as_str()) == Some("role_arn")));
    assert!(body
        .blocks()
        .any(|b| b.identifier() == "variable" && b.labels().first().map(|l| l.as_str()) == Some("external_id")));
    crate::setup_tools::terraform_fmt(terraform);

    let cli = setup["aws_cli"].as_str().unwrap();
    assert!(cli.contains("aws cloudformation deploy") && cli.contains(external_id) && cli.contains("describe-stacks"));
    assert_eq!(setup["cloudformation_quick_create_url"], Value::Null, "no published template configured");
}

async fn external_ids_of_10000_connections_are_distinct(backend: Backend) {
    let f = fixture_or_skip!(backend, "external_ids_of_10000_connections_are_distinct");
    let app = Arc::new(f.app);
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let app = app.clone();
        let token = f.token.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..625 {
                let body = json!({"name": format!("c{worker}-{i}"), "regions": ["us-east-1"]});
                let (status, c) = app.post("/v1/connections", &token, body).await;
                assert_eq!(status, 201, "{c}");
                ids.push(c["external_id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), 10_000);
    for id in &all {
        let entropy = domain::ExternalId::from_stored(id.clone()).entropy_bytes().expect("decodes");
        assert!(entropy.len() * 8 >= 128, "{id} carries {} bits", entropy.len() * 8);
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 10_000, "every external ID is distinct");
}

/// The confused deputy with a loose trust policy: `StringLike sts:ExternalId` with `*` or `ct-*`
/// admits any changetrail external ID, so another organisation that learns the role's ARN could
/// register it. Registration must refuse such a role; a strict one admits only its own
/// connection, so another organisation's registration of it fails.
async fn a_loose_trust_policy_does_not_pass_and_no_other_organisation_can_use_the_role(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return test_support::skipped("a_loose_trust_policy_does_not_pass_and_no_other_organisation_can_use_the_role");
    };
    let c = f.connection(json!(["us-east-1"])).await;
    for pattern in ["*", "ct-*"] {
        f.standin.standin.add_role(RoleSpec {
            external_id_like: Some(pattern.into()),
            ..RoleSpec::reader(ROLE, SERVICE_PRINCIPAL, None)
        });
        let (status, p) = f.register(&c, ROLE).await;
        assert_eq!((status, p["code"].as_str()), (422, Some("external_id_not_enforced")), "{pattern}: {p}");
        assert!(p["detail"].as_str().unwrap().contains("not this connection's"), "{p}");
        assert_eq!(f.get(&c).await["status"], "pending_role", "nothing registered");
    }

    // The victim's strict role registers; the attacker's organisation, with its own connection
    // and external ID, cannot register the same ARN.
    f.role(ROLE, c["external_id"].as_str(), true);
    assert_eq!(f.register(&c, ROLE).await.0, 200);
    let attacker = f.app.org("attacker").await;
    let (status, theirs) =
        f.app.post("/v1/connections", &attacker.admin_token, json!({"name": "victim", "regions": ["us-east-1"]})).await;
    assert_eq!(status, 201);
    let path = format!("/v1/connections/{}/role", theirs["id"].as_str().unwrap());
    let (status, p) = f.app.call("PUT", &path, Some(&attacker.admin_token), Some(json!({"role_arn": ROLE}))).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("assume_role_denied")), "{p}");
    let (_, theirs) = f.app.get(&path.replace("/role", ""), &attacker.admin_token).await;
    assert_eq!(theirs["status"], "pending_role");
}
