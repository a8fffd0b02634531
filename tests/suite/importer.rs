//! The CloudTrail importer against the AWS stand-in, seeded from real records: exact sets under
//! failures and throttling, late deliveries, malformed records, resumption and many workers.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_standin::RoleSpec;
use serde_json::json;
use serde_json::Value;
use test_support::{Backend, TestApp, SERVICE_PRINCIPAL};
use time::OffsetDateTime;
use worker::{ImportSettings, Importer};

on_both_backends!(
    backfill_stores_exactly_the_changes_despite_failures_and_throttling,
    late_deliveries_are_imported_by_the_next_run,
    malformed_records_are_kept_flagged_and_do_not_stop_the_batch,
    a_restarted_import_resumes_and_stores_each_event_once,
    a_denied_role_marks_the_connection_and_is_retried_slowly,
    three_workers_share_the_regions_and_take_over_a_dead_ones,
    one_denied_region_never_stops_the_others,
    a_role_of_another_account_starts_the_import_over,
    a_run_waiting_out_throttling_keeps_its_lease,
    a_rule_change_during_a_run_links_its_later_pages_anew,
    the_event_filter_drops_noise_counts_it_once_and_a_reimport_brings_it_back,
    a_three_role_chain_imports_and_a_broken_hop_is_named,
);

const ACCOUNT: &str = "222222222222";
const ROLE: &str = "arn:aws:iam::222222222222:role/changetrail-cloudtrail-reader";

pub struct Setup {
    pub app: TestApp,
    pub standin: aws_standin::RunningStandin,
    pub aws: aws::Aws,
    pub token: String,
    pub org_id: uuid::Uuid,
    pub connection_id: uuid::Uuid,
    pub environment_id: uuid::Uuid,
}

/// An app, a stand-in and an active connection to `ACCOUNT` in us-east-1, linked by default to
/// the environment `production`, that keeps every change (session noise too: these tests count
/// exact sets of the real records).
pub async fn setup(backend: Backend) -> Option<Setup> {
    setup_with_filter(backend, json!({"exclude_session_noise": false})).await
}

