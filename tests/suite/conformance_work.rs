//! The storage conformance suite, continued: the import lease table, the timeline query and
//! re-linking, held to one behaviour on every backend.

use std::sync::Arc;

use domain::cloudtrail::{normalize, RecordContext};
use domain::connection::ConnectionSettings;
use domain::event::{EventKind, NewEvent};
use domain::import::{JobPlan, Lease, PageProgress, RunOutcome, Walk};
use domain::store::StoreError;
use domain::timeline::{TimelineFilters, TimelineQuery};
use domain::{Connection, Environment, ExternalId, NewEnvironment, RegisteredRole, Store};
use serde_json::json;
use test_support::Backend;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

on_both_backends!(
    import_jobs_follow_their_plan_and_are_leased_to_one_worker,
    an_import_page_is_stored_only_under_its_lease,
    finished_runs_free_the_lease_and_schedule_the_next,
    timeline_pages_follow_cursors_and_filters,
    value_filters_follow_an_items_changes_and_lead_the_scan,
    text_filters_test_the_links_copies_and_the_event_where_there_is_none,
    several_environments_merge_without_duplicates,
    relinking_replaces_links_under_its_lease,
    members_follow_the_listing_and_discovery_is_leased_to_one_worker,
    timeline_writes_count_what_changes_a_timeline_and_nothing_else,
);

const ACCOUNT: &str = "222222222222";

/// An organisation with environments `prod` and `staging`, and an active connection.
async fn setup(store: &Arc<dyn Store>, regions: &[&str]) -> (Uuid, Environment, Environment, Connection) {
    let org = store.create_organization("acme").await.unwrap().id;
    let prod = store.create_environment(org, &NewEnvironment::parse("prod", None, None).unwrap()).await.unwrap();
    let staging = store.create_environment(org, &NewEnvironment::parse("staging", None, None).unwrap()).await.unwrap();
    let settings = ConnectionSettings {
        name: "prod account".into(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        ..ConnectionSettings::new_connection()
    };
    let created = store.create_connection(org, &settings, &ExternalId::generate()).await.unwrap();
    let role = RegisteredRole {
        role_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/r")),
        via: vec![],
        account_id: ACCOUNT.into(),
        assumed_role_arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/r/s"),
        validated_at: domain::time_util::now(),
        credentials: domain::connection::CredentialSource::Role,
    };
    let active = store.register_role(org, created.id, &role).await.unwrap().unwrap();
    (org, prod, staging, active)
}

/// A CloudTrail change at `at`, normalised as an import would, linked to `envs`.
fn change(
    connection: &Connection,
    name: &str,
    source: &str,
    actor: &str,
    at: OffsetDateTime,
    envs: &[Uuid],
) -> NewEvent {
    let record = json!({
        "eventID": Uuid::new_v4().to_string(), "eventName": name, "eventSource": source,
        "eventTime": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
        "readOnly": false, "awsRegion": "us-east-1", "recipientAccountId": ACCOUNT,
        "userIdentity": {"type": "IAMUser", "userName": actor},
        "requestParameters": {"groupId": format!("sg-{}", &name.to_lowercase()[..3])}
    });
    let context =
        RecordContext { connection_id: connection.id, account_id: ACCOUNT, region: "us-east-1", fallback_time: at };
    let mut event = normalize(&record, &context).event;
    event.environment_ids = envs.to_vec();
    event
}

fn lease(org: Uuid, connection: &Connection, region: &str, owner: &str) -> Lease {
    Lease { org_id: org, connection_id: connection.id, region: region.into(), owner: owner.into() }
}

fn query(envs: Vec<Uuid>, limit: u32) -> TimelineQuery {
    let now = domain::time_util::now();
    TimelineQuery {
        environment_ids: envs,
        filters: TimelineFilters::default(),
        since: now - Duration::days(1),
        until: now + Duration::minutes(1),
        kinds: vec![],
        include_read_only: false,
        limit,
        after: None,
    }
}

async fn import_jobs_follow_their_plan_and_are_leased_to_one_worker(backend: Backend) {
    let db = db_or_skip!(backend, "import_jobs_follow_their_plan_and_are_leased_to_one_worker");
    let (org, _, _, connection) = setup(&db.store, &["us-east-1", "eu-west-1"]).await;
    // Registering the role scheduled the jobs, in its own transaction.
    let jobs = db.store.list_import_jobs(org, connection.id).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.region.as_str()).collect::<Vec<_>>(), ["eu-west-1", "us-east-1"]);
    let now = domain::time_util::now();
    let backfill_from = now - Duration::days(7);
    assert!(jobs.iter().all(|j| (j.scanned_until - backfill_from).abs() < Duration::minutes(1)), "lookback days");
    assert!(jobs.iter().all(|j| j.account_id == ACCOUNT && j.walk.is_none()));
    let plan = JobPlan::for_connection(&connection, now).unwrap();
    assert_eq!(plan.start, backfill_from, "a new connection backfills its lookback days");
    db.store.schedule_imports(org, connection.id, &plan).await.unwrap();
    let again = db.store.list_import_jobs(org, connection.id).await.unwrap();
    assert_eq!(again, jobs, "scheduling the same plan again changes nothing");

    let later = now + Duration::seconds(1);
    let claimed = db.store.claim_import_jobs("w1", later, later + Duration::minutes(1), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let again = db.store.claim_import_jobs("w2", later, later + Duration::minutes(1), 10).await.unwrap();
    assert!(again.is_empty(), "a leased job is nobody else's");
    let after_lease = later + Duration::minutes(2);
    let taken = db.store.claim_import_jobs("w2", after_lease, after_lease + Duration::minutes(1), 1).await.unwrap();
    assert_eq!(taken.len(), 1, "a passed lease is free again, and the limit holds");

    // A region taken off the plan loses its job; one left keeps its progress.
    let narrower = JobPlan { regions: vec!["us-east-1".into()], start: now, ..plan };
    db.store.schedule_imports(org, connection.id, &narrower).await.unwrap();
    let kept = db.store.list_import_jobs(org, connection.id).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].scanned_until, jobs[1].scanned_until, "an existing job keeps its checkpoint");

    // Disabled connections are not imported.
    let disabled = ConnectionSettings { enabled: false, ..connection.settings.clone() };
    db.store.update_connection_settings(org, connection.id, &disabled).await.unwrap();
    let far = now + Duration::hours(1);
    assert!(db.store.claim_import_jobs("w3", far, far + Duration::minutes(1), 10).await.unwrap().is_empty());
    assert!(db.store.list_import_jobs(Uuid::now_v7(), connection.id).await.unwrap().is_empty(), "scoped to the org");
}

