//! changetrail's benchmarks. Each prints its figures as ratios or rates measured in one run, so
//! a noisy shared machine moves both sides of a comparison together. See BENCHMARKS.md.
//!
//!   cargo run --release -p changetrail-bench -- pacing
//!   cargo run --release -p changetrail-bench -- fleet [REGIONS] [SECONDS]
//!   cargo run --release -p changetrail-bench -- throughput [EVENTS]     (PostgreSQL: CHANGETRAIL_BENCH_DATABASE_URL)

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_standin::{Identity, RoleSpec, Standin, StandinEvent};
use domain::cloudtrail::{normalize, LookupEvent};
use domain::connection::ConnectionSettings;
use domain::import::{Lease, PageProgress};
use domain::{ExternalId, RegisteredRole, Store};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;
use worker::{ImportSettings, Importer};

const KEY: &str = "AKIABENCHSERVICE0001";
const SECRET: &str = "bench-secret";
const PRINCIPAL: &str = "arn:aws:iam::111111111111:role/changetrail";

fn records() -> anyhow::Result<Vec<Value>> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cloudtrail/invictus-aws-dataset");
    let mut records = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))?.map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files.iter().filter(|f| f.extension().is_some_and(|x| x == "json")) {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
        records.extend(doc["Records"].as_array().cloned().unwrap_or_default());
    }
    Ok(records)
}

/// `copies` copies of every change record, each with its own EventId, spread evenly over
/// `span` ending at `newest_at`.
fn change_events(
    records: &[Value],
    copies: usize,
    newest_at: OffsetDateTime,
    span: time::Duration,
) -> Vec<StandinEvent> {
    let changes: Vec<&Value> = records.iter().filter(|r| r["readOnly"] == Value::Bool(false)).collect();
    let total = changes.len() * copies;
    let mut events = Vec::with_capacity(total);
    for copy in 0..copies {
        for (i, record) in changes.iter().enumerate() {
            let n = copy * changes.len() + i;
            let at = newest_at - span + span * (n as f64 / total as f64);
            let mut record = (*record).clone();
            record["eventID"] = Value::String(Uuid::new_v4().to_string());
            let original = OffsetDateTime::parse(
                record["eventTime"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            events.extend(StandinEvent::from_record(&record, at - original, time::Duration::ZERO));
        }
    }
    events
}

async fn standin() -> anyhow::Result<aws_standin::RunningStandin> {
    let standin = Standin::new();
    standin.add_identity(Identity {
        access_key_id: KEY.into(),
        secret_access_key: SECRET.into(),
        arn: PRINCIPAL.into(),
        principal: PRINCIPAL.into(),
    });
    Ok(standin.start("127.0.0.1:0".parse()?).await?)
}

async fn aws_for(url: &str) -> aws::Aws {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(KEY, SECRET, None, None, "bench"));
    aws::Aws::from_loader(loader).await
}

/// An active connection of a fresh organisation to `account`, importing `regions`.
async fn connection(
    store: &dyn Store,
    standin: &Standin,
    account: &str,
    regions: Vec<String>,
) -> anyhow::Result<(Uuid, Uuid)> {
    let org = store.create_organization("bench").await?;
    let settings = ConnectionSettings {
        name: format!("account {account}"),
        regions,
        default_environment: None,
        environment_rules: vec![],
        lookback_days: 1,
        include_read_only: false,
        enabled: true,
    };
    let c = store.create_connection(org.id, &settings, &ExternalId::generate()).await?;
    let role = format!("arn:aws:iam::{account}:role/reader");
    standin.add_role(RoleSpec {
        arn: role.clone(),
        trusted_principal: PRINCIPAL.into(),
        required_external_id: Some(c.external_id.as_str().into()),
        allow_lookup_events: true,
        reports_session_as: None,
    });
    let registered = RegisteredRole {
        role_arn: role,
        account_id: account.into(),
        assumed_role_arn: String::new(),
        validated_at: domain::time_util::now(),
    };
    store.register_role(org.id, c.id, &registered).await?;
    store.sync_import_jobs(org.id, c.id).await?;
    Ok((org.id, c.id))
}

fn temp_sqlite() -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("changetrail-bench-{}", Uuid::now_v7()));
    storage::default_sqlite_url(&dir)
}