pub async fn setup_with_filter(backend: Backend, event_filter: serde_json::Value) -> Option<Setup> {
    let standin = test_support::start_standin().await;
    let access = test_support::aws_access(&standin.url(), None).await;
    let aws = access.aws.clone();
    let app = TestApp::spawn_with(backend, api::HttpSettings::default(), access).await?;
    let org = app.org("acme").await;
    let (_, env) = app.post("/v1/environments", &org.admin_token, json!({"name": "production"})).await;
    let (status, c) = app
        .post(
            "/v1/connections",
            &org.admin_token,
            json!({"name": "prod", "regions": ["us-east-1"], "default_environment": "production", "lookback_days": 1,
                   "event_filter": event_filter}),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    standin.standin.add_role(reader_role(ROLE, c["external_id"].as_str().unwrap(), &[]));
    let path = format!("/v1/connections/{}/role", c["id"].as_str().unwrap());
    let (status, active) = app.call("PUT", &path, Some(&org.admin_token), Some(json!({"role_arn": ROLE}))).await;
    assert_eq!(status, 200, "{active}");
    Some(Setup {
        connection_id: c["id"].as_str().unwrap().parse().unwrap(),
        environment_id: env["id"].as_str().unwrap().parse().unwrap(),
        org_id: org.id,
        token: org.admin_token,
        app,
        standin,
        aws,
    })
}

/// A role that trusts the service with `external_id` and may call LookupEvents, except in
/// `denied_regions` (as a service control policy would deny them).
fn reader_role(arn: &str, external_id: &str, denied_regions: &[&str]) -> RoleSpec {
    RoleSpec {
        lookup_denied_regions: denied_regions.iter().map(|r| r.to_string()).collect(),
        ..RoleSpec::reader(arn, SERVICE_PRINCIPAL, Some(external_id.into()))
    }
}

/// Fast enough for tests; still paced through the shared slot table.
pub fn test_settings() -> ImportSettings {
    ImportSettings {
        call_interval: Duration::from_millis(500),
        poll: Duration::from_millis(50),
        ..ImportSettings::default()
    }
}

async fn stored(s: &Setup) -> Vec<String> {
    let jobs = s.app.db.store.list_import_jobs(s.org_id, s.connection_id).await.unwrap();
    assert!(!jobs.is_empty());
    test_support::stored_source_keys(&s.app.db.url, s.org_id).await
}

macro_rules! setup_or_skip {
    ($backend:expr, $test:expr) => {
        match setup($backend).await {
            Some(s) => s,
            None => return test_support::skipped($test),
        }
    };
}

/// The real records as changes in `ACCOUNT`'s us-east-1, the newest half an hour old, each
/// visible at once; the source keys of the write events, which the import must store.
fn seed_last_half_hour(s: &Setup) -> Vec<String> {
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let newest = OffsetDateTime::now_utc() - time::Duration::minutes(30);
    test_support::seed(&s.standin.standin, ACCOUNT, "us-east-1", &records, newest, |_| time::Duration::ZERO)
}

async fn backfill_stores_exactly_the_changes_despite_failures_and_throttling(backend: Backend) {
    let s = setup_or_skip!(backend, "backfill_stores_exactly_the_changes_despite_failures_and_throttling");
    let now = OffsetDateTime::now_utc();
    let expected = seed_last_half_hour(&s);
    assert_eq!(expected.len(), 574);
    s.standin.standin.set_lookup_failure_rate(0.05);
    // Pace faster than AWS allows, so the stand-in throttles often.
    let settings = ImportSettings { call_interval: Duration::from_millis(250), ..test_settings() };
    let importer = Importer::new(s.app.db.store.clone(), s.aws.clone(), settings);
    import_until_caught_up(&s, &importer, now).await;
    let stored = stored(&s).await;
    assert_eq!(stored, expected, "exactly the changes, each once");
    let (served, throttled) = s.standin.standin.lookup_counts();
    assert!(throttled > 0, "the test did exercise throttling ({served} served)");

    let (status, imports) = s.app.get(&format!("/v1/connections/{}/imports", s.connection_id), &s.token).await;
    assert_eq!(status, 200);
    assert_eq!(imports["items"][0]["region"], "us-east-1");
    assert_eq!(imports["items"][0]["events_imported"], 574);
    assert_eq!(imports["items"][0]["events_flagged"], 0);
    let linked = test_support::linked_count(&s.app.db.url, s.environment_id).await;
    assert_eq!(linked, 574, "every event linked to the default environment");

    // Read back as the timeline, newest first, across pages.
    let since = (now - time::Duration::hours(3)).format(&time::format_description::well_known::Rfc3339).unwrap();
    let mut path = format!("/v1/environments/production/timeline?limit=100&since={since}");
    let (mut seen, mut previous) = (Vec::new(), None);
    loop {
        let (status, page) = s.app.get(&path, &s.token).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            let at = OffsetDateTime::parse(
                item["occurred_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            assert!(previous.is_none_or(|p| p >= at), "newest first");
            previous = Some(at);
            assert_eq!(item["kind"], "cloudtrail");
            assert_eq!(item["environments"], json!(["production"]));
            assert_eq!(item["details"]["read_only"], false);
            assert!(!item["title"].as_str().unwrap().is_empty());
            seen.push(item["details"]["event_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/v1/environments/production/timeline?limit=100&since={since}&cursor={cursor}")
            }
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, expected, "the timeline pages yield every change exactly once");
    // Caught up, a run re-scans the overlap once and stops: it does not spend the budget.
    s.standin.standin.set_lookup_failure_rate(0.0);
    let before = s.standin.standin.lookup_counts().0;
    s.app.db.store.request_import(s.org_id, s.connection_id).await.unwrap();
    importer.run_due_jobs_once().await;
    let calls = s.standin.standin.lookup_counts().0 - before;
    assert!((1..=2).contains(&calls), "a caught-up run made {calls} calls");

    // The resource filter finds a change by a related resource, by name or by ARN: the policy
    // attached to and detached from a user, whose primary resource is the user.
    for resource in ["AdministratorAccess", "arn:aws:iam::aws:policy/AdministratorAccess"] {
        let (status, page) = s
            .app
            .get(&format!("/v1/environments/production/timeline?since={since}&resource={resource}"), &s.token)
            .await;
        assert_eq!(status, 200, "{page}");
        let names: BTreeSet<&str> =
            page["items"].as_array().unwrap().iter().map(|i| i["details"]["event_name"].as_str().unwrap()).collect();
        assert!(names.contains("AttachUserPolicy") && names.contains("DetachUserPolicy"), "{resource}: {names:?}");
        let attach = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["details"]["event_name"] == "AttachUserPolicy")
            .unwrap();
        assert_eq!(attach["resources"][0]["primary"], true);
        assert_eq!(attach["resources"][0]["type"], "AWS::IAM::User");
        assert_eq!(attach["title"], "bert-jan attached AdministratorAccess to user malicious-iam-user");
        assert_eq!(attach["summary"], "attached AdministratorAccess to user malicious-iam-user");
        assert_eq!(attach["changes"], json!([{"field": "policies", "to": "+AdministratorAccess"}]));
    }

    let (status, p) = s.app.get("/v1/environments/production/timeline?kind=deploy&kind=nope", &s.token).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("kind[1]")), "{p}");
}