async fn an_import_page_is_stored_only_under_its_lease(backend: Backend) {
    let db = db_or_skip!(backend, "an_import_page_is_stored_only_under_its_lease");
    let (org, prod, _, connection) = setup(&db.store, &["us-east-1"]).await;
    let now = domain::time_util::now();
    db.store.schedule_imports(org, connection.id, &JobPlan::for_connection(&connection, now).unwrap()).await.unwrap();
    // Claimed once due: scheduling made it due at the moment it ran.
    let now = domain::time_util::now();
    db.store.claim_import_jobs("w1", now, now + Duration::seconds(30), 1).await.unwrap();

    let events: Vec<NewEvent> = (0..3)
        .map(|i| {
            change(
                &connection,
                "DeleteSecurityGroup",
                "ec2.amazonaws.com",
                "alice",
                now - Duration::minutes(i),
                &[prod.id],
            )
        })
        .collect();
    let walk = Walk { start: now - Duration::hours(1), end: now, next_token: Some("page-2".into()) };
    let progress = PageProgress {
        continue_walk: Some(walk.clone()),
        window_end: now,
        lease_until: now + Duration::seconds(30),
        links_version: 0,
        excluded: vec!["dropped-1".into(), "dropped-2".into(), "dropped-1".into()],
    };
    let mine = lease(org, &connection, "us-east-1", "w1");
    assert_eq!(db.store.save_import_page(&mine, &events, &progress).await.unwrap(), [0, 1, 2], "every event is new");
    let counted = db.store.get_connection(org, connection.id).await.unwrap().unwrap();
    assert_eq!(counted.events_excluded, 2, "what the filter dropped is counted with the page");
    assert_eq!(
        db.store.save_import_page(&mine, &events, &progress).await.unwrap().len(),
        0,
        "the same events are stored once"
    );
    let job = db.store.list_import_jobs(org, connection.id).await.unwrap().remove(0);
    assert_eq!((job.walk, job.events_imported), (Some(walk), 3), "the walk resumes from its stored token");
    assert_eq!(
        db.store.timeline(org, &query(vec![prod.id], 10)).await.unwrap().len(),
        3,
        "linked in the same transaction"
    );

    // Another worker takes the job once the lease passes; the old holder's page is refused whole.
    let past = now + Duration::minutes(1);
    db.store.claim_import_jobs("w2", past, past + Duration::minutes(1), 1).await.unwrap();
    let late = vec![change(&connection, "CreateBucket", "s3.amazonaws.com", "bob", now, &[prod.id])];
    let done = PageProgress {
        continue_walk: None,
        window_end: now,
        lease_until: past,
        links_version: 0,
        excluded: Vec::new(),
    };
    let refused = db.store.save_import_page(&mine, &late, &done).await;
    assert!(matches!(refused, Err(StoreError::LeaseLost)), "{refused:?}");
    assert_eq!(
        db.store.timeline(org, &query(vec![prod.id], 10)).await.unwrap().len(),
        3,
        "nothing of the refused page"
    );

    // The last page of a window moves the checkpoint to its end and ends the walk.
    let theirs = lease(org, &connection, "us-east-1", "w2");
    assert_eq!(db.store.save_import_page(&theirs, &late, &done).await.unwrap(), [0]);
    let job = db.store.list_import_jobs(org, connection.id).await.unwrap().remove(0);
    assert_eq!((job.scanned_until, job.walk, job.events_imported), (now, None, 4));
}

