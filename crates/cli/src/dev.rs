//! `changetrail dev …`: trying changetrail on a machine without an AWS account.

use std::io::Write;
use std::net::SocketAddr;

use aws_standin::{Identity, Standin};

pub const DEV_ACCESS_KEY_ID: &str = "AKIACHANGETRAILDEV01";
pub const DEV_SECRET_ACCESS_KEY: &str = "changetrail-dev-secret-not-for-aws";
pub const DEV_PRINCIPAL: &str = "arn:aws:iam::111111111111:user/changetrail";

/// A stand-in whose one identity is changetrail's own, as the dev credentials below name it.
pub fn dev_standin() -> Standin {
    let standin = Standin::new();
    standin.add_identity(Identity {
        access_key_id: DEV_ACCESS_KEY_ID.into(),
        secret_access_key: DEV_SECRET_ACCESS_KEY.into(),
        arn: DEV_PRINCIPAL.into(),
        principal: DEV_PRINCIPAL.into(),
    });
    standin
}

pub async fn run_standin(listen: SocketAddr) -> anyhow::Result<()> {
    let running = dev_standin().start(listen).await?;
    let url = running.url();
    println!(
        "AWS stand-in (STS and CloudTrail LookupEvents) on {url}. Run changetrail against it with:\n\n    \
         AWS_ENDPOINT_URL={url} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID={DEV_ACCESS_KEY_ID} \\\n    \
         AWS_SECRET_ACCESS_KEY={DEV_SECRET_ACCESS_KEY} cargo run --release -- serve\n\n\
         Declare the role an admin would create (with the connection's external ID) with:\n\n    \
         curl -X POST {url}/_standin/roles -H 'Content-Type: application/json' -d '{{\"arn\": \
         \"arn:aws:iam::222222222222:role/changetrail-cloudtrail-reader\", \"trusted_principal\": \"{DEV_PRINCIPAL}\", \
         \"required_external_id\": \"ct-…\", \"allow_lookup_events\": true}}'\n"
    );
    crate::shutdown_signal().await;
    Ok(())
}

const DEMO_RECORDS: &str = include_str!("../demo/cloudtrail-sample.json");
const DEMO_ACCOUNT: &str = "222222222222";
const DEMO_ROLE: &str = "arn:aws:iam::222222222222:role/changetrail-cloudtrail-reader";

