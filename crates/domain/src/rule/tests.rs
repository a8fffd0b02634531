//! Each preset against real CloudTrail records (invictus-ir/aws_dataset, MIT, in
//! `../shared/data/cloudtrail/`): one that must match and one that must not. Where the data has
//! no record of a pattern (root use, KMS, AWS Config, NACLs, Organizations, a failed sign-in), the
//! record is a real one of the data with only the fields the pattern reads changed, as AWS
//! documents them for that event.

use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::*;
use crate::cloudtrail::{normalize, RecordContext};

fn records() -> &'static [Value] {
    static RECORDS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    RECORDS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/cloudtrail/invictus-aws-dataset");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the real records {} are missing: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                match serde_json::from_str::<Value>(&text) {
                    Ok(doc) => doc["Records"].as_array().cloned().unwrap_or_default(),
                    // A few files hold one record a line.
                    Err(_) => text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
                }
            })
            .collect()
    })
}

fn real(event_name: &str, also: impl Fn(&Value) -> bool) -> Value {
    records()
        .iter()
        .find(|r| r["eventName"] == event_name && also(r))
        .unwrap_or_else(|| panic!("the data has a {event_name} record"))
        .clone()
}

fn any(_: &Value) -> bool {
    true
}

/// A real record with the fields a pattern reads set as AWS writes them for another event.
fn built_from(event_name: &str, changes: Value) -> Value {
    let mut record = real(event_name, any);
    for (k, v) in changes.as_object().unwrap() {
        match k.split_once('.') {
            Some((outer, inner)) => record[outer][inner] = v.clone(),
            None => record[k] = v.clone(),
        }
    }
    record
}

fn item(record: &Value) -> NewEvent {
    let ctx = RecordContext {
        connection_id: Uuid::nil(),
        account_id: "218007301253",
        region: "us-east-1",
        fallback_time: OffsetDateTime::UNIX_EPOCH,
    };
    normalize(record, &ctx).event
}

fn preset_matches(id: &str, record: &Value) -> bool {
    let by_preset = preset(id).unwrap().matches(record);
    let as_rule = RuleMatch { preset: Some(id.into()), ..RuleMatch::default() }.matches(&item(record));
    assert_eq!(by_preset, as_rule, "{id}: a rule with the preset reads the stored item as the preset reads the record");
    by_preset
}

#[track_caller]
fn check(id: &str, matching: Value, other: Value) {
    assert!(preset_matches(id, &matching), "{id} must match {}", matching["eventName"]);
    assert!(!preset_matches(id, &other), "{id} must not match {}", other["eventName"]);
}

#[test]
fn cis_1_root_usage() {
    let root = json!({"type": "Root", "principalId": "218007301253", "arn": "arn:aws:iam::218007301253:root",
                      "accountId": "218007301253"});
    let by_root = built_from("CreateVpc", json!({"userIdentity": root.clone()}));
    // The same call made on the root user's behalf by an AWS service is not root usage.
    let mut invoked = root;
    invoked["invokedBy"] = json!("support.amazonaws.com");
    check("cis-aws-1", by_root, built_from("CreateVpc", json!({"userIdentity": invoked})));
    assert!(!preset_matches("cis-aws-1", &real("CreateVpc", any)), "an IAM user is not root");
}

#[test]
fn cis_2_unauthorized_api_calls() {
    check(
        "cis-aws-2",
        real("GetPasswordData", |r| r["errorCode"] == "Client.UnauthorizedOperation"),
        real("DescribeInstanceAttribute", |r| r["errorCode"].is_null()),
    );
    let with_code = |code: &str| records().iter().find(|r| r["errorCode"] == code).unwrap().clone();
    assert!(preset_matches("cis-aws-2", &with_code("AccessDenied")));
    assert!(!preset_matches("cis-aws-2", &with_code("NoSuchBucketPolicy")));
}

#[test]
fn cis_3_console_sign_in_without_mfa() {
    check(
        "cis-aws-3",
        real("ConsoleLogin", |r| r["additionalEventData"]["MFAUsed"] == "No"),
        real("ConsoleLogin", |r| r["additionalEventData"]["MFAUsed"] == "Yes"),
    );
    let rule = RuleMatch { console_login_without_mfa: true, ..RuleMatch::default() };
    assert!(rule.matches(&item(&real("ConsoleLogin", |r| r["additionalEventData"]["MFAUsed"] == "No"))));
    assert!(!rule.matches(&item(&real("ConsoleLogin", |r| r["additionalEventData"]["MFAUsed"] == "Yes"))));
}