async fn late_deliveries_are_imported_by_the_next_run(backend: Backend) {
    let s = setup_or_skip!(backend, "late_deliveries_are_imported_by_the_next_run");
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let now = OffsetDateTime::now_utc();
    // The newest hour of events ends 2 minutes ago; a third of them is held back ("not yet
    // delivered"), as LookupEvents does with events up to 15 minutes old and more.
    let expected =
        test_support::seed(&s.standin.standin, ACCOUNT, "us-east-1", &records, now - time::Duration::minutes(2), |i| {
            if i % 3 == 0 {
                time::Duration::days(365)
            } else {
                time::Duration::ZERO
            }
        });
    let importer = Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings());
    importer.run_due_jobs_once().await;
    let first = stored(&s).await;
    assert!(
        !first.is_empty() && first.len() < expected.len(),
        "the first run sees only what was delivered: {}",
        first.len()
    );

    // Delivered now, up to 15 minutes "late" relative to the checkpoint the first run reached.
    s.standin.standin.deliver_all();
    s.app.db.store.request_import(s.org_id, s.connection_id).await.unwrap();
    importer.run_due_jobs_once().await;
    let second = stored(&s).await;
    let late_outside_overlap: Vec<_> = expected.iter().filter(|id| !second.contains(id)).collect();
    // Events older than the overlap (20 min) behind the checkpoint cannot be found by a re-scan:
    // AWS delivers within about 15 minutes, and these were held back for hours.
    // Everything up to 15 minutes behind the checkpoint the first run reached (about `now`).
    let newest_window =
        test_support::ids_newer_than(&records, now - time::Duration::minutes(2), time::Duration::minutes(13));
    assert!(newest_window.len() > 20, "the test holds back events in that window: {}", newest_window.len());
    for id in &newest_window {
        assert!(second.contains(id), "event {id}, delivered within the overlap, was not imported");
    }
    assert!(late_outside_overlap.iter().all(|id| !newest_window.contains(id)));
    assert_eq!(second.iter().collect::<BTreeSet<_>>().len(), second.len(), "nothing stored twice");
}

async fn malformed_records_are_kept_flagged_and_do_not_stop_the_batch(backend: Backend) {
    let s = setup_or_skip!(backend, "malformed_records_are_kept_flagged_and_do_not_stop_the_batch");
    let now = OffsetDateTime::now_utc();
    let odd = test_support::cloudtrail_records("otrf-ec2-proxy-s3-exfiltration");
    let good: Vec<_> = test_support::cloudtrail_records("invictus-aws-dataset").into_iter().take(300).collect();
    // Both sets end at the same moment, so their events share pages.
    let mut expected =
        test_support::seed(&s.standin.standin, ACCOUNT, "us-east-1", &odd, now - time::Duration::minutes(5), |_| {
            time::Duration::ZERO
        });
    let odd_count = expected.len();
    assert_eq!(odd_count, 90, "the OTRF records without readOnly are served as changes");
    expected.extend(test_support::seed(
        &s.standin.standin,
        ACCOUNT,
        "us-east-1",
        &good,
        now - time::Duration::minutes(5),
        |_| time::Duration::ZERO,
    ));
    expected.sort();
    let importer = Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings());
    importer.run_due_jobs_once().await;
    assert_eq!(stored(&s).await, expected, "the odd records and the rest of their batch, all stored");
    let (_, imports) = s.app.get(&format!("/v1/connections/{}/imports", s.connection_id), &s.token).await;
    assert_eq!(imports["items"][0]["events_flagged"], odd_count, "each odd record counted as flagged: {imports}");
    let flagged = test_support::flagged_problems(&s.app.db.url, s.org_id).await;
    assert_eq!(flagged.len(), odd_count);
    assert!(flagged.iter().all(|p| p.contains("no event time")), "{flagged:?}");
}

