//! What the tests share: a fresh database of either backend, and `TestApp`, the real router
//! served on a free port against such a database, talked to over HTTP.

use std::sync::Arc;

use domain::{Scopes, Store, TokenSecret};
use serde_json::Value;
use uuid::Uuid;

pub mod browser;
pub mod sse;

pub const PG_URL_VAR: &str = "CHANGETRAIL_TEST_DATABASE_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, migrated database that lives as long as this value.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// `None` when the backend is PostgreSQL and no test database is configured; the caller
    /// says that the test was skipped and why.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                let store = storage::connect(&url).await.expect("open SQLite");
                Some(TestDb { store, url, _dir: Some(dir) })
            }
            Backend::Postgres => {
                let base = std::env::var(PG_URL_VAR).ok().filter(|u| !u.is_empty())?;
                let url = fresh_pg_schema(&base).await;
                let store = storage::connect(&url).await.expect("connect PostgreSQL");
                Some(TestDb { store, url, _dir: None })
            }
        }
    }
}

/// Prints why a PostgreSQL test did not run; CI sets the variable, so there it always runs.
pub fn skipped(test: &str) {
    eprintln!("SKIPPED {test} on PostgreSQL: {PG_URL_VAR} is not set (CI sets it; see the README)");
}

/// Each test gets a schema of its own in the shared test database: isolated, and much faster
/// to create than a database. Schemas left by runs more than an hour old are dropped.
async fn fresh_pg_schema(base: &str) -> String {
    let admin = sqlx::PgPool::connect(base).await.unwrap_or_else(|e| panic!("cannot connect to {PG_URL_VAR}: {e}"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let stale: Vec<(String,)> = sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'ct_test_%'")
        .fetch_all(&admin)
        .await
        .unwrap_or_default();
    for (schema,) in stale {
        let created: u64 = schema.split('_').nth(2).and_then(|t| t.parse().ok()).unwrap_or(0);
        if created + 3600 < now {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&admin).await;
        }
    }
    let schema = format!("ct_test_{now}_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.expect("create schema");
    admin.close().await;
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// What the webhooks need: a fresh sealing key, and the URL providers reach the server at.
pub fn webhooks(public_url: &str) -> app::WebhookSettings {
    app::WebhookSettings {
        secret_key: domain::secret_box::SecretKey::generate(),
        public_url: public_url.into(),
        allow_private_targets: false,
    }
}

/// `X-Hub-Signature-256` as GitHub computes it.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret, body))
}

/// The hex HMAC-SHA256 of `body` with `secret`, as GitHub and PagerDuty sign deliveries.
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub const SERVICE_ACCESS_KEY: &str = "AKIATESTSERVICE00001";
pub const SERVICE_SECRET: &str = "test-service-secret";
/// changetrail's own identity in the tests' AWS.
pub const SERVICE_PRINCIPAL: &str = "arn:aws:iam::111111111111:role/changetrail";

/// The service's AWS access as production builds it (aws-config's loader), with the endpoint,
/// region and credentials named explicitly so parallel tests can each have their own stand-in.
pub async fn aws_access(endpoint_url: &str, principal: Option<&str>) -> Arc<api::AwsAccess> {
    Arc::new(api::AwsAccess::new(aws_client(endpoint_url).await, principal.map(str::to_owned), None))
}

/// The service's AWS clients on the stand-in at `endpoint_url`, with its service identity.
pub async fn aws_client(endpoint_url: &str) -> aws::Aws {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            SERVICE_ACCESS_KEY,
            SERVICE_SECRET,
            None,
            None,
            "test",
        ));
    aws::Aws::from_loader(loader).await
}

/// A stand-in for AWS that knows changetrail's service identity.
pub async fn start_standin() -> aws_standin::RunningStandin {
    let standin = aws_standin::Standin::new();
    standin.add_identity(aws_standin::Identity {
        access_key_id: SERVICE_ACCESS_KEY.into(),
        secret_access_key: SERVICE_SECRET.into(),
        arn: "arn:aws:sts::111111111111:assumed-role/changetrail/i-0123456789abcdef0".into(),
        principal: SERVICE_PRINCIPAL.into(),
    });
    standin.start("127.0.0.1:0".parse().unwrap()).await.expect("start the AWS stand-in")
}

