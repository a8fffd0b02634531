//! The importer's benchmarks: pacing against the 2 calls/s budget, one worker keeping a fleet
//! current, and parse + link + store against a plain bulk insert.

use std::time::{Duration, Instant};

use aws_standin::{RoleSpec, Standin, StandinEvent};
use domain::cloudtrail::{normalize_lookup, LookupEvent, RecordContext};
use domain::import::{Lease, PageProgress};
use domain::linking::LinkFacts;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;
use worker::{ImportSettings, Importer};

use crate::{aws_for, connection, cpu_and_peak_memory, records, standin, temp_sqlite};

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

/// A backfill against the 2 calls/s limit: how busy the budget is kept, and how much is throttled.
pub(crate) async fn pacing() -> anyhow::Result<()> {
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
    // Session noise (sign-ins, role sessions) is dropped by default and counted as excluded.
    let excluded = store.get_connection(org, conn).await?.map_or(0, |c| c.events_excluded);
    println!(
        "  imported:                     {} and {excluded} excluded as session noise (all accounted for: {})",
        job.events_imported,
        (job.events_imported + excluded) as usize == total
    );
    Ok(())
}

/// One worker keeping many account-regions current: lag, CPU and memory.
pub(crate) async fn fleet(regions: usize, seconds: u64) -> anyhow::Result<()> {
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

/// Parse + link + store, with pacing off, against a plain bulk insert of the same rows.
pub(crate) async fn throughput(events: usize) -> anyhow::Result<()> {
    let records = records()?;
    let mut urls = vec![("SQLite", temp_sqlite()?)];
    if let Ok(url) = std::env::var("CHANGETRAIL_BENCH_DATABASE_URL") {
        urls.push(("PostgreSQL", url));
    }
    for (name, url) in urls {
        // Importer path: each page of 50 normalised, linked and saved in its transaction.
        // One store: the trait for the importer's path, the concrete type for the ceiling.
        let sql_store = std::sync::Arc::new(storage::connect_sql(&url).await?);
        let store: std::sync::Arc<dyn domain::Store> = sql_store.clone();
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
        let context =
            RecordContext { connection_id: conn, account_id: "222222222222", region: "us-east-1", fallback_time: now };
        let lease = Lease { org_id: org, connection_id: conn, region: "us-east-1".into(), owner: "bench".into() };
        store.claim_import_jobs("bench", now + time::Duration::days(2), now + time::Duration::days(3), 1).await?;
        let started = Instant::now();
        for page in lookups.chunks(50) {
            let normalized: Vec<_> = page
                .iter()
                .map(|e| {
                    let mut n = normalize_lookup(e, &context).event;
                    n.environment_ids = linker.environments(&LinkFacts::of_event(&n)).iter().map(|_| env.id).collect();
                    n
                })
                .collect();
            let progress = PageProgress {
                continue_walk: None,
                window_end: now,
                lease_until: now + time::Duration::days(3),
                links_version: 0,
                excluded: Vec::new(),
            };
            store.save_import_page(&lease, &normalized, &progress).await?;
        }
        let importer_rate = events as f64 / started.elapsed().as_secs_f64();

        // Ceiling: the same rows, already normalised, in one plain multi-row INSERT per 1,000 rows,
        // without de-duplication, links or progress, into the same `events` table with its
        // indexes, for another organisation (so the unique keys do not clash).
        let prepared: Vec<_> = lookups.iter().map(|e| normalize_lookup(e, &context).event).collect();
        let other = store.create_organization("ceiling").await?.id;
        let started = Instant::now();
        sql_store.insert_plain(other, &prepared).await?;
        let ceiling_rate = started.elapsed().as_secs_f64();
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

/// One worker keeping an organisation's accounts current: `accounts` member accounts of one
/// organisation connection, each with `regions` regions, discovered through ListAccounts and
/// validated like any role, then imported at the default interval (5 minutes) with the default
/// settings. Prints discovery time, backfill, worst staleness, CPU and memory.
pub(crate) async fn organization(accounts: usize, regions: usize, seconds: u64) -> anyhow::Result<()> {
    use std::sync::Arc;

    const MANAGEMENT: &str = "400000000000";
    let running = standin().await?;
    let url = std::env::var("CHANGETRAIL_BENCH_DATABASE_URL").unwrap_or(temp_sqlite()?);
    let backend = if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" };
    let store = storage::connect(&url).await?;
    let org = store.create_organization("bench").await?.id;
    let aws = aws_for(&running.url()).await;
    let access = Arc::new(api::AwsAccess::new(aws.clone(), Some(crate::PRINCIPAL.into()), None));
    let webhooks = app::WebhookSettings {
        secret_key: domain::secret_box::SecretKey::generate(),
        public_url: "http://127.0.0.1".into(),
        allow_private_targets: false,
    };
    let app = app::App::new(store.clone(), access, Duration::from_secs(1200), webhooks);
    let all_regions: Vec<String> = domain::aws::REGIONS
        .iter()
        .filter(|(_, partition)| *partition == "aws")
        .take(regions)
        .map(|(region, _)| region.to_string())
        .collect();
    anyhow::ensure!(all_regions.len() == regions, "only {} regions are known", all_regions.len());
    let patch = domain::connection::SettingsPatch {
        name: Some("bench organisation".into()),
        regions: Some(all_regions.clone()),
        lookback_days: Some(1),
        ..Default::default()
    };
    let parent = app.create_organization_connection(org, patch, None).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let external_id = parent.external_id.as_str().to_owned();
    let role = |arn: String, external_id: String, list: bool| RoleSpec {
        allow_lookup_events: !list,
        allow_list_accounts: list,
        ..RoleSpec::reader(arn, crate::PRINCIPAL, Some(external_id))
    };
    let org_role = format!("arn:aws:iam::{MANAGEMENT}:role/changetrail-organization-reader");
    running.standin.add_role(role(org_role.clone(), external_id.clone(), true));
    // Two changes in each account-region, 40 minutes old: the backfill stores them, and the
    // steady state then finds nothing new (the common case: most regions are quiet).
    let records = records()?;
    let changes: Vec<&Value> = records.iter().filter(|r| r["readOnly"] == Value::Bool(false)).collect();
    let newest = OffsetDateTime::now_utc() - time::Duration::minutes(40);
    let mut listed = Vec::new();
    for a in 0..accounts {
        let account = format!("{:012}", 400_000_000_001u64 + a as u64);
        running.standin.add_role(role(
            format!("arn:aws:iam::{account}:role/changetrail-reader"),
            format!("{external_id}-{account}"),
            false,
        ));
        for (r, region) in all_regions.iter().enumerate() {
            let events = (0..2).filter_map(|k| {
                let mut record = changes[(a * 31 + r * 7 + k) % changes.len()].clone();
                record["eventID"] = Value::String(Uuid::new_v4().to_string());
                let original = OffsetDateTime::parse(
                    record["eventTime"].as_str()?,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()?;
                StandinEvent::from_record(&record, newest - original, time::Duration::ZERO)
            });
            running.standin.add_events(&account, region, events.collect::<Vec<_>>());
        }
        listed.push(aws_standin::StandinAccount { id: account, name: format!("team {a}"), status: "ACTIVE".into() });
    }
    running.standin.set_organization(MANAGEMENT, listed);
    app.register_role(org, parent.id, app::RoleInput::Arn(&org_role)).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;

    let discoverer = worker::Discoverer::new(app.clone(), Duration::from_secs(3600));
    let started = Instant::now();
    discoverer.run_due_once().await;
    let discovery = started.elapsed().as_secs_f64();
    let members = store.list_members(org, parent.id).await?;
    let active = members.iter().filter(|m| m.status == domain::ConnectionStatus::Active).count();
    anyhow::ensure!(active == accounts, "{active} of {accounts} members are active");

    // The defaults (interval 5 minutes, concurrency 16), but the backfill's windows a day long
    // so that the 1-day lookback is one walk per region rather than four (the steady state's
    // windows are 25 minutes, so this does not touch what is measured).
    let settings = ImportSettings { slice: Duration::from_secs(24 * 3600), ..Default::default() };
    let interval = settings.interval;
    let concurrency = settings.concurrency;
    let importer = Importer::new(store.clone(), aws, settings);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(importer.run(shutdown.clone()));
    let started = Instant::now();
    let stored_at_start = running.standin.lookup_counts().0;
    let all_jobs = || async {
        let mut jobs = Vec::new();
        for member in &members {
            jobs.extend(store.list_import_jobs(org, member.id).await?);
        }
        anyhow::Ok(jobs)
    };
    loop {
        let jobs = all_jobs().await?;
        if jobs.len() == accounts * regions && jobs.iter().all(|j| j.last_success_at.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let backfill = started.elapsed().as_secs_f64();
    let backfill_calls = running.standin.lookup_counts().0 - stored_at_start;
    let (cpu_before, _) = cpu_and_peak_memory();
    let steady_started = Instant::now();
    let mut worst = 0.0f64;
    let mut sampled = 0.0f64;
    while steady_started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(15)).await;
        let sample = Instant::now();
        let now = OffsetDateTime::now_utc();
        for job in all_jobs().await? {
            let stale = (now - job.last_success_at.unwrap_or(job.scanned_until)).as_seconds_f64();
            worst = worst.max(stale);
        }
        sampled += sample.elapsed().as_secs_f64();
    }
    let (cpu_after, peak) = cpu_and_peak_memory();
    let steady = steady_started.elapsed().as_secs_f64();
    shutdown.cancel();
    task.await?;
    let (served, throttled) = running.standin.lookup_counts();
    let imported: i64 = all_jobs().await?.iter().map(|j| j.events_imported).sum();
    println!(
        "organisation: {accounts} member accounts × {regions} regions = {} account-regions on {backend}, one worker \
         (interval {} s, concurrency {concurrency})",
        accounts * regions,
        interval.as_secs()
    );
    println!("  discovery (ListAccounts, {accounts} members created and validated): {discovery:.1} s");
    println!("  backfill of every region (1-day lookback): {backfill:.1} s, {backfill_calls} LookupEvents calls");
    println!(
        "  steady state for {steady:.0} s: worst time since a region's last successful run {worst:.1} s (interval {} s)",
        interval.as_secs()
    );
    println!(
        "  CPU in steady state: {:.1}% of one core (this process also runs the AWS stand-in and the \
         staleness sampling, {sampled:.1} s of it)",
        100.0 * (cpu_after - cpu_before) / steady
    );
    println!("  peak resident memory: {peak:.0} MiB");
    println!("  LookupEvents calls: {served} answered, {throttled} throttled; events imported: {imported}");
    Ok(())
}