async fn a_restarted_import_resumes_and_stores_each_event_once(backend: Backend) {
    let s = setup_or_skip!(backend, "a_restarted_import_resumes_and_stores_each_event_once");
    let now = OffsetDateTime::now_utc();
    let expected = seed_last_half_hour(&s);
    // A worker that stops after a few pages of its walk (its budget runs out mid-window).
    let short = ImportSettings { run_budget: Duration::from_millis(1), ..test_settings() };
    let first = Importer::new(s.app.db.store.clone(), s.aws.clone(), short);
    first.run_due_jobs_once().await;
    let job = s.app.db.store.list_import_jobs(s.org_id, s.connection_id).await.unwrap().remove(0);
    let partial = stored(&s).await;
    assert!(partial.len() < expected.len(), "stopped part way: {}", partial.len());

    // Another worker resumes from the stored progress, not from the start.
    let calls_before = s.standin.standin.lookup_counts().0;
    let second = Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings());
    second.run_due_jobs_once().await;
    let calls = s.standin.standin.lookup_counts().0 - calls_before;
    assert_eq!(stored(&s).await, expected);
    assert!(job.walk.is_some() || job.scanned_until > now - time::Duration::days(1), "progress was stored: {job:?}");
    assert!(calls <= 20, "the resumed run did not start over ({calls} calls)");
}

async fn a_denied_role_marks_the_connection_and_is_retried_slowly(backend: Backend) {
    let s = setup_or_skip!(backend, "a_denied_role_marks_the_connection_and_is_retried_slowly");
    s.standin.standin.add_role(reader_role(ROLE, "ct-not-this-connections", &[]));
    let importer = Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings());
    importer.run_due_jobs_once().await;
    let (_, connection) = s.app.get(&format!("/v1/connections/{}", s.connection_id), &s.token).await;
    assert_eq!(connection["status"], "error");
    assert_eq!(connection["last_error"]["code"], "access_denied");
    let job = s.app.db.store.list_import_jobs(s.org_id, s.connection_id).await.unwrap().remove(0);
    assert!(job.next_run_at > OffsetDateTime::now_utc() + time::Duration::minutes(10), "retried slowly, not spinning");
    assert_eq!(importer.run_due_jobs_once().await, 0, "an errored connection is not claimed");
}