#[test]
fn cis_4_iam_policy_changes() {
    check("cis-aws-4", real("PutRolePolicy", any), real("CreateRole", any));
    for name in ["AttachRolePolicy", "DetachUserPolicy", "DeleteRolePolicy", "CreatePolicy", "DeletePolicy"] {
        assert!(preset_matches("cis-aws-4", &real(name, any)), "{name}");
    }
}

#[test]
fn cis_5_cloudtrail_configuration_changes() {
    check("cis-aws-5", real("StopLogging", any), real("DescribeTrails", any));
    for name in ["CreateTrail", "DeleteTrail", "StartLogging"] {
        assert!(preset_matches("cis-aws-5", &real(name, any)), "{name}");
    }
}

#[test]
fn cis_6_console_authentication_failures() {
    let failed = built_from(
        "ConsoleLogin",
        json!({"errorMessage": "Failed authentication", "responseElements": {"ConsoleLogin": "Failure"}}),
    );
    check("cis-aws-6", failed, real("ConsoleLogin", any));
}

#[test]
fn cis_7_customer_managed_keys_disabled_or_scheduled_for_deletion() {
    let schedule = built_from(
        "CreateVpc",
        json!({"eventSource": "kms.amazonaws.com", "eventName": "ScheduleKeyDeletion",
               "requestParameters": {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "pendingWindowInDays": 7}}),
    );
    let describe = built_from(
        "CreateVpc",
        json!({"eventSource": "kms.amazonaws.com", "eventName": "DescribeKey", "readOnly": true}),
    );
    check("cis-aws-7", schedule, describe);
    let disable_elsewhere =
        built_from("CreateVpc", json!({"eventSource": "ec2.amazonaws.com", "eventName": "DisableKey"}));
    assert!(!preset_matches("cis-aws-7", &disable_elsewhere), "only KMS's DisableKey");
}

#[test]
fn cis_8_s3_bucket_policy_changes() {
    check("cis-aws-8", real("PutBucketPolicy", any), real("GetBucketPolicy", any));
    for name in ["DeleteBucketPolicy", "PutBucketLifecycle", "DeleteBucketLifecycle"] {
        assert!(preset_matches("cis-aws-8", &real(name, any)), "{name}");
    }
}

#[test]
fn cis_9_aws_config_changes() {
    let stop = built_from(
        "CreateVpc",
        json!({"eventSource": "config.amazonaws.com", "eventName": "StopConfigurationRecorder",
               "requestParameters": {"configurationRecorderName": "default"}}),
    );
    let describe = built_from(
        "CreateVpc",
        json!({"eventSource": "config.amazonaws.com", "eventName": "DescribeConfigurationRecorders"}),
    );
    check("cis-aws-9", stop, describe);
}

#[test]
fn cis_10_security_group_changes() {
    check("cis-aws-10", real("AuthorizeSecurityGroupIngress", any), real("DescribeSecurityGroups", any));
    for name in
        ["CreateSecurityGroup", "DeleteSecurityGroup", "RevokeSecurityGroupEgress", "RevokeSecurityGroupIngress"]
    {
        assert!(preset_matches("cis-aws-10", &real(name, any)), "{name}");
    }
}

#[test]
fn cis_11_network_acl_changes() {
    let entry = built_from(
        "CreateVpc",
        json!({"eventName": "CreateNetworkAclEntry",
               "requestParameters": {"networkAclId": "acl-0a1b2c3d", "ruleNumber": 100, "egress": false,
                                     "ruleAction": "allow", "cidrBlock": "0.0.0.0/0"}}),
    );
    check("cis-aws-11", entry, real("CreateVpc", any));
}

#[test]
fn cis_12_network_gateway_changes() {
    check("cis-aws-12", real("AttachInternetGateway", any), real("CreateVpc", any));
    for name in ["CreateInternetGateway", "DeleteInternetGateway", "DetachInternetGateway"] {
        assert!(preset_matches("cis-aws-12", &real(name, any)), "{name}");
    }
}

#[test]
fn cis_13_route_table_changes() {
    check("cis-aws-13", real("CreateRoute", any), real("DescribeRouteTables", any));
    for name in ["CreateRouteTable", "DeleteRoute", "DeleteRouteTable", "DisassociateRouteTable"] {
        assert!(preset_matches("cis-aws-13", &real(name, any)), "{name}");
    }
}

#[test]
fn cis_14_vpc_changes() {
    check("cis-aws-14", real("CreateVpc", any), real("DescribeVpcs", any));
    assert!(preset_matches("cis-aws-14", &real("DeleteVpc", any)));
}

#[test]
fn cis_15_organizations_changes() {
    let create_account = built_from(
        "CreateVpc",
        json!({"eventSource": "organizations.amazonaws.com", "eventName": "CreateAccount",
               "requestParameters": {"accountName": "sandbox", "email": "sandbox@example.com"}}),
    );
    check("cis-aws-15", create_account, real("CreatePolicy", any));
}