/// Makes `connection` active on `role_arn`, as a registration that passed validation would
/// (its import jobs scheduled), and declares that role in the stand-in: trusting changetrail's
/// service principal with the connection's external ID, allowed LookupEvents.
pub async fn activate_connection(
    store: &dyn Store,
    standin: &aws_standin::Standin,
    connection: &domain::Connection,
    role_arn: &str,
) -> domain::Connection {
    let external_id = Some(connection.external_id.as_str().to_owned());
    standin.add_role(aws_standin::RoleSpec::reader(role_arn, SERVICE_PRINCIPAL, external_id));
    let account = role_arn.split(':').nth(4).expect("a role ARN").to_owned();
    let role = domain::RegisteredRole {
        role_arn: Some(role_arn.to_owned()),
        via: vec![],
        assumed_role_arn: format!("arn:aws:sts::{account}:assumed-role/{}/test", role_arn.rsplit('/').next().unwrap()),
        account_id: account,
        validated_at: domain::time_util::now(),
        credentials: domain::connection::CredentialSource::Role,
    };
    store.register_role(connection.org_id, connection.id, &role).await.expect("register").expect("the connection")
}

/// `changetrail {subcommand}` (the binary at `binary`) as a deployment runs it against
/// `database_url`: nothing of the test's environment, a data directory of its own, AWS only at
/// `aws_endpoint` with the service's test credentials, warnings on stderr. Callers add the rest.
pub fn changetrail_process(
    binary: &str,
    subcommand: &str,
    database_url: &str,
    aws_endpoint: &str,
) -> std::process::Command {
    let mut command = std::process::Command::new(binary);
    command
        .arg(subcommand)
        .env_clear()
        .env("CHANGETRAIL_DATA_DIR", std::env::temp_dir().join(format!("changetrail-{subcommand}-{}", Uuid::now_v7())))
        .env("CHANGETRAIL_DATABASE_URL", database_url)
        .env("CHANGETRAIL_LOG", "warn")
        .env("AWS_ENDPOINT_URL", aws_endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", SERVICE_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SERVICE_SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    command
}

/// An organisation with an admin token, as a test sees it.
pub struct TestOrg {
    pub id: Uuid,
    pub admin_token: String,
}

pub async fn create_org(store: &dyn Store, name: &str) -> TestOrg {
    let org = store.create_organization(name).await.expect("create org");
    let secret = TokenSecret::generate();
    store
        .create_token(org.id, "test admin", &Scopes::admin(), &secret.display_prefix(), &secret.hash())
        .await
        .expect("create token");
    TestOrg { id: org.id, admin_token: secret.expose().to_owned() }
}

/// The real router on a free port against a fresh database.
pub struct TestApp {
    pub base_url: String,
    pub db: TestDb,
    pub client: reqwest::Client,
    /// The key the app seals secrets with, for a worker of the same deployment.
    pub secret_key: domain::secret_box::SecretKey,
}

impl TestApp {
    /// An app whose AWS endpoint is a closed port: for tests that make no AWS call.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, api::HttpSettings::default(), aws_access("http://127.0.0.1:9", None).await).await
    }

    pub async fn spawn_with(
        backend: Backend,
        settings: api::HttpSettings,
        aws: Arc<api::AwsAccess>,
    ) -> Option<TestApp> {
        Self::spawn_full(backend, settings, aws, false).await
    }

    /// An app whose rules may send webhooks to private addresses (the tests' own receivers).
    pub async fn spawn_allowing_private_targets(backend: Backend) -> Option<TestApp> {
        let aws = aws_access("http://127.0.0.1:9", None).await;
        Self::spawn_full(backend, api::HttpSettings::default(), aws, true).await
    }

    async fn spawn_full(
        backend: Backend,
        settings: api::HttpSettings,
        aws: Arc<api::AwsAccess>,
        allow_private_targets: bool,
    ) -> Option<TestApp> {
        let db = TestDb::new(backend).await?;
        Some(Self::spawn_on_db(db, settings, aws, allow_private_targets).await)
    }

    /// The router on a free port against `db`, which other processes may use too.
    pub async fn spawn_on(db: TestDb) -> TestApp {
        Self::spawn_on_db(db, api::HttpSettings::default(), aws_access("http://127.0.0.1:9", None).await, false).await
    }

    async fn spawn_on_db(
        db: TestDb,
        settings: api::HttpSettings,
        aws: Arc<api::AwsAccess>,
        allow_private_targets: bool,
    ) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let webhooks = app::WebhookSettings { allow_private_targets, ..webhooks(&base_url) };
        let secret_key = webhooks.secret_key.clone();
        let state = api::AppState::new(db.store.clone(), aws, std::time::Duration::from_secs(20 * 60), webhooks);
        let app = api::router(state, &settings);
        tokio::spawn(async move { api::serve(listener, app, &settings, std::future::pending()).await });
        TestApp { base_url, db, client: reqwest::Client::new(), secret_key }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn org(&self, name: &str) -> TestOrg {
        create_org(self.db.store.as_ref(), name).await
    }

    /// Sends a request and returns the status and the JSON body (`Null` when there is none).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method.parse().expect("method"), self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(token), Some(body)).await
    }

    /// Another API server on the same database, as another `api` process (or this one after a
    /// restart) would be: its own app, with nothing of this one's memory. Returns its base URL.
    pub async fn another_server(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let aws = aws_access("http://127.0.0.1:9", None).await;
        let webhooks = app::WebhookSettings { secret_key: self.secret_key.clone(), ..webhooks(&base_url) };
        let settings = api::HttpSettings::default();
        let state = api::AppState::new(self.db.store.clone(), aws, std::time::Duration::from_secs(20 * 60), webhooks);
        let app = api::router(state, &settings);
        tokio::spawn(async move { api::serve(listener, app, &settings, std::future::pending()).await });
        base_url
    }
}