async fn three_workers_share_the_regions_and_take_over_a_dead_ones(backend: Backend) {
    let s = setup_or_skip!(backend, "three_workers_share_the_regions_and_take_over_a_dead_ones");
    let regions = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"];
    let path = format!("/v1/connections/{}", s.connection_id);
    let (status, c) = s.app.call("PATCH", &path, Some(&s.token), Some(json!({"regions": regions}))).await;
    assert_eq!(status, 200, "{c}");
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let now = OffsetDateTime::now_utc();
    let mut expected = Vec::new();
    for (i, region) in regions.iter().enumerate() {
        let slice: Vec<_> = records.iter().skip(i * 480).take(480).cloned().collect();
        expected.extend(test_support::seed(
            &s.standin.standin,
            ACCOUNT,
            region,
            &slice,
            now - time::Duration::minutes(10),
            |_| time::Duration::ZERO,
        ));
    }
    expected.sort();

    // A worker that claimed two regions and died: its leases pass after 2 seconds.
    let store = s.app.db.store.clone();
    let dead = store.claim_import_jobs("dead-worker", now, now + time::Duration::seconds(2), 2).await.unwrap();
    assert_eq!(dead.len(), 2);

    let shutdown = tokio_util::sync::CancellationToken::new();
    let settings = ImportSettings { concurrency: 2, lease: Duration::from_secs(5), ..test_settings() };
    let workers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(Importer::new(store.clone(), s.aws.clone(), settings.clone()).run(shutdown.clone())))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let jobs = store.list_import_jobs(s.org_id, s.connection_id).await.unwrap();
        if jobs.len() == regions.len() && jobs.iter().all(|j| j.scanned_until >= now && j.walk.is_none()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not every region finished: {jobs:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(stored(&s).await, expected, "every region imported, each event once");

    let lookups = s.standin.standin.lookups();
    let workers_seen: BTreeSet<&str> = lookups.iter().map(|l| l.access_key_id.as_str()).collect();
    assert!(workers_seen.len() >= 2, "the work was shared");
    let mut first_pages = BTreeSet::new();
    for l in lookups.iter().filter(|l| !l.with_token) {
        let window = (l.region.clone(), l.start_time.map(f64::to_bits), l.end_time.map(f64::to_bits));
        assert!(first_pages.insert(window.clone()), "window {window:?} was walked twice");
    }
    let jobs = store.list_import_jobs(s.org_id, s.connection_id).await.unwrap();
    assert!(jobs.iter().all(|j| j.leased_until.is_none()), "stopped workers freed their leases");
}

/// A service control policy can deny LookupEvents in one region: that region reports it and is
/// retried slowly, while the connection stays active and its other regions import.
async fn one_denied_region_never_stops_the_others(backend: Backend) {
    let s = setup_or_skip!(backend, "one_denied_region_never_stops_the_others");
    let path = format!("/v1/connections/{}", s.connection_id);
    let (status, body) =
        s.app.call("PATCH", &path, Some(&s.token), Some(json!({"regions": ["us-east-1", "eu-west-1"]}))).await;
    assert_eq!(status, 200, "{body}");
    let (_, c) = s.app.get(&path, &s.token).await;
    s.standin.standin.add_role(reader_role(ROLE, c["external_id"].as_str().unwrap(), &["eu-west-1"]));
    let expected = seed_last_half_hour(&s);
    let importer = Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings());
    assert_eq!(importer.run_due_jobs_once().await, 2);
    assert_eq!(stored(&s).await, expected, "us-east-1 is imported in full");
    let (_, c) = s.app.get(&path, &s.token).await;
    assert_eq!(c["status"], "active", "one region's denial is not the connection's: {c}");
    let (_, imports) = s.app.get(&format!("{path}/imports"), &s.token).await;
    let region =
        |name: &str| imports["items"].as_array().unwrap().iter().find(|i| i["region"] == name).unwrap().clone();
    assert_eq!(region("eu-west-1")["status"], "failing");
    assert!(region("eu-west-1")["last_error"].as_str().unwrap().contains("LookupEvents in eu-west-1 was denied"));
    assert_eq!(region("us-east-1")["last_error"], serde_json::Value::Null);
    let jobs = s.app.db.store.list_import_jobs(s.org_id, s.connection_id).await.unwrap();
    let denied = jobs.iter().find(|j| j.region == "eu-west-1").unwrap();
    assert!(denied.next_run_at > OffsetDateTime::now_utc() + time::Duration::minutes(10), "retried slowly");
}