async fn finished_runs_free_the_lease_and_schedule_the_next(backend: Backend) {
    let db = db_or_skip!(backend, "finished_runs_free_the_lease_and_schedule_the_next");
    let (org, _, _, connection) = setup(&db.store, &["us-east-1"]).await;
    let now = domain::time_util::now();
    db.store.schedule_imports(org, connection.id, &JobPlan::for_connection(&connection, now).unwrap()).await.unwrap();
    // Claimed once due: scheduling made it due at the moment it ran.
    let now = domain::time_util::now();
    db.store.claim_import_jobs("w1", now, now + Duration::minutes(1), 1).await.unwrap();
    let mine = lease(org, &connection, "us-east-1", "w1");

    let failed = RunOutcome { next_run_at: now + Duration::minutes(5), error: Some("LookupEvents failed".into()) };
    db.store.finish_import_run(&mine, &failed).await.unwrap();
    let job = db.store.list_import_jobs(org, connection.id).await.unwrap().remove(0);
    assert_eq!((job.leased_until, job.attempts, job.last_error.as_deref()), (None, 1, Some("LookupEvents failed")));
    assert_eq!(job.next_run_at, failed.next_run_at);
    assert!(
        db.store.claim_import_jobs("w2", now, now + Duration::minutes(1), 1).await.unwrap().is_empty(),
        "not due yet"
    );

    assert!(db.store.request_import(org, connection.id).await.unwrap(), "sync makes it due now");
    assert!(!db.store.request_import(Uuid::now_v7(), connection.id).await.unwrap(), "not another org's");
    let soon = domain::time_util::now() + Duration::seconds(1);
    assert_eq!(db.store.claim_import_jobs("w2", soon, soon + Duration::minutes(1), 1).await.unwrap().len(), 1);
    let theirs = lease(org, &connection, "us-east-1", "w2");
    db.store.finish_import_run(&theirs, &RunOutcome { next_run_at: soon, error: None }).await.unwrap();
    let job = db.store.list_import_jobs(org, connection.id).await.unwrap().remove(0);
    assert_eq!((job.attempts, job.last_error), (0, None), "a success resets the backoff");
    assert!(job.last_success_at.is_some());

    // A stopping worker frees what it holds.
    let claim_at = soon + Duration::seconds(1);
    db.store.claim_import_jobs("w3", claim_at, claim_at + Duration::hours(1), 1).await.unwrap();
    db.store.release_leases("w3").await.unwrap();
    assert_eq!(db.store.claim_import_jobs("w4", claim_at, claim_at + Duration::minutes(1), 1).await.unwrap().len(), 1);
}