#[test]
fn every_preset_has_a_test_and_a_filter_pattern() {
    assert_eq!(PRESETS.len(), 15);
    let source = include_str!("tests.rs");
    for p in PRESETS {
        let n = p.id.trim_start_matches("cis-aws-");
        assert!(source.contains(&format!("fn cis_{n}_")), "{} has a test", p.id);
        assert!(p.filter_pattern().starts_with("{ ("), "{}", p.filter_pattern());
    }
    assert_eq!(
        preset("cis-aws-6").unwrap().filter_pattern(),
        r#"{ ($.eventName = "ConsoleLogin") && ($.errorMessage = "Failed authentication") }"#
    );
}

#[test]
fn globs_match_prefixes_suffixes_and_middles() {
    assert!(glob_match("Delete*", "DeleteVpc"));
    assert!(glob_match("*UnauthorizedOperation", "Client.UnauthorizedOperation"));
    assert!(glob_match("*:role/admin-*", "arn:aws:iam::1:role/admin-alice"));
    assert!(glob_match("a*b*c", "abc") && glob_match("a*b*c", "aXbYc"));
    assert!(!glob_match("a*b*c", "acb"));
    assert!(!glob_match("Delete*", "CreateVpc"));
    assert!(!glob_match("ab*ba", "aba"), "the prefix and suffix may not overlap");
    assert!(glob_match("DeleteVpc", "DeleteVpc") && !glob_match("DeleteVpc", "DeleteVpcs"));
}

fn rule(matcher: RuleMatch, environment_ids: Vec<Uuid>) -> Rule {
    Rule {
        id: Uuid::now_v7(),
        org_id: Uuid::nil(),
        settings: RuleSettings {
            name: "network".into(),
            enabled: true,
            environment_ids,
            matcher,
            action: RuleAction::PagerdutyAlert { severity: "critical".into() },
        },
        created_at: OffsetDateTime::UNIX_EPOCH,
        updated_at: OffsetDateTime::UNIX_EPOCH,
    }
}

#[test]
fn every_given_field_must_hold() {
    let record = real("AuthorizeSecurityGroupIngress", any);
    let event = item(&record);
    let m = |f: fn(&mut RuleMatch)| {
        let mut m = RuleMatch::default();
        f(&mut m);
        m.matches(&event)
    };
    assert!(m(|m| m.event_names = vec!["Authorize*".into()]));
    assert!(m(|m| {
        m.event_names = vec!["Authorize*".into()];
        m.event_sources = vec!["ec2.amazonaws.com".into()];
        m.identity_types = vec!["IAMUser".into()];
        m.read_only = Some(false);
    }));
    assert!(!m(|m| {
        m.event_names = vec!["Authorize*".into()];
        m.event_sources = vec!["s3.amazonaws.com".into()];
    }));
    assert!(!m(|m| {
        m.event_names = vec!["Authorize*".into()];
        m.read_only = Some(true);
    }));
    assert!(!m(|m| m.error_codes = vec!["*".into(), "x".into()]), "no error code: an error_codes test fails");
    let arn = record["userIdentity"]["arn"].as_str().unwrap().to_owned();
    assert!(RuleMatch { actor_patterns: vec![format!("{}*", &arn[..20])], ..RuleMatch::default() }.matches(&event));
    assert!(!RuleMatch { actor_patterns: vec!["arn:aws:iam::999*".into()], ..RuleMatch::default() }.matches(&event));
}

#[test]
fn a_match_becomes_an_alert_on_the_item_environments_within_the_rule() {
    let prod = Uuid::now_v7();
    let dev = Uuid::now_v7();
    let mut event = item(&real("AuthorizeSecurityGroupIngress", any));
    event.environment_ids = vec![prod, dev];
    let matcher = RuleMatch { preset: Some("cis-aws-10".into()), ..RuleMatch::default() };
    let everywhere = rule(matcher.clone(), vec![]);
    let only_prod = rule(matcher.clone(), vec![prod]);
    let elsewhere = rule(matcher.clone(), vec![Uuid::now_v7()]);
    let mut disabled = rule(matcher, vec![]);
    disabled.settings.enabled = false;
    let item_id = Uuid::now_v7();
    let hits =
        matches_of(&RuleSet::new(vec![everywhere.clone(), only_prod.clone(), elsewhere, disabled]), item_id, &event);
    assert_eq!(hits.iter().map(|h| h.rule_id).collect::<Vec<_>>(), vec![everywhere.id, only_prod.id]);
    assert_eq!(hits[0].alert.environment_ids, vec![prod, dev]);
    assert_eq!(hits[1].alert.environment_ids, vec![prod]);
    let alert = &hits[0].alert;
    assert_eq!((alert.kind, alert.source.as_str()), (EventKind::Alert, RULES_SOURCE));
    assert_eq!(alert.source_key, format!("{}/{item_id}", everywhere.id));
    assert_eq!(alert.occurred_at, event.occurred_at);
    assert_eq!(alert.links[0].href, format!("/v1/events/{item_id}"));
    assert!(alert.title.starts_with("network: "), "{}", alert.title);
    // Rules never match their own alerts.
    assert!(matches_of(
        &RuleSet::new(vec![rule(RuleMatch { actor_patterns: vec!["*a*".into()], ..RuleMatch::default() }, vec![])]),
        Uuid::now_v7(),
        alert
    )
    .is_empty());
}

