//! The timeline benchmark: 10 million items, first pages through HTTP against the store's own
//! query, a day's walk by cursor, load with wrk, and the plan.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use domain::cloudtrail::{normalize_lookup, LookupEvent, RecordContext};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{aws_for, records, timed, PRINCIPAL};

/// 10 million timeline items over 90 days in 20 environments, shaped after the real records;
/// first pages through HTTP against the same query through the store, a day's walk, and load.
pub(crate) async fn timeline(events: i64) -> anyhow::Result<()> {
    use domain::timeline::{TimelineFilters, TimelineQuery};
    let url = std::env::var("CHANGETRAIL_BENCH_DATABASE_URL")
        .context("set CHANGETRAIL_BENCH_DATABASE_URL to a PostgreSQL database or an SQLite file (sqlite://…)")?;
    // The load phase needs wrk: say so before spending minutes on the data.
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .context("wrk is not installed (the load phase needs it): apt-get install wrk")?;
    // One store: the trait for the API and the queries, the concrete type for the plan.
    let sql_store = Arc::new(storage::connect_sql(&url).await?);
    let store: Arc<dyn domain::Store> = sql_store.clone();
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
        let context = RecordContext {
            connection_id: Uuid::nil(),
            account_id: "222222222222",
            region: "us-east-1",
            fallback_time: now,
        };
        let mut e = normalize_lookup(&lookup, &context).event;
        e.original = None;
        shapes.push(e);
    }
    let services = ["checkout-api", "web", "payments", "search", "auth", "inventory"];
    for (i, status) in
        ["succeeded", "started", "failed", "rolled_back", "succeeded", "succeeded"].iter().cycle().take(60).enumerate()
    {
        let input = domain::posted::DeployInput {
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
        shapes.push(domain::posted::deploy(input).map_err(|e| anyhow::anyhow!("{e}"))?.event);
    }
    for (i, severity) in ["critical", "error", "warning", "info"].iter().cycle().take(20).enumerate() {
        let input = domain::posted::AlertInput {
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
        shapes.push(domain::posted::alert(input).map_err(|e| anyhow::anyhow!("{e}"))?.event);
    }
    let started = Instant::now();
    let generation = Generation { org_id: org.id, envs: &envs, shapes: &shapes, events, now };
    match storage::Backend::of_url(&url)? {
        storage::Backend::Postgres => generate_postgres(&url, &generation).await?,
        storage::Backend::Sqlite => generate_sqlite(&url, &generation).await?,
    }
    println!(
        "timeline: {events} items over 90 days in 20 environments, generated in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // The API on this database.
    let secret = domain::TokenSecret::generate();
    store.create_token(org.id, "bench", &domain::Scopes::admin(), &secret.display_prefix(), &secret.hash()).await?;
    let access = Arc::new(api::AwsAccess::new(aws_for("http://127.0.0.1:9").await, Some(PRINCIPAL.into()), None));
    let webhooks = app::WebhookSettings {
        secret_key: domain::secret_box::SecretKey::generate(),
        public_url: "http://127.0.0.1".into(),
        allow_private_targets: false,
    };
    let state = api::AppState::new(store.clone(), access, Duration::from_secs(1200), webhooks);
    // Every figure but the last `wrk` reads each page anew: the remembered pages of
    // `app::pages` would turn 200 runs of one request into one query.
    let base =
        serve(api::router(state.clone().remembering_pages_for(Duration::ZERO), &api::HttpSettings::default())).await?;
    let remembering = serve(api::router(state, &api::HttpSettings::default())).await?;
    let http = reqwest::Client::new();
    let token = secret.expose().to_owned();
    let busy = envs[0];
    let rfc = |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let hour = (now - time::Duration::hours(1), now);
    let day = (now - time::Duration::days(1), now);
    let old_day = (now - time::Duration::days(60), now - time::Duration::days(59));
    // A word of one shape's title alone: about one item in 700 has it, so a page of them is
    // the whole day's walk without an index of the titles.
    let titles: Vec<String> = shapes.iter().map(|e| e.title.to_lowercase()).collect();
    let rare = titles
        .iter()
        .flat_map(|t| t.split(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| w.len() >= 8)
        .find(|w| titles.iter().filter(|t| t.contains(*w)).count() == 1)
        .context("no title word is rare")?
        .to_owned();
    let rare_query = format!("&q={rare}");
    println!("  the rare word: {rare:?}");
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
        (
            "last day, q= a rare word",
            day,
            &rare_query,
            TimelineFilters { text: Some(rare.clone()), ..Default::default() },
            vec![],
        ),
        (
            "last day, env-0 + env-1 + env-2",
            day,
            "&environment=env-1&environment=env-2",
            TimelineFilters::default(),
            vec![],
        ),
    ];
    println!("  first page (100 items) of the busy environment, 200 runs each: p50 / p99 in ms");
    // "HTTP" reads each page as a typed client would (skipping over the items' contents, which
    // still reads every byte of them); "received" is the response alone, as wrk or curl time it.
    println!(
        "  {:<36} {:>14} {:>14} {:>14} {:>8} {:>8} {:>6}",
        "query", "HTTP", "received", "store (SQL)", "p50 ×", "recv ×", "items"
    );
    for (name, (since, until), extra, f, kinds) in &cases {
        // Several environments are one request to /v1/timeline, the busy one first.
        let several = extra.starts_with("&environment=");
        let path = if several { "timeline?environment=env-0&" } else { "environments/env-0/timeline?" };
        let url = format!("{base}/v1/{path}limit=100&since={}&until={}{extra}", rfc(*since), rfc(*until));
        let (h50, h99, items) = timed(200, || async {
            let page: PageRead = http.get(&url).bearer_auth(&token).send().await?.json().await?;
            Ok(page.items.len())
        })
        .await?;
        let (r50, r99, _) = timed(200, || async {
            let response = http.get(&url).bearer_auth(&token).send().await?.error_for_status()?;
            Ok(response.bytes().await?.len())
        })
        .await?;
        let query = TimelineQuery {
            environment_ids: if several { envs[..3].to_vec() } else { vec![busy] },
            filters: f.clone(),
            since: *since,
            until: *until,
            kinds: kinds.clone(),
            include_read_only: false,
            limit: 101,
            after: None,
        };
        let (s50, s99, _) = timed(200, || async { Ok(store.timeline(org.id, &query).await?.len()) }).await?;
        println!(
            "  {name:<36} {h50:>6.2} / {h99:>5.2} {r50:>6.2} / {r99:>5.2} {s50:>6.2} / {s99:>5.2} {:>8.2} {:>8.2} {items:>6}",
            h50 / s50,
            r50 / s50
        );
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
        let page: PageRead = http.get(&url).bearer_auth(&token).send().await?.json().await?;
        walked += page.items.len();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
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
    let get_path = format!("/v1/environments/env-0/timeline?limit=100&since={}", rfc(hour.0));
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
    let wrk_get = |server: &str| {
        wrk(vec!["-t2".into(), "-c32".into(), "-d15s".into(), "-H".into(), auth.clone(), format!("{server}{get_path}")])
    };
    println!("  wrk GET timeline (2 threads, 32 connections, 15 s): {}", wrk_get(&base)?);
    println!("  wrk GET timeline, pages remembered for a second: {}", wrk_get(&remembering)?);
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

    // The plan of the main query, from the store's own SQL (one environment, last day, first page).
    let query = TimelineQuery {
        environment_ids: vec![busy],
        filters: TimelineFilters::default(),
        since: day.0,
        until: day.1,
        kinds: vec![],
        include_read_only: false,
        limit: 101,
        after: None,
    };
    let plan = sql_store.explain_timeline(org.id, &query).await?;
    println!("  plan of the first page (last day, busy environment):");
    for line in plan {
        println!("    {line}");
    }
    // And of the filters: on a value, which reads its facets (migration 0016), and on words of
    // titles and resources, which have no index of their own and walk the environment's links.
    let filtered = [
        ("service=checkout-api", TimelineFilters { service: Some("checkout-api".into()), ..Default::default() }),
        ("q= the rare word", TimelineFilters { text: Some(rare.clone()), ..Default::default() }),
        ("q=created", TimelineFilters { text: Some("created".into()), ..Default::default() }),
        ("resource=vpc-", TimelineFilters { resource: Some("vpc-".into()), ..Default::default() }),
    ];
    for (name, filters) in filtered {
        let plan = sql_store.explain_timeline(org.id, &TimelineQuery { filters, ..query.clone() }).await?;
        println!("  plan of the first page with {name}:");
        for line in plan {
            println!("    {line}");
        }
    }
    Ok(())
}

/// What the benchmark's client reads of a page: the whole JSON is parsed and checked, each item
/// skipped over rather than built into a `serde_json::Value` tree, as a typed client would (the
/// store's column decodes its rows into typed items too).
#[derive(serde::Deserialize)]
struct PageRead {
    items: Vec<serde::de::IgnoredAny>,
    next_cursor: Option<String>,
}

/// What to generate: `events` items of the organisation, shaped after `shapes`, over 90 days
/// before `now`, a third in the first environment and the rest spread over all of them.
#[derive(Clone, Copy)]
struct Generation<'a> {
    org_id: Uuid,
    envs: &'a [Uuid],
    shapes: &'a [domain::event::NewEvent],
    events: i64,
    now: OffsetDateTime,
}

/// Fills PostgreSQL server-side: `generate_series` joined with the shapes, 500,000 items and
/// their links a statement (which fires the facet triggers once per statement).
async fn generate_postgres(url: &str, what: &Generation<'_>) -> anyhow::Result<()> {
    let Generation { org_id, envs, shapes, events, now } = *what;
    let pool = sqlx::PgPool::connect(url).await?;
    let started = Instant::now();
    // A plain table: a TEMP one would live on one of the pool's connections only.
    sqlx::query("DROP TABLE IF EXISTS bench_shapes").execute(&pool).await?;
    sqlx::query("CREATE TABLE bench_shapes (n INT, kind TEXT, source TEXT, title TEXT, actor TEXT, read_only BOOLEAN, resources JSONB, labels JSONB, details JSONB, event_source TEXT)").execute(&pool).await?;
    sqlx::query(
        "INSERT INTO bench_shapes SELECT * FROM jsonb_to_recordset($1) AS s (n INT, kind TEXT, source TEXT, title TEXT,
           actor TEXT, read_only BOOLEAN, resources JSONB, labels JSONB, details JSONB, event_source TEXT)",
    )
    .bind(shape_rows(shapes))
    .execute(&pool)
    .await?;
    let span_us: i64 = 90 * 86_400_000_000;
    let step = span_us / events;
    let now_us = domain::time_util::to_micros(now);
    let chunk = 500_000i64;
    let mut from = 1i64;
    while from <= events {
        let to = (from + chunk - 1).min(events);
        // Time-ordered ids (the time in the leading 48 bits, as UUIDv7), one environment per item:
        // env-0 is the busy one, with about a third of everything.
        sqlx::query(
            "WITH ins AS (
               INSERT INTO events (id, org_id, kind, source, source_key, connection_id, occurred_at, title, actor, read_only,
                                   resources, labels, links, details, original, event_source, created_at, updated_at)
               SELECT (lpad(to_hex(($2 - g * $3) / 1000), 12, '0') || '7' || substr(md5(g::text), 1, 19))::uuid,
                      $1, s.kind, s.source, 'bench-' || g, NULL, $2 - g * $3 - (g % 997), s.title, s.actor, s.read_only,
                      s.resources, s.labels, '[]'::jsonb, s.details, NULL, s.event_source, 0, 0
               FROM generate_series($4::bigint, $5::bigint) g JOIN bench_shapes s ON s.n = (g * 7919) % $6
               RETURNING id, occurred_at, kind, read_only, title, resources, substring(source_key from 7)::bigint AS g)
             INSERT INTO event_environments (environment_id, occurred_at, event_id, kind, read_only, title_lowered,
                                             resources_lowered)
             SELECT ($7::uuid[])[CASE WHEN ins.g % 10 < 3 THEN 1 ELSE (ins.g % 20) + 1 END], ins.occurred_at, ins.id, ins.kind, ins.read_only,
                    -- the copies of migration 0021, unbounded: no shape's text is near its 1,000 bytes
                    LOWER(ins.title), LOWER(CAST(ins.resources AS TEXT))
             FROM ins",
        )
        .bind(org_id).bind(now_us).bind(step).bind(from).bind(to).bind(shapes.len() as i64).bind(envs)
        .execute(&pool).await?;
        eprintln!("  generated {to} of {events} ({:.0} s)", started.elapsed().as_secs_f64());
        from = to + 1;
    }
    // VACUUM, not only ANALYZE: autovacuum would otherwise run during the measurements, and the
    // link table's index-only scans (migration 0023) need the visibility map a settled database has.
    sqlx::query("VACUUM (ANALYZE) events, event_environments, event_facets").execute(&pool).await?;
    Ok(())
}