/// The filters on an item's values (`source`, `actor`, `service`, labels) read the facet index
/// (migration 0016): it must follow the item when it is stored again with other values or in
/// other environments, and lose it when an environment goes.
async fn value_filters_follow_an_items_changes_and_lead_the_scan(backend: Backend) {
    let db = db_or_skip!(backend, "value_filters_follow_an_items_changes_and_lead_the_scan");
    let (org, prod, staging, connection) = setup(&db.store, &["us-east-1"]).await;
    let now = domain::time_util::now();
    let deploy = |service: &str, status: &str, envs: Vec<Uuid>| {
        let posted = domain::posted::deploy(domain::posted::DeployInput {
            environment: Some("prod"),
            environments: None,
            service,
            version: "v7",
            status,
            started_at: now - Duration::minutes(5),
            finished_at: None,
            url: None,
            commit_sha: None,
            actor: Some("ci"),
            external_id: Some("deploy-7"),
        })
        .unwrap();
        NewEvent { environment_ids: envs, ..posted.event }
    };
    let count = |envs: Vec<Uuid>, filters: TimelineFilters| {
        let store = db.store.clone();
        let q = TimelineQuery { filters, ..query(envs, 50) };
        async move { store.timeline(org, &q).await.unwrap().len() }
    };
    let service = |s: &str| TimelineFilters { service: Some(s.into()), ..Default::default() };
    let label = |k: &str, v: &str| TimelineFilters { labels: vec![(k.into(), v.into())], ..Default::default() };

    let (id, _) = db.store.upsert_event(org, &deploy("checkout-api", "started", vec![prod.id])).await.unwrap();
    db.store
        .upsert_event(org, &change(&connection, "CreateVpc", "ec2.amazonaws.com", "alice", now, &[prod.id]))
        .await
        .unwrap();
    assert_eq!(count(vec![prod.id], service("checkout-api")).await, 1);
    assert_eq!(count(vec![prod.id], label("service", "checkout-api")).await, 1);
    let ec2 = TimelineFilters { source: Some("ec2.amazonaws.com".into()), ..Default::default() };
    assert_eq!(count(vec![prod.id], ec2.clone()).await, 1, "the event source");
    let aws = TimelineFilters { source: Some("aws.cloudtrail".into()), ..Default::default() };
    assert_eq!(count(vec![prod.id], aws).await, 1, "the item's own source");
    let alice = TimelineFilters { actor: Some("alice".into()), ..Default::default() };
    assert_eq!(count(vec![prod.id], alice.clone()).await, 1);
    assert_eq!(count(vec![prod.id], label("aws.region", "us-east-1")).await, 1, "a label without facets (0019)");
    let in_region = TimelineFilters {
        labels: vec![("aws.region".into(), "us-east-1".into()), ("service".into(), "checkout-api".into())],
        ..Default::default()
    };
    assert_eq!(count(vec![prod.id], in_region).await, 0, "both labels hold, whichever leads");
    let both = TimelineFilters { actor: Some("alice".into()), source: Some("deploy".into()), ..Default::default() };
    assert_eq!(count(vec![prod.id], both).await, 0, "every filter holds, not only the one that leads");

    // Stored again as another service, in staging only: the filters follow.
    let (again, _) = db.store.upsert_event(org, &deploy("payments", "succeeded", vec![staging.id])).await.unwrap();
    assert_eq!(again, id);
    assert_eq!(count(vec![prod.id], service("checkout-api")).await, 0);
    assert_eq!(count(vec![prod.id], service("payments")).await, 0);
    assert_eq!(count(vec![staging.id], service("payments")).await, 1);
    assert_eq!(count(vec![staging.id, prod.id], service("payments")).await, 1, "several environments");
    assert_eq!(count(vec![staging.id, prod.id], ec2.clone()).await, 1);

    // The plan reads the facet's rows (which index, on a table this small, is the planner's
    // choice; the benchmark shows the plan at scale).
    let store = storage::connect_sql(&db.url).await.unwrap();
    let q = TimelineQuery { filters: service("payments"), ..query(vec![staging.id], 50) };
    let plan = store.explain_timeline(org, &q).await.unwrap().join("\n");
    match backend {
        Backend::Postgres => assert!(plan.contains("on event_facets f"), "{plan}"),
        Backend::Sqlite => assert!(plan.contains("SEARCH f USING PRIMARY KEY"), "{plan}"),
    }

    // The facets follow the links: the deploy's three (source, actor, service label) moved to staging.
    assert_eq!(test_support::facet_count(&db.url, staging.id).await, 3);
    // An environment deleted takes its facets along; the others stay.
    assert!(db.store.delete_environment(org, staging.id).await.unwrap());
    assert_eq!(test_support::facet_count(&db.url, staging.id).await, 0);
    assert_eq!(count(vec![prod.id], ec2).await, 1);
    assert_eq!(count(vec![prod.id], alice).await, 1);
    // The change left in prod has two: its event source and its actor. Its source
    // `aws.cloudtrail` and its `aws.*` labels have none (0019), and were found above all the same.
    assert_eq!(test_support::facet_count(&db.url, prod.id).await, 2);
}

