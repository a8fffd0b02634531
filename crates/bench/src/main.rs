//! changetrail's benchmarks. Each prints its figures as ratios or rates measured in one run, so
//! a noisy shared machine moves both sides of a comparison together. See BENCHMARKS.md.
//!
//!   cargo run --release -p changetrail-bench -- pacing
//!   cargo run --release -p changetrail-bench -- fleet [REGIONS] [SECONDS]
//!   cargo run --release -p changetrail-bench -- throughput [EVENTS]     (PostgreSQL: CHANGETRAIL_BENCH_DATABASE_URL)

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("pacing") => pacing().await,
        Some("fleet") => {
            fleet(args.get(1).map_or(Ok(500), |s| s.parse())?, args.get(2).map_or(Ok(90), |s| s.parse())?).await
        }
        Some("throughput") => throughput(args.get(1).map_or(Ok(20_000), |s| s.parse())?).await,
        _ => anyhow::bail!("usage: changetrail-bench pacing | fleet [REGIONS] [SECONDS] | throughput [EVENTS]"),
    }
}