/// (CPU seconds used by this process, peak resident memory in MiB), from /proc.
fn cpu_and_peak_memory() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    (ticks / 100.0, peak_kib / 1024.0)
}

/// A backfill against the 2 calls/s limit: how busy the budget is kept, and how much is throttled.
async fn pacing() -> anyhow::Result<()> {
    let running = standin().await?;
    let now = OffsetDateTime::now_utc();
    // 20 copies of the 574 changes, over the last 20 hours: 230 full pages in 4 windows.
    let events = change_events(&records()?, 20, now - time::Duration::minutes(30), time::Duration::hours(20));
    let total = events.len();
    running.standin.add_events("222222222222", "us-east-1", events);
    let store = storage::connect(&temp_sqlite()?).await?;
    let (org, conn) = connection(store.as_ref(), &running.standin, "222222222222", vec!["us-east-1".into()]).await?;
    let importer = Importer::new(
        store.clone(),
        aws_for(&running.url()).await,
        ImportSettings { run_budget: Duration::from_secs(3600), ..Default::default() },
    );
    let started = Instant::now();
    importer.run_due_jobs_once().await;
    let elapsed = started.elapsed().as_secs_f64();
    let job = store.list_import_jobs(org, conn).await?.remove(0);
    let (served, throttled) = running.standin.lookup_counts();
    let calls = served + throttled;
    let full_pages = (total as f64 / 50.0).ceil();
    println!("pacing: {total} events, {served} calls answered, {throttled} throttled, in {elapsed:.1} s");
    println!(
        "  calls per second (answered):  {:.2} of 2.00 allowed = {:.1}% of the budget",
        served as f64 / elapsed,
        50.0 * served as f64 / elapsed
    );
    println!("  throttled:                    {:.2}% of {calls} calls", 100.0 * throttled as f64 / calls.max(1) as f64);
    println!("  pages:                        {served} for {total} events ({full_pages} if every page were full)");
    println!(
        "  imported:                     {} (all: {})",
        job.events_imported,
        job.events_imported as usize == total
    );
    Ok(())
}

/// One worker keeping many account-regions current: lag, CPU and memory.
async fn fleet(regions: usize, seconds: u64) -> anyhow::Result<()> {
    let running = standin().await?;
    let store = storage::connect(&temp_sqlite()?).await?;
    let records = records()?;
    let now = OffsetDateTime::now_utc();
    let region_names = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1"];
    let accounts = regions.div_ceil(region_names.len());
    let mut connections = Vec::new();
    for a in 0..accounts {
        let account = format!("{:012}", 300_000_000_000u64 + a as u64);
        let these: Vec<String> =
            region_names.iter().take(regions - a * region_names.len()).map(|r| r.to_string()).collect();
        for region in &these {
            let few: Vec<Value> = records.iter().skip((a * 7) % 2000).take(20).cloned().collect();
            let newest = now - time::Duration::minutes(40);
            let shift = newest
                - OffsetDateTime::parse(
                    few.last().unwrap()["eventTime"].as_str().unwrap(),
                    &time::format_description::well_known::Rfc3339,
                )?;
            running.standin.add_events(
                &account,
                region,
                few.iter().filter_map(|r| StandinEvent::from_record(r, shift, time::Duration::ZERO)),
            );
        }
        connections.push(connection(store.as_ref(), &running.standin, &account, these).await?);
    }
    let interval = Duration::from_secs(30);
    let settings = ImportSettings { interval, concurrency: 64, ..Default::default() };
    let importer = Importer::new(store.clone(), aws_for(&running.url()).await, settings);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(importer.run(shutdown.clone()));
    let started = Instant::now();
    // Backfill: every region's lookback walked once.
    loop {
        let mut behind = 0;
        for (org, conn) in &connections {
            behind += store.list_import_jobs(*org, *conn).await?.iter().filter(|j| j.last_success_at.is_none()).count();
        }
        if behind == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let backfill = started.elapsed().as_secs_f64();
    let (cpu_before, _) = cpu_and_peak_memory();
    let steady_started = Instant::now();
    let mut worst_lag = 0.0f64;
    while steady_started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = OffsetDateTime::now_utc();
        for (org, conn) in &connections {
            for job in store.list_import_jobs(*org, *conn).await? {
                let lag = (now - job.last_success_at.unwrap_or(job.scanned_until)).as_seconds_f64();
                worst_lag = worst_lag.max(lag);
            }
        }
    }
    let (cpu_after, peak) = cpu_and_peak_memory();
    let steady = steady_started.elapsed().as_secs_f64();
    shutdown.cancel();
    task.await?;
    let (served, throttled) = running.standin.lookup_counts();
    println!(
        "fleet: {regions} account-regions ({accounts} accounts), interval {}s, one worker (concurrency 64)",
        interval.as_secs()
    );
    println!("  backfill of every region:       {backfill:.1} s");
    println!("  steady state for {steady:.0} s:       worst time since a region's last successful run {worst_lag:.1} s (interval {} s)", interval.as_secs());
    println!(
        "  CPU in steady state:            {:.1}% of one core (this process also runs the AWS stand-in)",
        100.0 * (cpu_after - cpu_before) / steady
    );
    println!("  peak resident memory:           {peak:.0} MiB");
    println!("  LookupEvents calls:             {served} answered, {throttled} throttled");
    Ok(())
}

