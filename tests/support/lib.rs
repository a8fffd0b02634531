//! What the tests share: a fresh database of either backend, and `TestApp`, the real router
//! served on a free port against such a database, talked to over HTTP.

use std::sync::Arc;

use domain::{Scopes, Store, TokenSecret};
use serde_json::Value;
use uuid::Uuid;

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

pub const SERVICE_ACCESS_KEY: &str = "AKIATESTSERVICE00001";
pub const SERVICE_SECRET: &str = "test-service-secret";
/// changetrail's own identity in the tests' AWS.
pub const SERVICE_PRINCIPAL: &str = "arn:aws:iam::111111111111:role/changetrail";

/// The service's AWS access as production builds it (aws-config's loader), with the endpoint,
/// region and credentials named explicitly so parallel tests can each have their own stand-in.
pub async fn aws_access(endpoint_url: &str, principal: Option<&str>) -> Arc<api::AwsAccess> {
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
    let aws = aws::Aws::from_loader(loader).await;
    Arc::new(api::AwsAccess::new(aws, principal.map(str::to_owned), None))
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
        let db = TestDb::new(backend).await?;
        let app = api::router(api::AppState { store: db.store.clone(), aws }, &settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum_serve(listener, app).await });
        Some(TestApp { base_url, db, client: reqwest::Client::new() })
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
}

async fn axum_serve(listener: tokio::net::TcpListener, app: axum::Router) {
    let _ = axum::serve(listener, app).await;
}
