//! changetrail's benchmarks. Each prints its figures as ratios or rates measured in one run, so
//! a noisy shared machine moves both sides of a comparison together. See BENCHMARKS.md.
//!
//!   cargo run --release -p changetrail-bench -- pacing
//!   cargo run --release -p changetrail-bench -- fleet [REGIONS] [SECONDS]
//!   cargo run --release -p changetrail-bench -- organization [ACCOUNTS] [REGIONS] [SECONDS]  (PostgreSQL: CHANGETRAIL_BENCH_DATABASE_URL)
//!   cargo run --release -p changetrail-bench -- throughput [EVENTS]     (PostgreSQL: CHANGETRAIL_BENCH_DATABASE_URL)
//!   cargo run --release -p changetrail-bench -- timeline [EVENTS]       (PostgreSQL or sqlite://FILE: CHANGETRAIL_BENCH_DATABASE_URL)
//!   cargo run --release -p changetrail-bench -- push [SECONDS]          (PostgreSQL: CHANGETRAIL_BENCH_DATABASE_URL)
//!   cargo run --release -p changetrail-bench -- channels [SECONDS]      (PostgreSQL: CHANGETRAIL_BENCH_DATABASE_URL)
//!   cargo run --release -p changetrail-bench -- rules [DELIVERIES]      (PostgreSQL: CHANGETRAIL_BENCH_DATABASE_URL)
//!   cargo run --release -p changetrail-bench -- normalize [PASSES]

use std::time::Instant;

use anyhow::Context;
use aws_standin::{Identity, RoleSpec, Standin};
use domain::connection::ConnectionSettings;
use domain::{ExternalId, RegisteredRole, Store};
use serde_json::Value;
use uuid::Uuid;

/// mimalloc, not glibc's malloc: a timeline page is thousands of small allocations (its rows'
/// strings, their JSON), and under load glibc's malloc and free were a quarter of the server's
/// CPU (BENCHMARKS.md, issue 16). The benchmarks serve the API in their own process, so they
/// use the service's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod channels;
mod importer;
mod normalize;
mod push;
mod rules;
mod timeline;

pub(crate) const KEY: &str = "AKIABENCHSERVICE0001";
pub(crate) const SECRET: &str = "bench-secret";
pub(crate) const PRINCIPAL: &str = "arn:aws:iam::111111111111:role/changetrail";

pub(crate) fn records() -> anyhow::Result<Vec<Value>> {
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

pub(crate) async fn standin() -> anyhow::Result<aws_standin::RunningStandin> {
    let standin = Standin::new();
    standin.add_identity(Identity {
        access_key_id: KEY.into(),
        secret_access_key: SECRET.into(),
        arn: PRINCIPAL.into(),
        principal: PRINCIPAL.into(),
    });
    Ok(standin.start("127.0.0.1:0".parse()?).await?)
}

pub(crate) async fn aws_for(url: &str) -> aws::Aws {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(KEY, SECRET, None, None, "bench"));
    aws::Aws::from_loader(loader).await
}

/// An active connection of a fresh organisation to `account`, importing `regions`.
pub(crate) async fn connection(
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
        event_filter: Default::default(),
        session_duration_seconds: 3600,
    };
    let c = store.create_connection(org.id, &settings, &ExternalId::generate()).await?;
    let role = format!("arn:aws:iam::{account}:role/reader");
    standin.add_role(RoleSpec::reader(role.clone(), PRINCIPAL, Some(c.external_id.as_str().into())));
    let registered = RegisteredRole {
        role_arn: Some(role),
        via: vec![],
        account_id: account.into(),
        assumed_role_arn: String::new(),
        validated_at: domain::time_util::now(),
        credentials: domain::connection::CredentialSource::Role,
    };
    let active = store.register_role(org.id, c.id, &registered).await?.expect("the connection exists");
    let plan =
        domain::import::JobPlan::for_connection(&active, domain::time_util::now()).expect("a role is registered");
    store.schedule_imports(org.id, c.id, &plan).await?;
    Ok((org.id, c.id))
}

pub(crate) fn temp_sqlite() -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("changetrail-bench-{}", Uuid::now_v7()));
    storage::default_sqlite_url(&dir)
}

/// (CPU seconds used by this process, peak resident memory in MiB), from /proc.
pub(crate) fn cpu_and_peak_memory() -> (f64, f64) {
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

/// Percentile of sorted milliseconds.
pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) async fn timed<F: std::future::Future<Output = anyhow::Result<usize>>>(
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("pacing") => importer::pacing().await,
        Some("organization") => {
            importer::organization(
                args.get(1).map_or(Ok(500), |s| s.parse())?,
                args.get(2).map_or(Ok(20), |s| s.parse())?,
                args.get(3).map_or(Ok(660), |s| s.parse())?,
            )
            .await
        }
        Some("fleet") => {
            importer::fleet(args.get(1).map_or(Ok(500), |s| s.parse())?, args.get(2).map_or(Ok(90), |s| s.parse())?)
                .await
        }
        Some("throughput") => importer::throughput(args.get(1).map_or(Ok(20_000), |s| s.parse())?).await,
        Some("timeline") => timeline::timeline(args.get(1).map_or(Ok(10_000_000), |s| s.parse())?).await,
        Some("push") => push::push(args.get(1).map_or(Ok(20), |s| s.parse())?).await,
        Some("channels") => channels::channels(args.get(1).map_or(Ok(20), |s| s.parse())?).await,
        Some("normalize") => normalize::normalize(args.get(1).map_or(Ok(20), |s| s.parse())?),
        Some("rules") => rules::rules(args.get(1).map_or(Ok(5000), |s| s.parse())?).await,
        _ => anyhow::bail!(
            "usage: changetrail-bench pacing | fleet [REGIONS] [SECONDS] | organization [ACCOUNTS] [REGIONS] [SECONDS] | throughput [EVENTS] | timeline [EVENTS] | push [SECONDS] | channels [SECONDS] | rules [DELIVERIES] | normalize [PASSES]"
        ),
    }
}
