//! The EventBridge push path under sustained load: real records pushed by 20 concurrent senders
//! through HTTP, as an API destination sends them, on SQLite and on PostgreSQL. Figures: answer
//! times at a paced 500 events/s beside `GET /healthz` at the same rate (the floor: HTTP alone),
//! the most events/s unpaced, and change-to-visible (POST until the timeline returns the item).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::{connection, pct, records, temp_sqlite, PRINCIPAL};

const SENDERS: usize = 20;
const ACCOUNT: &str = "222222222222";

struct Target {
    http: reqwest::Client,
    base: String,
    connection_id: Uuid,
    secret: String,
    token: String,
}

/// A write record as an EventBridge event happening now, with a fresh id (and `actor` as its
/// user, for the visibility probe to find it).
fn event_now(record: &Value, actor: Option<&str>) -> Value {
    let mut detail = record.clone();
    let now = time::OffsetDateTime::now_utc();
    detail["eventID"] = json!(Uuid::new_v4().to_string());
    detail["eventTime"] = json!(now.format(&time::format_description::well_known::Rfc3339).unwrap());
    detail["recipientAccountId"] = json!(ACCOUNT);
    detail["awsRegion"] = json!("us-east-1");
    if let Some(actor) = actor {
        detail["userIdentity"] = json!({"type": "IAMUser", "userName": actor});
    }
    json!({"version": "0", "id": Uuid::new_v4().to_string(), "detail-type": "AWS API Call via CloudTrail",
           "source": "aws.ec2", "account": ACCOUNT, "time": detail["eventTime"], "region": "us-east-1",
           "resources": [], "detail": detail})
}

async fn push_one(t: &Target, event: &Value) -> anyhow::Result<Value> {
    let response = t
        .http
        .post(format!("{}/hooks/eventbridge/{}", t.base, t.connection_id))
        .header("X-Changetrail-Push-Secret", &t.secret)
        .json(event)
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "push answered {}", response.status());
    Ok(response.json().await?)
}