/// Registering a role of another account: the old account's checkpoint and cached credentials
/// mean nothing for the new one, whose history is imported from the start of the lookback.
async fn a_role_of_another_account_starts_the_import_over(backend: Backend) {
    let s = setup_or_skip!(backend, "a_role_of_another_account_starts_the_import_over");
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let now = OffsetDateTime::now_utc();
    let importer = Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings());
    importer.run_due_jobs_once().await;
    let first = s.app.db.store.list_import_jobs(s.org_id, s.connection_id).await.unwrap().remove(0);
    assert!(first.scanned_until > now - time::Duration::minutes(5), "the first account is caught up");

    const OTHER: &str = "333333333333";
    let other_role = format!("arn:aws:iam::{OTHER}:role/changetrail-cloudtrail-reader");
    let path = format!("/v1/connections/{}", s.connection_id);
    let (_, c) = s.app.get(&path, &s.token).await;
    s.standin.standin.add_role(reader_role(&other_role, c["external_id"].as_str().unwrap(), &[]));
    // The new account's history: from 20 hours ago, before the old account's checkpoint.
    let expected =
        test_support::seed(&s.standin.standin, OTHER, "us-east-1", &records, now - time::Duration::hours(20), |_| {
            time::Duration::ZERO
        });
    let (status, body) =
        s.app.call("PUT", &format!("{path}/role"), Some(&s.token), Some(json!({"role_arn": other_role}))).await;
    assert_eq!(status, 200, "{body}");
    let job = s.app.db.store.list_import_jobs(s.org_id, s.connection_id).await.unwrap().remove(0);
    assert_eq!(job.account_id, OTHER);
    assert!(job.scanned_until < now - time::Duration::hours(23), "back to the start of the lookback day");
    importer.run_due_jobs_once().await;
    assert_eq!(stored(&s).await, expected, "every event of the new account, read with the new role's credentials");
}

/// A run that waits out throttling longer than its lease renews the lease, so no other worker
/// takes the job meanwhile and the budget is not spent twice.
async fn a_run_waiting_out_throttling_keeps_its_lease(backend: Backend) {
    let s = setup_or_skip!(backend, "a_run_waiting_out_throttling_keeps_its_lease");
    seed_last_half_hour(&s);
    // Two throttled calls make the run wait 3 to 4.5 s; the lease is 1 s.
    s.standin.standin.throttle_next(2);
    let settings = ImportSettings { lease: Duration::from_secs(1), ..test_settings() };
    let first = Importer::new(s.app.db.store.clone(), s.aws.clone(), settings.clone());
    let running = tokio::spawn({
        let first = first.clone();
        async move { first.run_due_jobs_once().await }
    });
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let second = Importer::new(s.app.db.store.clone(), s.aws.clone(), settings);
    assert_eq!(second.run_due_jobs_once().await, 0, "the waiting run still holds its job");
    assert_eq!(running.await.unwrap(), 1);
}