/// `changetrail demo`: the stand-in seeded with real records, the API and the worker on a fresh
/// SQLite database, an environment and an active connection, made through the API as an admin
/// would; then the `curl` that shows the imported timeline.
pub async fn run_demo(config: crate::config::Config) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::sync::Arc;

    let standin = dev_standin();
    let records: serde_json::Value = serde_json::from_str(DEMO_RECORDS).context("demo records")?;
    let records = records["Records"].as_array().context("demo records")?;
    let newest = records
        .iter()
        .filter_map(|r| {
            time::OffsetDateTime::parse(r["eventTime"].as_str()?, &time::format_description::well_known::Rfc3339).ok()
        })
        .max()
        .context("demo records have times")?;
    let shift = time::OffsetDateTime::now_utc() - time::Duration::minutes(5) - newest;
    let events = records.iter().filter_map(|r| aws_standin::StandinEvent::from_record(r, shift, time::Duration::ZERO));
    standin.add_events(DEMO_ACCOUNT, "us-east-1", events);
    let running = standin.clone().start("127.0.0.1:0".parse()?).await?;

    let dir = std::env::temp_dir().join(format!("changetrail-demo-{}", uuid::Uuid::now_v7()));
    let store = storage::connect(&storage::default_sqlite_url(&dir)?).await?;
    let token = match crate::bootstrap(store.as_ref(), None).await? {
        crate::Bootstrap::Created { secret, .. } => secret.expose().to_owned(),
        crate::Bootstrap::AlreadyDone => anyhow::bail!("the demo database is not empty"),
    };
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(running.url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            DEV_ACCESS_KEY_ID,
            DEV_SECRET_ACCESS_KEY,
            None,
            None,
            "demo",
        ));
    let aws = aws::Aws::from_loader(loader).await;
    let access = Arc::new(api::AwsAccess::new(aws.clone(), None, None));

    let shutdown = crate::shutdown_token();
    let importer = worker::Importer::new(store.clone(), aws, config.import.clone());
    let worker = tokio::spawn(importer.run(shutdown.clone()));
    // The demo keeps everything in its own directory: the key that seals webhook secrets too.
    let api_config = crate::config::Config { data_dir: dir.clone(), ..config.clone() };
    let deliverer = worker::Deliverer::new(store.clone(), api_config.deliveries()?).map_err(anyhow::Error::msg)?;
    tokio::spawn(deliverer.run(shutdown.clone()));
    let api_store = store.clone();
    let api_shutdown = shutdown.clone();
    let api =
        tokio::spawn(
            async move { crate::serve_api(&api_config, api_store, access, api_shutdown.cancelled_owned()).await },
        );

    // As an admin would: an environment, a connection, the role, registered through the API.
    let base = format!("http://{}", config.listen);
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        http.request(method, format!("{base}{path}")).bearer_auth(&token).json(&body).send()
    };
    let mut ready = false;
    for _ in 0..50 {
        if http.get(format!("{base}/readyz")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::ensure!(ready, "the API did not start on {base}");
    call(reqwest::Method::POST, "/v1/environments", serde_json::json!({"name": "production"}))
        .await?
        .error_for_status()?;
    let connection: serde_json::Value = call(
        reqwest::Method::POST,
        "/v1/connections",
        serde_json::json!({"name": "demo account", "regions": ["us-east-1"], "default_environment": "production", "lookback_days": 1}),
    )
    .await?
    .error_for_status()?
    .json()
    .await?;
    let id = connection["id"].as_str().context("connection id")?.to_owned();
    standin.add_role(aws_standin::RoleSpec::reader(
        DEMO_ROLE,
        DEV_PRINCIPAL,
        connection["external_id"].as_str().map(str::to_owned),
    ));
    let registered =
        call(reqwest::Method::PUT, &format!("/v1/connections/{id}/role"), serde_json::json!({"role_arn": DEMO_ROLE}))
            .await?;
    anyhow::ensure!(registered.status().is_success(), "registering the demo role failed: {}", registered.text().await?);

    let mut imported = 0;
    for _ in 0..120 {
        let imports: serde_json::Value =
            call(reqwest::Method::GET, &format!("/v1/connections/{id}/imports"), serde_json::Value::Null)
                .await?
                .json()
                .await?;
        imported = imports["items"][0]["events_imported"].as_i64().unwrap_or(0);
        if imports["items"][0]["status"] == "scheduled" && imported > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let connection: serde_json::Value =
        call(reqwest::Method::GET, &format!("/v1/connections/{id}"), serde_json::Value::Null).await?.json().await?;
    let excluded = connection["events_excluded"].as_i64().unwrap_or(0);
    // A closed stdout (`demo | head`) must not stop the demo, so no println!.
    let _ = writeln!(
        std::io::stdout(),
        "changetrail demo on {base} (database in {dir}), with an AWS stand-in on {aws} serving 200 real CloudTrail records.\n\
         Imported {imported} changes into the environment 'production' ({excluded} session events left out by the connection's event_filter). See them:\n\n    \
         curl -s -H \"Authorization: Bearer {token}\" '{base}/v1/environments/production/timeline?limit=20'\n\n\
         The import's progress:\n\n    \
         curl -s -H \"Authorization: Bearer {token}\" {base}/v1/connections/{id}/imports\n\n\
         Or look at it in the web view: open {base}/ui/ and sign in with the token.\n\n\
         The API reference is at {base}/docs. Ctrl-C stops the demo.",
        dir = dir.display(),
        aws = running.url(),
    );
    let _ = api.await;
    shutdown.cancel();
    let _ = worker.await;
    Ok(())
}