#[test]
fn matches_are_validated() {
    assert!(RuleMatch::default().validate().is_err(), "an empty match would page on everything");
    assert!(RuleMatch { read_only: Some(false), ..RuleMatch::default() }.validate().is_err());
    assert!(RuleMatch { preset: Some("cis-aws-99".into()), ..RuleMatch::default() }.validate().is_err());
    assert!(RuleMatch { event_names: vec!["*".into()], ..RuleMatch::default() }.validate().is_err());
    assert!(RuleMatch { event_names: vec!["".into()], ..RuleMatch::default() }.validate().is_err());
    assert!(RuleMatch { preset: Some("cis-aws-1".into()), ..RuleMatch::default() }.validate().is_ok());
}

#[test]
fn retries_back_off_and_stop_after_a_day() {
    use delivery::*;
    let created = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let busy = AttemptResult::of_status(429, "slow down");
    let NextStep::RetryAt(first) = next_step(&busy, 1, created, created) else { panic!("429 is retried") };
    assert!(first > created && first <= created + time::Duration::seconds(5));
    let NextStep::RetryAt(later) = next_step(&busy, 10, created, created) else { panic!("retried") };
    assert!(later - created >= time::Duration::minutes(7) && later - created <= time::Duration::minutes(15));
    assert_eq!(
        next_step(&AttemptResult::of_status(500, ""), 3, created, created + time::Duration::hours(24)),
        NextStep::Failed
    );
    assert_eq!(next_step(&AttemptResult::of_status(400, "bad"), 1, created, created), NextStep::Failed);
    assert_eq!(next_step(&AttemptResult::of_status(403, ""), 1, created, created), NextStep::Failed);
    assert_eq!(next_step(&AttemptResult::of_status(202, ""), 1, created, created), NextStep::Delivered);
}

#[test]
fn webhook_signatures_follow_standard_webhooks() {
    use delivery::*;
    // The example of the Standard Webhooks specification.
    let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let body = br#"{"test": 2432232314}"#;
    assert_eq!(
        webhook_signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    assert!(webhook_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
    assert!(webhook_key("whsec_c2hvcnQ=").is_err(), "too short a key");
    assert!(webhook_key(&generate_webhook_secret()).is_ok());
}

#[test]
fn the_index_by_event_name_finds_what_trying_every_rule_finds() {
    let matchers = [
        RuleMatch { preset: Some("cis-aws-4".into()), ..RuleMatch::default() },
        RuleMatch { preset: Some("cis-aws-2".into()), ..RuleMatch::default() },
        RuleMatch {
            preset: Some("cis-aws-13".into()),
            event_names: vec!["CreateRoute".into()],
            ..RuleMatch::default()
        },
        RuleMatch { preset: Some("cis-aws-13".into()), event_names: vec!["Create*".into()], ..RuleMatch::default() },
        RuleMatch { event_names: vec!["Delete*".into()], ..RuleMatch::default() },
        RuleMatch { event_names: vec!["CreateVpc".into(), "DeleteVpc".into()], ..RuleMatch::default() },
        RuleMatch {
            identity_types: vec!["IAMUser".into()],
            error_codes: vec!["Client.*".into()],
            ..RuleMatch::default()
        },
    ];
    let rules: Vec<Rule> = matchers.iter().cloned().map(|m| rule(m, vec![])).collect();
    let set = RuleSet::new(rules.clone());
    assert_eq!(set.everywhere.len(), 3, "the rules with no literal names or sources are tried on every item");
    let mut total = 0;
    for record in records() {
        let event = item(record);
        let id = Uuid::nil();
        let indexed: Vec<Uuid> = matches_of(&set, id, &event).into_iter().map(|h| h.rule_id).collect();
        let every: Vec<Uuid> = rules.iter().filter(|r| r.fires_for(&event).is_some()).map(|r| r.id).collect();
        assert_eq!(indexed, every, "{}", record["eventName"]);
        total += every.len();
    }
    assert!(total > 100, "{total}");
}