/// Inserts prepared rows into `events`, 1,000 per statement; returns the seconds it took.
macro_rules! bulk_insert {
    ($db:ty, $pool:expr, $rows:expr, $org:expr) => {{
        let started = Instant::now();
        for chunk in $rows.chunks(1000) {
            let mut q = sqlx::QueryBuilder::<$db>::new(storage::EVENT_COLUMNS);
            q.push_values(chunk, |row, e| storage::push_event(row, Uuid::now_v7(), $org, e, 0));
            q.build().execute(&$pool).await?;
        }
        started.elapsed().as_secs_f64()
    }};
}

/// Parse + link + store, with pacing off, against a plain bulk insert of the same rows.
async fn throughput(events: usize) -> anyhow::Result<()> {
    let records = records()?;
    let mut urls = vec![("SQLite", temp_sqlite()?)];
    if let Ok(url) = std::env::var("CHANGETRAIL_BENCH_DATABASE_URL") {
        urls.push(("PostgreSQL", url));
    }
    for (name, url) in urls {
        // Importer path: each page of 50 normalised, linked and saved in its transaction.
        let store = storage::connect(&url).await?;
        let standin = Standin::new();
        let (org, conn) = connection(store.as_ref(), &standin, "222222222222", vec!["us-east-1".into()]).await?;
        let env = store.create_environment(org, &domain::NewEnvironment::parse("prod", None, None).unwrap()).await?;
        let linker = domain::linking::Linker::new(&[], Some(&env.slug));
        let now = domain::time_util::now();
        let lookups: Vec<LookupEvent> = (0..events)
            .map(|i| {
                let mut record = records[i % records.len()].clone();
                let id = Uuid::new_v4().to_string();
                record["eventID"] = Value::String(id.clone());
                LookupEvent {
                    event_id: Some(id),
                    event_name: record["eventName"].as_str().map(str::to_owned),
                    read_only: Some("false".into()),
                    event_time: Some(now - time::Duration::seconds(i as i64)),
                    event_source: record["eventSource"].as_str().map(str::to_owned),
                    username: None,
                    resources: vec![],
                    cloudtrail_event: Some(record.to_string()),
                }
            })
            .collect();
        let lease = Lease { org_id: org, connection_id: conn, region: "us-east-1".into(), owner: "bench".into() };
        store.claim_import_jobs("bench", now + time::Duration::days(2), now + time::Duration::days(3), 1).await?;
        let started = Instant::now();
        for page in lookups.chunks(50) {
            let normalized: Vec<_> = page
                .iter()
                .map(|e| {
                    let mut n = normalize(e, conn, "222222222222", "us-east-1", now).event;
                    let facts = domain::linking::LinkFacts {
                        region: "us-east-1",
                        event_source: "ec2.amazonaws.com",
                        resources: vec![],
                        actor: n.actor.as_deref(),
                    };
                    n.environment_ids = linker.environments(&facts).iter().map(|_| env.id).collect();
                    n
                })
                .collect();
            let progress =
                PageProgress { continue_walk: None, window_end: now, lease_until: now + time::Duration::days(3) };
            store.save_import_page(&lease, &normalized, &progress).await?;
        }
        let importer_rate = events as f64 / started.elapsed().as_secs_f64();

        // Ceiling: the same rows, already normalised, in one plain multi-row INSERT per 1,000 rows,
        // without de-duplication, links or progress.
        let prepared: Vec<_> =
            lookups.iter().map(|e| normalize(e, conn, "222222222222", "us-east-1", now).event).collect();
        // The ceiling writes into the same `events` table, with its indexes, for another
        // organisation (so the unique keys do not clash).
        let other = store.create_organization("ceiling").await?.id;
        let ceiling_rate = if url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(&url).await?;
            bulk_insert!(sqlx::Sqlite, pool, prepared, other)
        } else {
            let pool = sqlx::PgPool::connect(&url).await?;
            bulk_insert!(sqlx::Postgres, pool, prepared, other)
        };
        let ceiling_rate = prepared.len() as f64 / ceiling_rate;
        println!("throughput into {name}, {events} events:");
        println!(
            "  parse + link + store (pages of 50, de-duplicated, linked, with progress): {importer_rate:.0} events/s"
        );
        println!(
            "  plain bulk INSERT of the same rows into events (1,000 per statement):      {ceiling_rate:.0} events/s"
        );
        println!("  ratio: {:.0}% of the ceiling", 100.0 * importer_rate / ceiling_rate);
    }
    Ok(())
}