async fn timeline_pages_follow_cursors_and_filters(backend: Backend) {
    let db = db_or_skip!(backend, "timeline_pages_follow_cursors_and_filters");
    let (org, prod, staging, connection) = setup(&db.store, &["us-east-1"]).await;
    let now = domain::time_util::now();
    let mut events = Vec::new();
    for i in 0..7 {
        let (name, source, actor) = if i % 2 == 0 {
            ("DeleteSecurityGroup", "ec2.amazonaws.com", "alice")
        } else {
            ("PutBucketPolicy", "s3.amazonaws.com", "bob")
        };
        events.push(change(&connection, name, source, actor, now - Duration::minutes(i), &[prod.id]));
    }
    events.push(change(&connection, "CreateUser", "iam.amazonaws.com", "carol", now, &[staging.id]));
    for e in &events {
        db.store.upsert_event(org, e).await.unwrap();
    }
    let deploy = domain::posted::deploy(domain::posted::DeployInput {
        environment: Some("prod"),
        environments: None,
        service: "checkout-api",
        version: "v2",
        status: "succeeded",
        started_at: now - Duration::seconds(30),
        finished_at: None,
        url: None,
        commit_sha: None,
        actor: Some("ci"),
        external_id: None,
    })
    .unwrap();
    db.store.upsert_event(org, &NewEvent { environment_ids: vec![prod.id], ..deploy.event }).await.unwrap();

    // Pages of 3 by cursor: newest first, every item of prod once, none of staging.
    let mut seen = Vec::new();
    let mut q = query(vec![prod.id], 4);
    loop {
        let page = q.page(db.store.timeline(org, &q).await.unwrap());
        seen.extend(page.items.iter().map(|i| (i.occurred_at, i.id)));
        match page.items.last() {
            Some(last) if page.next_cursor.is_some() => q.after = Some((last.occurred_at, last.id)),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 8);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "strictly newest first");
    assert_eq!(
        db.store.timeline(Uuid::now_v7(), &query(vec![prod.id], 50)).await.unwrap(),
        vec![],
        "another org sees nothing"
    );

    let filtered = |f: TimelineFilters| {
        let store = db.store.clone();
        let q = TimelineQuery { filters: f, ..query(vec![prod.id], 50) };
        async move { store.timeline(org, &q).await.unwrap() }
    };
    let by_actor = filtered(TimelineFilters { actor: Some("alice".into()), ..Default::default() }).await;
    assert_eq!(by_actor.len(), 4);
    let by_source = filtered(TimelineFilters { source: Some("s3.amazonaws.com".into()), ..Default::default() }).await;
    assert_eq!(by_source.len(), 3, "a CloudTrail event source");
    assert!(by_source.iter().all(|i| i.details.event_source() == Some("s3.amazonaws.com")));
    let by_item_source = filtered(TimelineFilters { source: Some("deploy".into()), ..Default::default() }).await;
    assert_eq!(by_item_source.len(), 1, "an item's own source");
    let by_resource = filtered(TimelineFilters { resource: Some("sg-del".into()), ..Default::default() }).await;
    assert_eq!(by_resource.len(), 4);
    let other_case = filtered(TimelineFilters { resource: Some("SG-Del".into()), ..Default::default() }).await;
    assert_eq!(other_case.len(), 4, "a resource's name in another case, on both backends");
    let by_arn = TimelineFilters { resource: Some(format!("{ACCOUNT}:security-group/sg-del")), ..Default::default() };
    assert_eq!(filtered(by_arn).await.len(), 4, "a resource's derived ARN");
    let wildcard = filtered(TimelineFilters { resource: Some("sg-%".into()), ..Default::default() }).await;
    assert!(wildcard.is_empty(), "LIKE wildcards are matched literally");
    let by_text = filtered(TimelineFilters { text: Some("POLICY OF BUCKET".into()), ..Default::default() }).await;
    assert_eq!(by_text.len(), 3, "title words, case-insensitive");
    let by_service = filtered(TimelineFilters { service: Some("checkout-api".into()), ..Default::default() }).await;
    assert_eq!(by_service.iter().map(|i| i.kind).collect::<Vec<_>>(), [EventKind::Deploy]);
    let by_label =
        filtered(TimelineFilters { labels: vec![("aws.service".into(), "ec2".into())], ..Default::default() }).await;
    assert_eq!(by_label.len(), 4);
    let deploys = TimelineQuery { kinds: vec![EventKind::Deploy], ..query(vec![prod.id], 50) };
    assert_eq!(db.store.timeline(org, &deploys).await.unwrap().len(), 1);
    let window = TimelineQuery { since: now - Duration::seconds(90), ..query(vec![prod.id], 50) };
    assert_eq!(db.store.timeline(org, &window).await.unwrap().len(), 3, "since bounds the window");
}

