//! `PutAuditEvents` under load: 8 concurrent clients of AWS's own SDK (`aws-sdk-cloudtraildata`),
//! each sending batches of 100 audit events, signed with the channel's key, to the real API on
//! SQLite and on PostgreSQL; beside it the ceiling of the same items in plain multi-row INSERTs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_cloudtraildata::types::AuditEvent;
use serde_json::json;
use uuid::Uuid;

use crate::{pct, temp_sqlite, PRINCIPAL};

const CLIENTS: usize = 8;
const BATCH: usize = 100;

fn event_data(uid: &str, n: usize) -> String {
    let name = ["AddUserToGroup", "RemoveUserFromGroup", "UpdatePolicy", "DeleteGroup"][n % 4];
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    json!({
        "version": "1.0",
        "userIdentity": {"type": "User", "principalId": format!("00u{n}"), "details": {"name": format!("user{}@example.com", n % 50)}},
        "userAgent": "okta-integration/2.1", "eventSource": "okta.example.com",
        "eventName": name,
        "eventTime": now, "UID": uid, "requestParameters": {"groupName": format!("group-{}", n % 20)},
        "recipientAccountId": "123456789012", "sourceIPAddress": "203.0.113.7"
    })
    .to_string()
}

pub(crate) async fn channels(seconds: u64) -> anyhow::Result<()> {
    let mut urls = vec![("SQLite", temp_sqlite()?)];
    if let Ok(url) = std::env::var("CHANGETRAIL_BENCH_DATABASE_URL") {
        urls.push(("PostgreSQL", url));
    }
    println!("channels: {CLIENTS} concurrent aws-sdk-cloudtraildata clients, batches of {BATCH}, {seconds} s");
    for (name, url) in urls {
        let sql_store = Arc::new(storage::connect_sql(&url).await?);
        let store: Arc<dyn domain::Store> = sql_store.clone();
        let org = store.create_organization("bench").await?;
        store.create_environment(org.id, &domain::NewEnvironment::parse("identity", None, None).unwrap()).await?;
        let access =
            Arc::new(api::AwsAccess::new(crate::aws_for("http://127.0.0.1:9").await, Some(PRINCIPAL.into()), None));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let webhooks = app::WebhookSettings {
            secret_key: domain::secret_box::SecretKey::generate(),
            public_url: base.clone(),
            allow_private_targets: false,
        };
        let state = api::AppState::new(store.clone(), access, Duration::from_secs(1200), webhooks);
        let environments = ["identity".to_owned()];
        let input = app::ChannelInput { name: "bench", source: "okta", environments: &environments, external_id: None };
        let (channel, secret) = state.create_channel(org.id, input).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let router = api::router(state, &api::HttpSettings::default());
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let arn = domain::channel::channel_arn(channel.id);

        let started = Instant::now();
        let end = started + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for client_no in 0..CLIENTS {
            let config = aws_sdk_cloudtraildata::Config::builder()
                .behavior_version(aws_sdk_cloudtraildata::config::BehaviorVersion::latest())
                .endpoint_url(&base)
                .region(aws_sdk_cloudtraildata::config::Region::new("us-east-1"))
                .credentials_provider(aws_credential_types::Credentials::new(
                    &channel.access_key_id,
                    &secret,
                    None,
                    None,
                    "bench",
                ))
                .build();
            let client = aws_sdk_cloudtraildata::Client::from_conf(config);
            let arn = arn.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ms, mut accepted, mut n) = (Vec::new(), 0usize, 0usize);
                while Instant::now() < end {
                    let batch: Vec<AuditEvent> = (0..BATCH)
                        .map(|i| {
                            n += 1;
                            let uid = format!("{client_no}-{n}-{}", Uuid::new_v4().simple());
                            AuditEvent::builder().id(format!("e{i}")).event_data(event_data(&uid, n)).build().unwrap()
                        })
                        .collect();
                    let sent = Instant::now();
                    let answer =
                        client.put_audit_events().channel_arn(&arn).set_audit_events(Some(batch)).send().await?;
                    ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                    anyhow::ensure!(answer.failed().is_empty(), "events failed: {:?}", answer.failed());
                    accepted += answer.successful().len();
                }
                anyhow::Ok((ms, accepted))
            }));
        }
        let (mut ms, mut accepted) = (Vec::new(), 0);
        for task in tasks {
            let (m, a) = task.await??;
            ms.extend(m);
            accepted += a;
        }
        let elapsed = started.elapsed().as_secs_f64();
        ms.sort_by(f64::total_cmp);
        server.abort();

        // The ceiling: the same number of items, already read, in plain INSERTs of 1,000.
        let items: Vec<domain::event::NewEvent> = (0..accepted.min(50_000))
            .map(|n| {
                let raw = domain::channel::AuditEvent {
                    id: "e".into(),
                    event_data: event_data(&format!("ceiling-{n}-{}", Uuid::new_v4().simple()), n),
                    event_data_checksum: None,
                };
                domain::channel::read_event(&raw, &channel, &[]).expect("a well-formed event")
            })
            .collect();
        let ceiling_started = Instant::now();
        sql_store.insert_plain(org.id, &items).await?;
        let ceiling = items.len() as f64 / ceiling_started.elapsed().as_secs_f64();
        let rate = accepted as f64 / elapsed;
        println!(
            "{name}: {rate:.0} events/s ({} requests, p50 {:.1} ms, p99 {:.1} ms per request of {BATCH}); \
             plain INSERT of the same items: {ceiling:.0} events/s; ratio {:.0}%",
            ms.len(),
            pct(&ms, 0.5),
            pct(&ms, 0.99),
            100.0 * rate / ceiling
        );
    }
    Ok(())
}