/// Fills an SQLite file with the same items as [`generate_postgres`] (a recursive series in
/// place of `generate_series`, ids from the same time-ordered pattern), 100,000 a transaction.
/// No ANALYZE: the service never runs one on SQLite, so the plans are those it would get.
async fn generate_sqlite(url: &str, what: &Generation<'_>) -> anyhow::Result<()> {
    let Generation { org_id, envs, shapes, events, now } = *what;
    let pool = sqlx::SqlitePool::connect(url).await?;
    let started = Instant::now();
    sqlx::query("DROP TABLE IF EXISTS bench_shapes").execute(&pool).await?;
    sqlx::query("DROP TABLE IF EXISTS bench_envs").execute(&pool).await?;
    sqlx::query("CREATE TABLE bench_shapes (n INTEGER PRIMARY KEY, kind TEXT, source TEXT, title TEXT, actor TEXT, read_only INTEGER, resources TEXT, labels TEXT, details TEXT, event_source TEXT)").execute(&pool).await?;
    sqlx::query("CREATE TABLE bench_envs (i INTEGER PRIMARY KEY, id BLOB)").execute(&pool).await?;
    sqlx::query(
        "INSERT INTO bench_shapes SELECT value ->> 'n', value ->> 'kind', value ->> 'source', value ->> 'title',
           value ->> 'actor', value ->> 'read_only', value -> 'resources', value -> 'labels', value -> 'details',
           value ->> 'event_source'
         FROM json_each(?)",
    )
    .bind(shape_rows(shapes))
    .execute(&pool)
    .await?;
    for (i, id) in envs.iter().enumerate() {
        sqlx::query("INSERT INTO bench_envs VALUES (?, ?)").bind(i as i64).bind(id).execute(&pool).await?;
    }
    let step = 90 * 86_400_000_000 / events;
    let now_us = domain::time_util::to_micros(now);
    let chunk = 100_000i64;
    let mut from = 1i64;
    // ?1, ?2: the series' bounds; ?3 now; ?4 the step; ?5 the number of shapes; ?6 the organisation.
    let series = "WITH RECURSIVE g(n) AS (SELECT ?1 UNION ALL SELECT n + 1 FROM g WHERE n < ?2) ";
    let id = "unhex(printf('%012x7%019x', (?3 - g.n * ?4) / 1000, g.n))";
    let at = "?3 - g.n * ?4 - (g.n % 997)";
    while from <= events {
        let to = (from + chunk - 1).min(events);
        let mut tx = pool.begin().await?;
        sqlx::query(&format!(
            "{series} INSERT INTO events (id, org_id, kind, source, source_key, connection_id, occurred_at, title, actor,
                 read_only, resources, labels, links, details, original, event_source, created_at, updated_at)
             SELECT {id}, ?6, s.kind, s.source, 'bench-' || g.n, NULL, {at}, s.title, s.actor, s.read_only,
                    s.resources, s.labels, '[]', s.details, NULL, s.event_source, 0, 0
             FROM g JOIN bench_shapes s ON s.n = (g.n * 7919) % ?5"
        ))
        .bind(from).bind(to).bind(now_us).bind(step).bind(shapes.len() as i64).bind(org_id)
        .execute(&mut *tx).await?;
        sqlx::query(&format!(
            "{series} INSERT INTO event_environments (environment_id, occurred_at, event_id, kind, read_only,
                 title_lowered, resources_lowered)
             SELECT v.id, {at}, {id}, s.kind, s.read_only, LOWER(s.title), LOWER(CAST(s.resources AS TEXT))
             FROM g JOIN bench_shapes s ON s.n = (g.n * 7919) % ?5
                    JOIN bench_envs v ON v.i = CASE WHEN g.n % 10 < 3 THEN 0 ELSE g.n % 20 END"
        ))
        .bind(from)
        .bind(to)
        .bind(now_us)
        .bind(step)
        .bind(shapes.len() as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        eprintln!("  generated {to} of {events} ({:.0} s)", started.elapsed().as_secs_f64());
        from = to + 1;
    }
    Ok(())
}

/// The shapes as one JSON array of rows for `bench_shapes`, which each backend unpacks itself.
fn shape_rows(shapes: &[domain::event::NewEvent]) -> sqlx::types::Json<Vec<Value>> {
    let rows = shapes.iter().enumerate().map(|(n, e)| {
        serde_json::json!({
            "n": n, "kind": e.kind.as_str(), "source": e.source, "title": e.title, "actor": e.actor,
            "read_only": e.read_only, "resources": e.resources, "labels": e.labels,
            "details": e.details.to_json(), "event_source": e.details.event_source(),
        })
    });
    sqlx::types::Json(rows.collect())
}

/// Serves the router on a port of its own; answers its base URL.
async fn serve(router: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(base)
}