/// A run reads the connection's rules when it starts; if they change while it runs, the pages
/// it stores after the change follow the new rules. (Before, they were linked under the old
/// ones, and the re-link the change started could already have passed them.) No re-link worker
/// runs here: what the timeline shows is what the import itself stored.
async fn a_rule_change_during_a_run_links_its_later_pages_anew(backend: Backend) {
    let s = setup_or_skip!(backend, "a_rule_change_during_a_run_links_its_later_pages_anew");
    let expected = seed_last_half_hour(&s);
    let (status, _) = s.app.post("/v1/environments", &s.token, json!({"name": "staging"})).await;
    assert_eq!(status, 201);
    // The run starts, reads the rules (everything to production), then waits out throttling.
    s.standin.standin.throttle_next(2);
    let importer = Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings());
    let running = tokio::spawn({
        let importer = importer.clone();
        async move { importer.run_due_jobs_once().await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let path = format!("/v1/connections/{}", s.connection_id);
    let (status, body) =
        s.app.call("PATCH", &path, Some(&s.token), Some(json!({"default_environment": "staging"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(running.await.unwrap(), 1);

    let timeline = |env: &'static str| {
        let (app, token) = (&s.app, s.token.clone());
        async move {
            let mut count = 0;
            let mut cursor = String::new();
            loop {
                let path = format!(
                    "/v1/environments/{env}/timeline?include_read_only=true&limit=500&since=2000-01-01T00:00:00Z{cursor}"
                );
                let (_, page) = app.get(&path, &token).await;
                count += page["items"].as_array().unwrap().len();
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = format!("&cursor={next}"),
                    None => return count,
                }
            }
        }
    };
    assert!(!expected.is_empty());
    assert_eq!(timeline("production").await, 0, "nothing linked under the old rules");
    assert_eq!(timeline("staging").await, expected.len(), "every change linked under the new ones");
}

/// Imports until the setup's connection has walked up to `now`.
async fn import_until_caught_up(s: &Setup, importer: &std::sync::Arc<Importer>, now: OffsetDateTime) {
    import_connection_until_caught_up(s, importer, s.connection_id, now).await
}

async fn import_connection_until_caught_up(
    s: &Setup,
    importer: &std::sync::Arc<Importer>,
    connection_id: uuid::Uuid,
    now: OffsetDateTime,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        importer.run_due_jobs_once().await;
        let job = &s.app.db.store.list_import_jobs(s.org_id, connection_id).await.unwrap()[0];
        if job.scanned_until >= now && job.walk.is_none() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the import did not finish in 2 minutes: {job:?}");
        s.app.db.store.request_import(s.org_id, connection_id).await.unwrap();
    }
}

async fn the_event_filter_drops_noise_counts_it_once_and_a_reimport_brings_it_back(backend: Backend) {
    let s = match setup_with_filter(backend, json!({})).await {
        Some(s) => s,
        None => {
            return test_support::skipped("the_event_filter_drops_noise_counts_it_once_and_a_reimport_brings_it_back")
        }
    };
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let writes = seed_last_half_hour(&s);
    let key_of = |pred: &dyn Fn(&str, &str) -> bool| -> BTreeSet<String> {
        records
            .iter()
            .filter(|r| r["readOnly"] == false)
            .filter(|r| pred(r["eventSource"].as_str().unwrap(), r["eventName"].as_str().unwrap()))
            .map(|r| r["eventID"].as_str().unwrap().to_owned())
            .collect()
    };
    let noise = key_of(&|source, name| domain::noise::SESSION_NOISE.contains(&(source, name)));
    assert_eq!(noise.len(), 59, "the real records' session noise");
    let importer = Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings());
    import_until_caught_up(&s, &importer, OffsetDateTime::now_utc()).await;
    let first: BTreeSet<String> = stored(&s).await.into_iter().collect();
    let all: BTreeSet<String> = writes.iter().cloned().collect();
    assert_eq!(first, &all - &noise, "every change but the session noise");
    let path = format!("/v1/connections/{}", s.connection_id);
    let (_, connection) = s.app.get(&path, &s.token).await;
    assert_eq!(connection["events_excluded"], 59, "{connection}");
    assert_eq!(connection["event_filter"]["exclude_session_noise"], true);

    // A run over the same window meets the noise again: it is counted once.
    s.app
        .db
        .store
        .restart_imports(s.org_id, s.connection_id, OffsetDateTime::now_utc() - time::Duration::days(1))
        .await
        .unwrap();
    import_until_caught_up(&s, &importer, OffsetDateTime::now_utc()).await;
    assert_eq!(s.app.get(&path, &s.token).await.1["events_excluded"], 59);

    // Keep the noise but drop SSM: after a re-import the noise is there; SSM changes already
    // stored stay, and are counted as dropped by the new filter.
    let filter = json!({"exclude_session_noise": false, "exclude_event_sources": ["ssm.*"]});
    let (status, patched) = s.app.call("PATCH", &path, Some(&s.token), Some(json!({"event_filter": filter}))).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["event_filter"]["exclude_event_sources"], json!(["ssm.*"]));
    let (status, _) = s.app.call("POST", &format!("{path}/reimport"), Some(&s.token), None).await;
    assert_eq!(status, 202);
    import_until_caught_up(&s, &importer, OffsetDateTime::now_utc()).await;
    let after: BTreeSet<String> = stored(&s).await.into_iter().collect();
    let ssm_noise =
        key_of(&|source, name| source == "ssm.amazonaws.com" && domain::noise::SESSION_NOISE.contains(&(source, name)));
    assert_eq!(after, &all - &ssm_noise, "the other noise came back with the re-import");
    let ssm = key_of(&|source, _| source == "ssm.amazonaws.com");
    let dropped: BTreeSet<String> = noise.union(&ssm).cloned().collect();
    assert_eq!(s.app.get(&path, &s.token).await.1["events_excluded"], dropped.len(), "each dropped event counted once");

    let (status, p) =
        s.app.call("PATCH", &path, Some(&s.token), Some(json!({"event_filter": {"exclude_actors": [""]}}))).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("event_filter.exclude_actors[0]")), "{p}");
}

fn chained_role(arn: &str, trusts: &str, external_id: Option<&str>, lookups: bool) -> RoleSpec {
    RoleSpec { allow_lookup_events: lookups, ..RoleSpec::reader(arn, trusts, external_id.map(str::to_owned)) }
}