/// `q` and `resource` test the lowered copies of the title and resources each link carries
/// (migration 0021) before reading the event. The copies follow the item, a text too long to
/// copy has none, and links without copies (written before 0021) are found as before.
async fn text_filters_test_the_links_copies_and_the_event_where_there_is_none(backend: Backend) {
    let db = db_or_skip!(backend, "text_filters_test_the_links_copies_and_the_event_where_there_is_none");
    let (org, prod, staging, connection) = setup(&db.store, &["us-east-1"]).await;
    let now = domain::time_util::now();
    let found = |envs: Vec<Uuid>, text: Option<&str>, resource: Option<&str>| {
        let store = db.store.clone();
        let filters =
            TimelineFilters { text: text.map(Into::into), resource: resource.map(Into::into), ..Default::default() };
        let q = TimelineQuery { filters, ..query(envs, 50) };
        async move { store.timeline(org, &q).await.unwrap().len() }
    };
    let change = change(&connection, "DeleteSecurityGroup", "ec2.amazonaws.com", "alice", now, &[prod.id]);
    let (change_id, _) = db.store.upsert_event(org, &change).await.unwrap();
    let copies = test_support::link_text_copies(&db.url, change_id).await;
    let (title, resources) = &copies[0];
    assert_eq!(title.as_deref(), Some(change.title.to_lowercase().as_str()), "the title's copy");
    // The resources have capitals (their CloudFormation type); the copy has none.
    let stored = serde_json::to_string(&change.resources).unwrap();
    assert!(stored.contains("AWS::EC2::SecurityGroup"), "{stored}");
    let lowered =
        |r: &str| r.contains("sg-del") && r.contains("aws::ec2::securitygroup") && !r.contains("SecurityGroup");
    assert!(resources.as_deref().is_some_and(lowered), "{resources:?}");

    // A title longer than the copies' 1,000 bytes has no copy and is found by its event.
    let long_title = format!("{} Rotated the Needle", "padding ".repeat(150));
    let long = NewEvent {
        title: long_title,
        kind: EventKind::Custom,
        source: "custom".into(),
        source_key: "long-title".into(),
        ..change.clone()
    };
    let (long_id, _) = db.store.upsert_event(org, &long).await.unwrap();
    assert_eq!(test_support::link_text_copies(&db.url, long_id).await[0].0, None);
    assert_eq!(found(vec![prod.id], Some("ROTATED THE NEEDLE"), None).await, 1);

    // Stored again with another title, in staging: the copies follow.
    let retitled = NewEvent { title: "Rotated the thread".into(), environment_ids: vec![staging.id], ..long };
    assert_eq!(db.store.upsert_event(org, &retitled).await.unwrap().0, long_id);
    assert_eq!(found(vec![prod.id], Some("needle"), None).await, 0);
    assert_eq!(found(vec![prod.id, staging.id], Some("needle"), None).await, 0);
    assert_eq!(found(vec![staging.id], Some("the thread"), None).await, 1);
    let copies = test_support::link_text_copies(&db.url, long_id).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].0.as_deref(), Some("rotated the thread"));

    // PostgreSQL tests the copy in the scan of the links, before it reads an event.
    if backend == Backend::Postgres {
        let store = storage::connect_sql(&db.url).await.unwrap();
        let filters = TimelineFilters { text: Some("thread".into()), ..Default::default() };
        let plan =
            store.explain_timeline(org, &TimelineQuery { filters, ..query(vec![staging.id], 50) }).await.unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("title_lowered ~~"), "{plan}");
    }

    // Links without copies, as an older binary writes them: every filter still finds its items.
    test_support::forget_link_text_copies(&db.url).await;
    assert_eq!(test_support::link_text_copies(&db.url, change_id).await, [(None, None)]);
    assert_eq!(found(vec![prod.id], None, Some("SG-DEL")).await, 1);
    assert_eq!(found(vec![prod.id], Some(change.title.to_uppercase().as_str()), None).await, 1);
    assert_eq!(found(vec![staging.id], Some("THREAD"), None).await, 1);
    assert_eq!(found(vec![prod.id, staging.id], Some("nothing like it"), None).await, 0);

    // A database of the release before the copies: connecting runs 0021–0023 on its links.
    test_support::undo_link_text_copies(&db.url).await;
    let upgraded = storage::connect(&db.url).await.unwrap();
    let copies = test_support::link_text_copies(&db.url, change_id).await;
    assert_eq!(copies[0].0.as_deref(), Some(change.title.to_lowercase().as_str()), "backfilled");
    assert!(copies[0].1.as_deref().is_some_and(|r| r.contains("sg-del")), "{copies:?}");
    let q = TimelineQuery {
        filters: TimelineFilters { resource: Some("SG-DEL".into()), ..Default::default() },
        ..query(vec![prod.id], 50)
    };
    assert_eq!(upgraded.timeline(org, &q).await.unwrap().len(), 1);
    if backend == Backend::Postgres {
        let store = storage::connect_sql(&db.url).await.unwrap();
        let plan = store.explain_timeline(org, &q).await.unwrap().join("\n");
        assert!(plan.contains("resources_lowered ~~"), "the key includes the copies again: {plan}");
    }
}

async fn several_environments_merge_without_duplicates(backend: Backend) {
    let db = db_or_skip!(backend, "several_environments_merge_without_duplicates");
    let (org, prod, staging, connection) = setup(&db.store, &["us-east-1"]).await;
    let now = domain::time_util::now();
    let both = change(&connection, "DeleteBucket", "s3.amazonaws.com", "alice", now, &[prod.id, staging.id]);
    let only_staging =
        change(&connection, "CreateUser", "iam.amazonaws.com", "bob", now - Duration::minutes(1), &[staging.id]);
    db.store.upsert_event(org, &both).await.unwrap();
    db.store.upsert_event(org, &only_staging).await.unwrap();
    let merged = db.store.timeline(org, &query(vec![prod.id, staging.id], 50)).await.unwrap();
    assert_eq!(merged.len(), 2, "an item in two environments is one item");
    assert_eq!(merged[0].environments, ["prod", "staging"]);
    assert_eq!(merged[1].environments, ["staging"]);
}