/// `SENDERS` tasks for `seconds`, each at `per_sender` requests/s (unpaced when `None`); every
/// answer's time in ms, and how many requests were made.
async fn load(
    t: &Arc<Target>,
    records: &Arc<Vec<Value>>,
    seconds: u64,
    per_sender: Option<f64>,
    healthz: bool,
) -> anyhow::Result<Vec<f64>> {
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let (t, records) = (t.clone(), records.clone());
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::new();
            let end = Instant::now() + Duration::from_secs(seconds);
            let mut tick = per_sender.map(|rate| {
                let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            let mut n = sender;
            while Instant::now() < end {
                if let Some(tick) = tick.as_mut() {
                    tick.tick().await;
                }
                let started = Instant::now();
                if healthz {
                    let r = t.http.get(format!("{}/healthz", t.base)).send().await?;
                    anyhow::ensure!(r.status().is_success());
                    r.bytes().await?;
                } else {
                    push_one(&t, &event_now(&records[n % records.len()], None)).await?;
                }
                ms.push(started.elapsed().as_secs_f64() * 1000.0);
                n += SENDERS;
            }
            anyhow::Ok(ms)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

/// While `load` runs: POST an event of a unique actor, then read the timeline filtered by that
/// actor until it holds the item; the time from the POST's start, in ms.
async fn probe(t: &Arc<Target>, record: &Value, seconds: u64) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let actor = format!("probe-{}", Uuid::new_v4().simple());
        let started = Instant::now();
        let answer = push_one(t, &event_now(record, Some(&actor))).await?;
        let item_id = answer["item_id"].as_str().unwrap_or_default().to_owned();
        loop {
            let page: Value = t
                .http
                .get(format!("{}/v1/environments/production/timeline?actor={actor}&limit=5", t.base))
                .bearer_auth(&t.token)
                .send()
                .await?
                .json()
                .await?;
            if page["items"].as_array().is_some_and(|items| items.iter().any(|i| i["id"] == json!(item_id))) {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the pushed item never appeared");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

pub(crate) async fn push(seconds: u64) -> anyhow::Result<()> {
    let writes: Vec<Value> =
        records()?.into_iter().filter(|r| r["readOnly"] == json!(false) && r["eventSource"].is_string()).collect();
    let writes = Arc::new(writes);
    let mut urls = vec![("SQLite", temp_sqlite()?)];
    if let Ok(url) = std::env::var("CHANGETRAIL_BENCH_DATABASE_URL") {
        urls.push(("PostgreSQL", url));
    }
    println!("push: {} real write records, {SENDERS} concurrent senders, {seconds} s per phase", writes.len());
    for (name, url) in urls {
        let store: Arc<dyn domain::Store> = Arc::new(storage::connect_sql(&url).await?);
        let standin = aws_standin::Standin::new();
        let (org, connection_id) = connection(store.as_ref(), &standin, ACCOUNT, vec!["us-east-1".into()]).await?;
        let env =
            store.create_environment(org, &domain::NewEnvironment::parse("production", None, None).unwrap()).await?;
        let mut active = store.get_connection(org, connection_id).await?.expect("just made");
        active.settings.default_environment = Some(env.slug.clone());
        store.update_connection_settings(org, connection_id, &active.settings).await?;
        let secret = domain::source::generate_secret();
        store.set_push_secret(org, connection_id, &domain::token::TokenHash::of(&secret)).await?;
        let token = domain::TokenSecret::generate();
        store.create_token(org, "bench", &domain::Scopes::admin(), &token.display_prefix(), &token.hash()).await?;

        let access =
            Arc::new(api::AwsAccess::new(crate::aws_for("http://127.0.0.1:9").await, Some(PRINCIPAL.into()), None));
        let webhooks = app::WebhookSettings {
            secret_key: domain::secret_box::SecretKey::generate(),
            public_url: "http://127.0.0.1".into(),
            allow_private_targets: false,
        };
        let state = api::AppState::new(store.clone(), access, Duration::from_secs(1200), webhooks);
        let router = api::router(state, &api::HttpSettings::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let target = Arc::new(Target {
            http: reqwest::Client::builder().pool_max_idle_per_host(SENDERS * 2).build()?,
            base,
            connection_id,
            secret,
            token: token.expose().to_owned(),
        });
        // Warm up: connections, caches, the first pages of the tables.
        load(&target, &writes, 2, Some(10.0), false).await?;

        let rate = 500.0 / SENDERS as f64;
        let floor = load(&target, &writes, seconds, Some(rate), true).await?;
        let (paced, visible) =
            tokio::join!(load(&target, &writes, seconds, Some(rate), false), probe(&target, &writes[0], seconds));
        let (paced, visible) = (paced?, visible?);
        let started = Instant::now();
        let unpaced = load(&target, &writes, seconds, None, false).await?;
        let unpaced_rate = unpaced.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "{name}: paced at 500 events/s: {:.0} events/s, answer p50 {:.1} ms, p99 {:.1} ms \
             (GET /healthz at the same rate: p50 {:.1} ms, p99 {:.1} ms; p99 ratio {:.1}x)",
            paced.len() as f64 / seconds as f64,
            pct(&paced, 0.5),
            pct(&paced, 0.99),
            pct(&floor, 0.5),
            pct(&floor, 0.99),
            pct(&paced, 0.99) / pct(&floor, 0.99).max(0.001),
        );
        println!(
            "{name}: change-to-visible under that load ({} probes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            visible.len(),
            pct(&visible, 0.5),
            pct(&visible, 0.99),
            visible.last().copied().unwrap_or_default(),
        );
        println!(
            "{name}: unpaced: {unpaced_rate:.0} events/s, answer p50 {:.1} ms, p99 {:.1} ms",
            pct(&unpaced, 0.5),
            pct(&unpaced, 0.99)
        );
        server.abort();
    }
    let interval = worker::ImportSettings::default().interval.as_secs_f64();
    println!(
        "poll, for comparison (default interval {interval:.0} s): a change waits for the next run, uniformly \
         0–{interval:.0} s (p50 {:.0} s, p99 {:.0} s), after CloudTrail's own 5–15 min before LookupEvents shows it",
        interval * 0.5,
        interval * 0.99
    );
    Ok(())
}