/// Percentile of sorted milliseconds.
fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn timed<F: std::future::Future<Output = anyhow::Result<usize>>>(
    runs: usize,
    mut f: impl FnMut() -> F,
) -> anyhow::Result<(f64, f64, usize)> {
    let mut ms = Vec::with_capacity(runs);
    let mut items = 0;
    for _ in 0..runs {
        let started = Instant::now();
        items = f().await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok((pct(&ms, 0.5), pct(&ms, 0.99), items))
}

/// 10 million timeline items over 90 days in 20 environments, shaped after the real records;
/// first pages through HTTP against the same query through the store, a day's walk, and load.
async fn timeline(events: i64) -> anyhow::Result<()> {
    use domain::timeline::{TimelineFilters, TimelineQuery};
    let url = std::env::var("CHANGETRAIL_BENCH_DATABASE_URL")
        .context("set CHANGETRAIL_BENCH_DATABASE_URL to a PostgreSQL database")?;
    let store = storage::connect(&url).await?;
    let pool = sqlx::PgPool::connect(&url).await?;
    let org = store.create_organization("timeline bench").await?;
    let mut envs = Vec::new();
    for i in 0..20 {
        envs.push(
            store
                .create_environment(org.id, &domain::NewEnvironment::parse(&format!("env {i}"), None, None).unwrap())
                .await?
                .id,
        );
    }

    // Shapes: the 574 real changes, 60 real reads, and deploys, alerts and custom changes.
    let records = records()?;
    let now = domain::time_util::now();
    let mut shapes: Vec<domain::event::NewEvent> = Vec::new();
    let changes = records.iter().filter(|r| r["readOnly"] == Value::Bool(false));
    let reads = records.iter().filter(|r| r["readOnly"] == Value::Bool(true)).take(60);
    for r in changes.chain(reads) {
        let lookup = LookupEvent {
            event_id: r["eventID"].as_str().map(str::to_owned),
            event_name: r["eventName"].as_str().map(str::to_owned),
            read_only: r["readOnly"].as_bool().map(|b| b.to_string()),
            event_source: r["eventSource"].as_str().map(str::to_owned),
            cloudtrail_event: Some(r.to_string()),
            ..Default::default()
        };
        let mut e = normalize(&lookup, Uuid::nil(), "222222222222", "us-east-1", now).event;
        e.original = None;
        shapes.push(e);
    }
    let services = ["checkout-api", "web", "payments", "search", "auth", "inventory"];
    for (i, status) in
        ["succeeded", "started", "failed", "rolled_back", "succeeded", "succeeded"].iter().cycle().take(60).enumerate()
    {
        let input = domain::ingest::DeployInput {
            environment: Some("env-0"),
            environments: None,
            service: services[i % 6],
            version: &format!("v{i}"),
            status,
            started_at: now,
            finished_at: None,
            url: None,
            commit_sha: None,
            actor: Some("ci"),
            external_id: None,
        };
        shapes.push(domain::ingest::deploy(input).map_err(|e| anyhow::anyhow!("{e}"))?.event);
    }
    for (i, severity) in ["critical", "error", "warning", "info"].iter().cycle().take(20).enumerate() {
        let input = domain::ingest::AlertInput {
            environment: Some("env-0"),
            environments: None,
            title: "latency above SLO",
            severity,
            status: "triggered",
            started_at: now,
            resolved_at: None,
            source: "pagerduty",
            service: Some(services[i % 6]),
            url: None,
            external_id: None,
        };
        shapes.push(domain::ingest::alert(input).map_err(|e| anyhow::anyhow!("{e}"))?.event);
    }
    // A plain table: a TEMP one would live on one of the pool's connections only.
    sqlx::query("DROP TABLE IF EXISTS bench_shapes").execute(&pool).await?;
    sqlx::query("CREATE TABLE bench_shapes (n INT, kind TEXT, source TEXT, title TEXT, actor TEXT, read_only BOOLEAN, resources JSONB, labels JSONB, details JSONB)").execute(&pool).await?;
    for (n, e) in shapes.iter().enumerate() {
        sqlx::query("INSERT INTO bench_shapes VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(n as i32)
            .bind(e.kind.as_str())
            .bind(&e.source)
            .bind(&e.title)
            .bind(&e.actor)
            .bind(e.read_only)
            .bind(sqlx::types::Json(&e.resources))
            .bind(sqlx::types::Json(&e.labels))
            .bind(sqlx::types::Json(&e.details))
            .execute(&pool)
            .await?;
    }
    let span_us: i64 = 90 * 86_400_000_000;
    let step = span_us / events;
    let now_us = domain::time_util::to_micros(now);
    let started = Instant::now();
    let chunk = 500_000i64;
    let mut from = 1i64;
    while from <= events {
        let to = (from + chunk - 1).min(events);
        // Time-ordered ids (the time in the leading 48 bits, as UUIDv7), one environment per item:
        // env-0 is the busy one, with about a third of everything.
        sqlx::query(
            "WITH ins AS (
               INSERT INTO events (id, org_id, kind, source, source_key, connection_id, occurred_at, title, actor, read_only,
                                   resources, labels, links, details, original, created_at, updated_at)
               SELECT (lpad(to_hex(($2 - g * $3) / 1000), 12, '0') || '7' || substr(md5(g::text), 1, 19))::uuid,
                      $1, s.kind, s.source, 'bench-' || g, NULL, $2 - g * $3 - (g % 997), s.title, s.actor, s.read_only,
                      s.resources, s.labels, '[]'::jsonb, s.details, NULL, 0, 0
               FROM generate_series($4::bigint, $5::bigint) g JOIN bench_shapes s ON s.n = (g * 7919) % $6
               RETURNING id, occurred_at, kind, read_only, substring(source_key from 7)::bigint AS g)
             INSERT INTO event_environments (environment_id, occurred_at, event_id, kind, read_only)
             SELECT ($7::uuid[])[CASE WHEN ins.g % 10 < 3 THEN 1 ELSE (ins.g % 20) + 1 END], ins.occurred_at, ins.id, ins.kind, ins.read_only
             FROM ins",
        )
        .bind(org.id).bind(now_us).bind(step).bind(from).bind(to).bind(shapes.len() as i64).bind(&envs)
        .execute(&pool).await?;
        eprintln!("  generated {to} of {events} ({:.0} s)", started.elapsed().as_secs_f64());
        from = to + 1;
    }
    sqlx::query("ANALYZE events").execute(&pool).await?;
    sqlx::query("ANALYZE event_environments").execute(&pool).await?;
    println!(
        "timeline: {events} items over 90 days in 20 environments, generated in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // The API on this database.
    let secret = domain::TokenSecret::generate();
    store.create_token(org.id, "bench", &domain::Scopes::admin(), &secret.display_prefix(), &secret.hash()).await?;
    let access = Arc::new(api::AwsAccess::new(aws_for("http://127.0.0.1:9").await, Some(PRINCIPAL.into()), None));
    let state = api::AppState { store: store.clone(), aws: access, import_overlap: Duration::from_secs(1200) };
    let app = api::router(state, &api::HttpSettings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let token = secret.expose().to_owned();
    let busy = envs[0];
    let rfc = |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let hour = (now - time::Duration::hours(1), now);
    let day = (now - time::Duration::days(1), now);
    let old_day = (now - time::Duration::days(60), now - time::Duration::days(59));
    /// (name, window, extra query parameters, the same filters for the store, kinds)
    type Case<'a> =
        (&'a str, (OffsetDateTime, OffsetDateTime), &'a str, TimelineFilters, Vec<domain::event::EventKind>);
    let cases: Vec<Case> = vec![
        ("last hour", hour, "", TimelineFilters::default(), vec![]),
        ("last day", day, "", TimelineFilters::default(), vec![]),
        ("a day 60 days ago", old_day, "", TimelineFilters::default(), vec![]),
        (
            "last day, kind=deploy",
            day,
            "&kind=deploy",
            TimelineFilters::default(),
            vec![domain::event::EventKind::Deploy],
        ),
        (
            "last day, actor=bert-jan",
            day,
            "&actor=bert-jan",
            TimelineFilters { actor: Some("bert-jan".into()), ..Default::default() },
            vec![],
        ),
        (
            "last day, source=ec2.amazonaws.com",
            day,
            "&source=ec2.amazonaws.com",
            TimelineFilters { source: Some("ec2.amazonaws.com".into()), ..Default::default() },
            vec![],
        ),
        (
            "last day, resource=vpc-",
            day,
            "&resource=vpc-",
            TimelineFilters { resource: Some("vpc-".into()), ..Default::default() },
            vec![],
        ),
        (
            "last day, q=created",
            day,
            "&q=created",
            TimelineFilters { text: Some("created".into()), ..Default::default() },
            vec![],
        ),
        (
            "last day, service=checkout-api",
            day,
            "&service=checkout-api",
            TimelineFilters { service: Some("checkout-api".into()), ..Default::default() },
            vec![],
        ),
        (
            "last day, label=severity:critical",
            day,
            "&label=severity:critical",
            TimelineFilters { labels: vec![("severity".into(), "critical".into())], ..Default::default() },
            vec![],
        ),
    ];
    println!("  first page (100 items) of the busy environment, 200 runs each: p50 / p99 in ms");
    println!("  {:<36} {:>14} {:>14} {:>8} {:>6}", "query", "HTTP", "store (SQL)", "p50 ×", "items");
    for (name, (since, until), extra, f, kinds) in &cases {
        let url = format!(
            "{base}/v1/environments/env-0/timeline?limit=100&since={}&until={}{extra}",
            rfc(*since),
            rfc(*until)
        );
        let (h50, h99, items) = timed(200, || async {
            let page: Value = http.get(&url).bearer_auth(&token).send().await?.json().await?;
            Ok(page["items"].as_array().map_or(0, Vec::len))
        })
        .await?;
        let query = TimelineQuery {
            environment_ids: vec![busy],
            filters: f.clone(),
            since: *since,
            until: *until,
            kinds: kinds.clone(),
            include_read_only: false,
            limit: 101,
            after: None,
        };
        let (s50, s99, _) = timed(200, || async { Ok(store.timeline(org.id, &query).await?.len()) }).await?;
        println!("  {name:<36} {h50:>6.2} / {h99:>5.2} {s50:>6.2} / {s99:>5.2} {:>8.2} {items:>6}", h50 / s50);
    }

    // Walking a whole day by cursor.
    let started = Instant::now();
    let (mut walked, mut cursor) = (0usize, None::<String>);
    loop {
        let mut url =
            format!("{base}/v1/environments/env-0/timeline?limit=500&since={}&until={}", rfc(day.0), rfc(day.1));
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http.get(&url).bearer_auth(&token).send().await?.json().await?;
        walked += page["items"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    println!(
        "  walking one day by cursor (pages of 500): {walked} items in {:.2} s = {:.0} items/s",
        started.elapsed().as_secs_f64(),
        walked as f64 / started.elapsed().as_secs_f64()
    );

    // Load: wrk against the last hour's first page, and against POST /v1/deploys.
    let dir = std::env::temp_dir();
    let get_url = format!("{base}/v1/environments/env-0/timeline?limit=100&since={}", rfc(hour.0));
    let wrk = |args: Vec<String>| -> anyhow::Result<String> {
        let out = std::process::Command::new("wrk")
            .args(&args)
            .output()
            .context("wrk is not installed: apt-get install wrk")?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("Requests/sec") || l.contains("Latency") || l.contains("Non-2xx"))
            .collect::<Vec<_>>()
            .join(" | "))
    };
    let auth = format!("Authorization: Bearer {token}");
    println!(
        "  wrk GET timeline (2 threads, 32 connections, 15 s): {}",
        wrk(vec!["-t2".into(), "-c32".into(), "-d15s".into(), "-H".into(), auth.clone(), get_url])?
    );
    let script = dir.join("changetrail-deploy.lua");
    std::fs::write(&script, format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = '{{\"environment\": \"env-1\", \"service\": \"web\", \"version\": \"v1\", \"status\": \"succeeded\", \"started_at\": \"{}\"}}'\n",
        rfc(now)
    ))?;
    println!(
        "  wrk POST /v1/deploys (2 threads, 32 connections, 15 s): {}",
        wrk(vec![
            "-t2".into(),
            "-c32".into(),
            "-d15s".into(),
            "-H".into(),
            auth,
            "-s".into(),
            script.display().to_string(),
            format!("{base}/v1/deploys")
        ])?
    );

    // The plan of the main query, as the store runs it (one environment, last day, first page).
    let plan: Vec<(String,)> = sqlx::query_as(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
         SELECT e.id, e.kind, e.source, e.occurred_at, e.title, e.actor, e.read_only, e.resources, e.labels, e.links, e.details
         FROM event_environments l JOIN events e ON e.id = l.event_id
         WHERE l.environment_id IN ($1) AND e.org_id = $2 AND l.occurred_at >= $3 AND l.occurred_at <= $4 AND l.read_only = false
         ORDER BY l.occurred_at DESC, l.event_id DESC LIMIT 101",
    )
    .bind(busy).bind(org.id).bind(domain::time_util::to_micros(day.0)).bind(domain::time_util::to_micros(day.1))
    .fetch_all(&pool).await?;
    println!("  plan of the first page (last day, busy environment):");
    for (line,) in plan {
        println!("    {line}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("pacing") => pacing().await,
        Some("fleet") => {
            fleet(args.get(1).map_or(Ok(500), |s| s.parse())?, args.get(2).map_or(Ok(90), |s| s.parse())?).await
        }
        Some("throughput") => throughput(args.get(1).map_or(Ok(20_000), |s| s.parse())?).await,
        Some("timeline") => timeline(args.get(1).map_or(Ok(10_000_000), |s| s.parse())?).await,
        _ => anyhow::bail!(
            "usage: changetrail-bench pacing | fleet [REGIONS] [SECONDS] | throughput [EVENTS] | timeline [EVENTS]"
        ),
    }
}