async fn a_three_role_chain_imports_and_a_broken_hop_is_named(backend: Backend) {
    let s = setup_or_skip!(backend, "a_three_role_chain_imports_and_a_broken_hop_is_named");
    const HUB: &str = "arn:aws:iam::111111111111:role/changetrail-hub";
    const TRANSIT: &str = "arn:aws:iam::333333333333:role/transit";
    const READER: &str = "arn:aws:iam::444444444444:role/changetrail-reader";
    let (status, c) = s
        .app
        .post(
            "/v1/connections",
            &s.token,
            json!({"name": "through the hub", "regions": ["us-east-1"], "default_environment": "production", "lookback_days": 1,
                   "event_filter": {"exclude_session_noise": false}}),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    let (id, external_id) = (c["id"].as_str().unwrap().to_owned(), c["external_id"].as_str().unwrap().to_owned());
    let register = |body: Value| {
        let (app, token, path) = (&s.app, &s.token, format!("/v1/connections/{id}/role"));
        async move { app.call("PUT", &path, Some(token), Some(body)).await }
    };
    let chain = json!({"role_chain": [HUB, TRANSIT, READER]});
    let standin = &s.standin.standin;
    standin.add_role(chained_role(HUB, SERVICE_PRINCIPAL, Some(&external_id), false));
    standin.add_role(chained_role(READER, TRANSIT, Some(&external_id), true));

    // The middle hop trusts somebody else: the answer names it.
    standin.add_role(chained_role(TRANSIT, "arn:aws:iam::333333333333:role/someone-else", None, false));
    let (status, p) = register(chain.clone()).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("assume_role_denied")), "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("hop 2 of 3") && detail.contains(TRANSIT), "{detail}");
    // The last hop does not require the external ID: the confused-deputy check refuses it.
    standin.add_role(chained_role(TRANSIT, HUB, None, false));
    standin.add_role(chained_role(READER, TRANSIT, None, true));
    let (status, p) = register(chain.clone()).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("external_id_not_enforced")), "{p}");
    let (_, pending) = s.app.get(&format!("/v1/connections/{id}"), &s.token).await;
    assert_eq!((pending["status"].as_str(), &pending["role_chain"]), (Some("pending_role"), &json!([])));
    // Both ways at once, or a chain too long, is a validation error.
    let (status, p) = register(json!({"role_arn": READER, "role_chain": [READER]})).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("role_arn")), "{p}");
    let (status, p) = register(json!({"role_chain": [HUB, TRANSIT, HUB, READER, "x", "y"]})).await;
    assert_eq!(status, 422, "{p}");
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert!(
        fields.contains(&"role_chain") && fields.contains(&"role_chain[2]") && fields.contains(&"role_chain[4]"),
        "{p}"
    );

    // Fixed: the chain registers, and the import reads the last role's account through it.
    standin.add_role(chained_role(READER, TRANSIT, Some(&external_id), true));
    let (status, active) = register(chain).await;
    assert_eq!(status, 200, "{active}");
    assert_eq!(active["status"], "active");
    assert_eq!(active["role_arn"], READER);
    assert_eq!(active["role_chain"], json!([HUB, TRANSIT, READER]));
    assert_eq!(active["account_id"], "444444444444");
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let newest = OffsetDateTime::now_utc() - time::Duration::minutes(30);
    let expected = test_support::seed(standin, "444444444444", "us-east-1", &records, newest, |_| time::Duration::ZERO);
    let importer = Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings());
    let connection_id: uuid::Uuid = id.parse().unwrap();
    import_connection_until_caught_up(&s, &importer, connection_id, OffsetDateTime::now_utc()).await;
    let (_, imports) = s.app.get(&format!("/v1/connections/{id}/imports"), &s.token).await;
    assert_eq!(imports["items"][0]["events_imported"], expected.len(), "{imports}");
    let (status, revalidated) = s.app.post(&format!("/v1/connections/{id}/validate"), &s.token, json!({})).await;
    assert_eq!((status, &revalidated["role_chain"]), (200, &json!([HUB, TRANSIT, READER])), "{revalidated}");
}