async fn relinking_replaces_links_under_its_lease(backend: Backend) {
    let db = db_or_skip!(backend, "relinking_replaces_links_under_its_lease");
    let (org, prod, staging, connection) = setup(&db.store, &["us-east-1"]).await;
    let now = domain::time_util::now();
    db.store.schedule_imports(org, connection.id, &JobPlan::for_connection(&connection, now).unwrap()).await.unwrap();
    // Claimed once due: scheduling made it due at the moment it ran.
    let now = domain::time_util::now();
    db.store.claim_import_jobs("importer", now, now + Duration::minutes(1), 1).await.unwrap();
    let events: Vec<NewEvent> = (0..5)
        .map(|i| {
            change(&connection, "RunInstances", "ec2.amazonaws.com", "alice", now - Duration::minutes(i), &[prod.id])
        })
        .collect();
    let progress = PageProgress {
        continue_walk: None,
        window_end: now,
        lease_until: now + Duration::minutes(1),
        links_version: 0,
        excluded: Vec::new(),
    };
    db.store.save_import_page(&lease(org, &connection, "us-east-1", "importer"), &events, &progress).await.unwrap();

    assert!(db.store.claim_relink("w1", now, now + Duration::minutes(1)).await.unwrap().is_none(), "nothing asked yet");
    db.store.request_relink(org, connection.id).await.unwrap();
    let job = db.store.claim_relink("w1", now, now + Duration::minutes(1)).await.unwrap().expect("a re-link is due");
    assert!(db.store.claim_relink("w2", now, now + Duration::minutes(1)).await.unwrap().is_none(), "leased to w1");

    let first = db.store.linkable_events(&job, 3).await.unwrap();
    assert_eq!(first.len(), 3);
    let details = first[0].details.cloudtrail().expect("typed CloudTrail details come back");
    assert_eq!((details.region.as_str(), details.event_source.as_str()), ("us-east-1", "ec2.amazonaws.com"));
    let links: Vec<_> = first.into_iter().map(|e| (e, vec![staging.id])).collect();
    db.store.relink_batch(&job, "w1", &links, false, now + Duration::minutes(1)).await.unwrap();
    let job = domain::import::RelinkJob { after: links.last().map(|(e, _)| e.id), ..job };
    let rest = db.store.linkable_events(&job, 3).await.unwrap();
    assert_eq!(rest.len(), 2, "the batch moved the cursor past the first three");

    // The rules change again mid-way: the old re-link's batch is refused and starts over.
    db.store.request_relink(org, connection.id).await.unwrap();
    let stale: Vec<_> = rest.into_iter().map(|e| (e, vec![staging.id])).collect();
    let refused = db.store.relink_batch(&job, "w1", &stale, true, now + Duration::minutes(1)).await;
    assert!(matches!(refused, Err(StoreError::LeaseLost)), "{refused:?}");

    // The superseded lease runs out before anyone takes the new version.
    let later = now + Duration::minutes(2);
    let renewed =
        db.store.claim_relink("w2", later, later + Duration::minutes(1)).await.unwrap().expect("the new version");
    assert_eq!(renewed.after, None, "a new version starts from the first event");
    let all: Vec<_> =
        db.store.linkable_events(&renewed, 50).await.unwrap().into_iter().map(|e| (e, vec![staging.id])).collect();
    db.store.relink_batch(&renewed, "w2", &all, true, later + Duration::minutes(1)).await.unwrap();
    assert!(db.store.timeline(org, &query(vec![prod.id], 50)).await.unwrap().is_empty(), "old links are gone");
    assert_eq!(db.store.timeline(org, &query(vec![staging.id], 50)).await.unwrap().len(), 5);
    let much_later = later + Duration::minutes(5);
    assert!(db.store.claim_relink("w3", much_later, much_later).await.unwrap().is_none(), "done");
}