/// The real CloudTrail records in `../shared/data/cloudtrail/` (MIT: invictus-ir/aws_dataset and
/// OTRF/Security-Datasets), beside the repository as on every developer's machine and in CI.
/// `../shared` beside the repository: the real records and payloads the tests read.
pub fn shared_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

pub fn cloudtrail_records(set: &str) -> Vec<serde_json::Value> {
    let dir = shared_dir().join("data/cloudtrail").join(set);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!("the test data {} is missing ({e}); it lives in ../shared beside the repository", dir.display())
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut records = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(doc) if doc.get("Records").is_some() => {
                records.extend(doc["Records"].as_array().unwrap().iter().cloned())
            }
            _ => {
                records.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()))
            }
        }
    }
    records
}

/// The time a record places itself at (`eventTime`, or Logstash's `@timestamp`).
pub fn record_time(record: &serde_json::Value) -> Option<time::OffsetDateTime> {
    let text = record.get("eventTime").or(record.get("@timestamp"))?.as_str()?;
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// Puts records into the stand-in's trail for `account`/`region`, moved so the newest ends at
/// `newest_at`, visible after `lag`. Returns the EventIds an import of changes must store.
pub fn seed(
    standin: &aws_standin::Standin,
    account: &str,
    region: &str,
    records: &[serde_json::Value],
    newest_at: time::OffsetDateTime,
    lag: impl Fn(usize) -> time::Duration,
) -> Vec<String> {
    let newest = records.iter().filter_map(record_time).max().expect("records with times");
    let shift = newest_at - newest;
    let mut expected = Vec::new();
    let mut events = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let Some(event) = aws_standin::StandinEvent::from_record(record, shift, lag(i)) else { continue };
        if record.get("readOnly").and_then(|v| v.as_bool()) != Some(true) {
            expected.push(record["eventID"].as_str().expect("these records have IDs").to_owned());
        }
        events.push(event);
    }
    standin.add_events(account, region, events);
    expected.sort();
    expected.dedup();
    expected
}

/// Runs the same query on whichever backend `url` names (for checks no API answers yet).
macro_rules! on_pool {
    ($url:expr, |$pool:ident| $body:expr) => {
        if $url.starts_with("sqlite") {
            let $pool = sqlx::SqlitePool::connect($url).await.expect("open the test database");
            $body
        } else {
            let $pool = sqlx::PgPool::connect($url).await.expect("open the test database");
            $body
        }
    };
}

/// The source keys of every CloudTrail event stored for an organisation, sorted; an event stored
/// twice would appear twice.
pub async fn stored_source_keys(url: &str, org_id: Uuid) -> Vec<String> {
    let sql = "SELECT source_key FROM events WHERE org_id = $1 AND source = 'aws.cloudtrail' ORDER BY source_key";
    let rows: Vec<(String,)> =
        on_pool!(url, |pool| sqlx::query_as(sql).bind(org_id).fetch_all(&pool).await.expect("read events"));
    rows.into_iter().map(|(k,)| k).collect()
}

