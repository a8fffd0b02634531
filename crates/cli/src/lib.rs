//! The `changetrail` binary's commands, as a library so tests can run them in-process.

pub mod config;
#[cfg(feature = "standin")]
pub mod dev;

use std::sync::Arc;

use anyhow::Context;
use domain::{Scope, Scopes, Store, TokenSecret};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::config::{Config, LogFormat};

pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: escape codes would litter files and log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url()?;
    // A query outliving its request would go on loading the database for nobody.
    storage::connect_with(&url, storage::StoreSettings { statement_timeout: config.request_timeout }).await
}

/// What bootstrapping an empty database did.
pub enum Bootstrap {
    /// The database already had an organisation.
    AlreadyDone,
    /// A default organisation was created with this admin token; `chosen` if it came from
    /// `CHANGETRAIL_BOOTSTRAP_TOKEN`.
    Created { org_id: Uuid, secret: TokenSecret, chosen: bool },
}

/// On an empty database: a default organisation and its first admin token.
pub async fn bootstrap(store: &dyn Store, chosen_token: Option<&str>) -> anyhow::Result<Bootstrap> {
    if store.organization_exists().await? {
        return Ok(Bootstrap::AlreadyDone);
    }
    let (secret, chosen) = match chosen_token {
        Some(token) => (TokenSecret::chosen(token).map_err(|e| anyhow::anyhow!("{e}"))?, true),
        None => (TokenSecret::generate(), false),
    };
    // Two processes starting at once on an empty database both get here; one creates it.
    match store.bootstrap_organization("default", &secret.display_prefix(), &secret.hash()).await? {
        Some(org) => Ok(Bootstrap::Created { org_id: org.id, secret, chosen }),
        None => Ok(Bootstrap::AlreadyDone),
    }
}

/// Whether the environment configures AWS for this process (rather than leaving aws-config to
/// probe the instance metadata service).
fn aws_configured() -> bool {
    const VARIABLES: &[&str] = &[
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_STS",
    ];
    VARIABLES.iter().any(|v| std::env::var_os(v).is_some())
        || std::env::var_os("HOME").is_some_and(|home| std::path::Path::new(&home).join(".aws").exists())
}

/// aws-config's standard configuration from the environment. Without any AWS configuration the
/// region is given, because aws-config would otherwise ask the instance metadata service for
/// one; STS answers in any region, and every CloudTrail call names its own.
pub async fn aws_from_env() -> aws::Aws {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if !aws_configured() && std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        loader = loader.region(aws_config::Region::from_static("us-east-1"));
    }
    aws::Aws::from_loader(loader).await
}

/// The service's AWS access, configured by aws-config from the environment. Where the
/// environment configures AWS, its own identity is looked up now so that a problem shows at
/// start; on a machine with no AWS configuration it is looked up when first needed, so that
/// starting changetrail never probes the instance metadata service for nothing.
pub async fn aws_access(config: &Config) -> Arc<api::AwsAccess> {
    let configured = aws_configured();
    let aws = aws_from_env().await;
    let access = Arc::new(
        api::AwsAccess::new(aws, config.aws_principal_arn.clone(), config.cfn_template_url.clone())
            .with_service_credentials(config.allow_service_credentials),
    );
    if config.aws_principal_arn.is_none() && !configured {
        tracing::info!("no AWS configuration in the environment: changetrail's own AWS identity will be looked up when an admin first connects an account");
        return access;
    }
    match access.principal().await {
        Ok(principal) => tracing::info!(%principal, "customers' trust policies will name this AWS principal"),
        Err(e) => tracing::warn!(
            error = %e,
            "changetrail's own AWS identity is unknown: set AWS credentials or CHANGETRAIL_AWS_PRINCIPAL_ARN before connecting accounts"
        ),
    }
    access
}

/// Runs the API until SIGTERM or SIGINT, then lets in-flight requests finish.
pub async fn serve_api(
    config: &Config,
    store: Arc<dyn Store>,
    aws: Arc<api::AwsAccess>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let settings = config.http();
    let state = api::AppState::new(store, aws, config.import.overlap, config.webhooks()?)
        .remembering_pages_for(config.timeline_pages_for);
    let app = api::router(state, &settings);
    tracing::info!(address = %config.listen, "API listening");
    api::serve(listener, app, &settings, shutdown).await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}

/// Cancelled on SIGTERM or SIGINT: the API stops accepting, the worker finishes its pages.
pub fn shutdown_token() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

/// Parses `read,write` and the like.
pub fn parse_scopes(text: &str) -> anyhow::Result<Scopes> {
    let scopes = text
        .split(',')
        .map(|s| Scope::parse(s.trim()).ok_or_else(|| anyhow::anyhow!("unknown scope {s:?}: use read, write or admin")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Scopes::new(scopes).map_err(|e| anyhow::anyhow!("{e}"))
}