async fn members_follow_the_listing_and_discovery_is_leased_to_one_worker(backend: Backend) {
    use domain::connection::{ConnectionKind, NewMember, OrganizationAccount};
    let db = db_or_skip!(backend, "members_follow_the_listing_and_discovery_is_leased_to_one_worker");
    let store = &db.store;
    let org = store.create_organization("acme").await.unwrap().id;
    let settings = ConnectionSettings {
        name: "acme org".into(),
        regions: vec!["us-east-1".into()],
        ..ConnectionSettings::new_connection()
    };
    let parent = store.create_organization_connection(org, &settings, &ExternalId::generate(), "reader").await.unwrap();
    assert_eq!((parent.kind, parent.member_role_name.as_deref()), (ConnectionKind::Organization, Some("reader")));
    let now = domain::time_util::now();
    assert_eq!(store.claim_discovery("w1", now, now + Duration::minutes(10)).await.unwrap(), None, "not active yet");
    let role = RegisteredRole {
        role_arn: Some("arn:aws:iam::100000000001:role/lister".into()),
        via: vec![],
        account_id: "100000000001".into(),
        assumed_role_arn: "arn:aws:sts::100000000001:assumed-role/lister/s".into(),
        validated_at: now,
        credentials: domain::connection::CredentialSource::Role,
    };
    let parent = store.register_role(org, parent.id, &role).await.unwrap().unwrap();
    assert!(store.list_import_jobs(org, parent.id).await.unwrap().is_empty(), "an organisation imports nothing");

    // Registration makes a discovery due; one worker holds it until it finishes or the lease passes.
    let now = domain::time_util::now();
    let lease = now + Duration::minutes(10);
    assert_eq!(store.claim_discovery("w1", now, lease).await.unwrap(), Some((org, parent.id)));
    assert_eq!(store.claim_discovery("w2", now, lease).await.unwrap(), None);
    assert_eq!(store.claim_discovery("w2", lease + Duration::seconds(1), lease).await.unwrap(), Some((org, parent.id)));
    store.finish_discovery(org, parent.id, "w1", now + Duration::hours(1), None).await.unwrap();
    assert_eq!(store.claim_discovery("w3", now, lease).await.unwrap(), None, "w1 lost it: its finish changes nothing");
    store.finish_discovery(org, parent.id, "w2", now + Duration::hours(1), Some("denied")).await.unwrap();
    assert_eq!(store.get_connection(org, parent.id).await.unwrap().unwrap().discovery_error.as_deref(), Some("denied"));
    assert_eq!(store.claim_discovery("w3", now + Duration::minutes(59), lease).await.unwrap(), None);
    store.request_discovery(org, parent.id, now).await.unwrap();
    assert_eq!(store.claim_discovery("w3", now, lease).await.unwrap(), Some((org, parent.id)));

    let account =
        |id: &str, status: &str| OrganizationAccount { id: id.into(), name: format!("n{id}"), status: status.into() };
    let listing = [account("100000000001", "ACTIVE"), account("100000000002", "SUSPENDED")];
    let members: Vec<NewMember> = listing.iter().map(|a| NewMember::of(&parent, a)).collect();
    let synced = store.sync_members(org, parent.id, &members, now).await.unwrap();
    assert_eq!(synced.len(), 2);
    let first = synced.iter().find(|m| m.account_id.as_deref() == Some("100000000001")).unwrap();
    assert_eq!(first.kind, ConnectionKind::Member);
    assert_eq!(first.parent_id, Some(parent.id));
    assert_eq!(first.role_arn.as_deref(), Some("arn:aws:iam::100000000001:role/reader"));
    assert_eq!(first.external_id.as_str(), format!("{}-100000000001", parent.external_id.as_str()));
    assert_eq!(first.settings.regions, settings.regions);
    // Listed again without the second: it is LEFT; the first keeps its id.
    let again = store.sync_members(org, parent.id, &members[..1], now).await.unwrap();
    let statuses: Vec<(Uuid, String)> =
        again.iter().map(|m| (m.id, m.member_account.as_ref().unwrap().status.clone())).collect();
    assert!(statuses.contains(&(first.id, "ACTIVE".into())));
    assert!(statuses.iter().any(|(id, s)| *id != first.id && s == "LEFT"));
    let other = store.create_organization("other").await.unwrap().id;
    assert!(store.list_members(other, parent.id).await.unwrap().is_empty());
    assert!(store.delete_connection(org, parent.id).await.unwrap());
    assert!(store.get_connection(org, first.id).await.unwrap().is_none(), "members go with their organisation");
}

/// What `app::pages` keys remembered pages on: every committed change to items, links or
/// environments moves the count, and reads do not.
async fn timeline_writes_count_what_changes_a_timeline_and_nothing_else(backend: Backend) {
    let db = db_or_skip!(backend, "timeline_writes_count_what_changes_a_timeline_and_nothing_else");
    let (org, prod, staging, connection) = setup(&db.store, &["us-east-1"]).await;
    let now = domain::time_util::now();
    let count = || db.store.timeline_writes();
    let mut seen = count();
    let mut moved = |what: &str| {
        let now = count();
        assert!(now > seen, "{what} did not move the count ({seen})");
        seen = now;
    };
    let first = change(&connection, "AuthorizeSecurityGroupIngress", "ec2.amazonaws.com", "alice", now, &[prod.id]);
    let (id, _) = db.store.upsert_event(org, &first).await.unwrap();
    moved("upsert_event");
    let second = change(&connection, "CreateUser", "iam.amazonaws.com", "bob", now, &[prod.id]);
    db.store.insert_events(org, &[second]).await.unwrap();
    moved("insert_events");
    let third = change(&connection, "DeleteBucket", "s3.amazonaws.com", "carol", now, &[staging.id]);
    db.store.insert_connection_event(org, connection.id, connection.links_version, &third).await.unwrap();
    moved("insert_connection_event");

    let before_reads = count();
    assert_eq!(db.store.timeline(org, &query(vec![prod.id, staging.id], 10)).await.unwrap().len(), 3);
    assert!(db.store.get_event(org, id).await.unwrap().is_some());
    db.store.find_environments(org, &[domain::EnvironmentRef::Id(prod.id)]).await.unwrap();
    assert_eq!(count(), before_reads, "reads moved the count");

    let patch = domain::EnvironmentPatch { name: Some("Production".into()), ..Default::default() };
    db.store.update_environment(org, prod.id, &patch).await.unwrap();
    moved("update_environment");
    assert!(db.store.delete_environment(org, staging.id).await.unwrap());
    moved("delete_environment");
    assert!(db.store.delete_connection(org, connection.id).await.unwrap());
    moved("delete_connection");
}