/// Every source row as the database holds it, as text: to check what is stored in the clear.
pub async fn stored_sources(url: &str) -> String {
    let sql = "SELECT name, CAST(settings AS TEXT), CAST(secrets AS TEXT) FROM sources";
    let rows: Vec<(String, String, String)> =
        on_pool!(url, |pool| sqlx::query_as(sql).fetch_all(&pool).await.expect("read sources"));
    rows.into_iter().map(|(a, b, c)| format!("{a} {b} {c}")).collect::<Vec<_>>().join("\n")
}

/// How many events are linked to an environment.
pub async fn linked_count(url: &str, environment_id: Uuid) -> i64 {
    let sql = "SELECT COUNT(*) FROM event_environments WHERE environment_id = $1";
    let (n,): (i64,) =
        on_pool!(url, |pool| sqlx::query_as(sql).bind(environment_id).fetch_one(&pool).await.expect("count links"));
    n
}

/// The lowered title and resources an event's links carry for the `q` and `resource` filters
/// (migration 0021), one pair a link.
pub async fn link_text_copies(url: &str, event_id: Uuid) -> Vec<(Option<String>, Option<String>)> {
    let sql = "SELECT title_lowered, resources_lowered FROM event_environments WHERE event_id = $1";
    on_pool!(url, |pool| sqlx::query_as(sql).bind(event_id).fetch_all(&pool).await.expect("read link copies"))
}

/// Empties every link's text copies, as links written before migration 0021 (by a binary still
/// running during an upgrade) have them.
pub async fn forget_link_text_copies(url: &str) {
    let sql = "UPDATE event_environments SET title_lowered = NULL, resources_lowered = NULL";
    on_pool!(url, |pool| {
        sqlx::query(sql).execute(&pool).await.expect("empty link copies");
    })
}

/// Takes the database back to its schema before migration 0021 (no link copies, the link table's
/// key without included columns), keeping its data, so that connecting again runs 0021–0023 on
/// links that exist: an upgrade, as a database of an earlier release gets it.
pub async fn undo_link_text_copies(url: &str) {
    let postgres = [
        "ALTER TABLE event_environments DROP CONSTRAINT event_environments_pkey",
        "ALTER TABLE event_environments ADD PRIMARY KEY (environment_id, occurred_at, event_id)",
        "ALTER TABLE event_environments DROP COLUMN title_lowered, DROP COLUMN resources_lowered",
        "DELETE FROM _sqlx_migrations WHERE version >= 21",
    ];
    let sqlite = [
        "ALTER TABLE event_environments DROP COLUMN title_lowered",
        "ALTER TABLE event_environments DROP COLUMN resources_lowered",
        "DELETE FROM _sqlx_migrations WHERE version >= 21",
    ];
    on_pool!(url, |pool| {
        let statements: &[&str] = if url.starts_with("sqlite") { &sqlite } else { &postgres };
        for sql in statements {
            sqlx::query(sql).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    })
}

/// How many facet rows (the value filters' index) an environment has.
pub async fn facet_count(url: &str, environment_id: Uuid) -> i64 {
    let sql = "SELECT COUNT(*) FROM event_facets WHERE environment_id = $1";
    let (n,): (i64,) =
        on_pool!(url, |pool| sqlx::query_as(sql).bind(environment_id).fetch_one(&pool).await.expect("count facets"));
    n
}

/// The problems of every flagged event of an organisation.
pub async fn flagged_problems(url: &str, org_id: Uuid) -> Vec<String> {
    let sql = "SELECT details FROM events WHERE org_id = $1";
    let rows: Vec<(sqlx::types::Json<serde_json::Value>,)> =
        on_pool!(url, |pool| sqlx::query_as(sql).bind(org_id).fetch_all(&pool).await.expect("read events"));
    rows.into_iter()
        .filter(|(d,)| d.0["flagged"] == serde_json::Value::Bool(true))
        .map(|(d,)| {
            d.0["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap_or("")).collect::<Vec<_>>().join("; ")
        })
        .collect()
}

/// EventIds of the change records that `seed` placed within `window` of `newest_at`.
pub fn ids_newer_than(
    records: &[serde_json::Value],
    newest_at: time::OffsetDateTime,
    window: time::Duration,
) -> Vec<String> {
    let newest = records.iter().filter_map(record_time).max().expect("records with times");
    records
        .iter()
        .filter(|r| r.get("readOnly").and_then(|v| v.as_bool()) != Some(true))
        .filter(|r| record_time(r).is_some_and(|t| t + (newest_at - newest) >= newest_at - window))
        .filter_map(|r| r["eventID"].as_str().map(str::to_owned))
        .collect()
}
