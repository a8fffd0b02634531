use std::io::Write;

use anyhow::Context;
use changetrail::config::Config;
use changetrail::{
    aws_access, bootstrap, init_logging, open_store, parse_scopes, serve_api, shutdown_token, Bootstrap,
};
use clap::{Parser, Subcommand};
use domain::TokenSecret;
use uuid::Uuid;

/// mimalloc, not glibc's malloc: a timeline page is thousands of small allocations (its rows'
/// strings, their JSON), and under load glibc's malloc and free were a quarter of the server's
/// CPU (BENCHMARKS.md, issue 16).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// changetrail: what changed? One timeline per environment of AWS CloudTrail changes, deploys,
/// pull requests and alerts. Configuration comes from CHANGETRAIL_* variables (see the README).
#[derive(Parser)]
#[command(name = "changetrail", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The API and the worker in one process: the way to run on a single machine.
    Serve,
    /// Only the HTTP API.
    Api,
    /// Only the background worker.
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Organisations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Try changetrail without AWS: a stand-in seeded with real CloudTrail records, the API and
    /// the worker, an environment and an active connection; prints the curl of the timeline.
    #[cfg(feature = "standin")]
    Demo,
    /// Tools for trying changetrail without AWS.
    #[cfg(feature = "standin")]
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[cfg(feature = "standin")]
#[derive(Subcommand)]
enum DevCommand {
    /// Serve a local stand-in for AWS STS and CloudTrail; point AWS_ENDPOINT_URL at it.
    AwsStandin {
        #[arg(long, default_value = "127.0.0.1:4566")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organisation and print its first admin token.
    Create { name: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for an organisation and print it.
    Create {
        /// The organisation's id.
        #[arg(long)]
        org: Uuid,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Comma-separated: read, write, admin.
        #[arg(long, default_value = "admin")]
        scopes: String,
    },
}

/// The worker's jobs: the importer, the outbox delivery and the organisations' discovery.
fn spawn_background(
    config: &Config,
    store: std::sync::Arc<dyn domain::Store>,
    aws: std::sync::Arc<api::AwsAccess>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let importer = worker::Importer::new(store.clone(), aws.aws.clone(), config.import.clone());
    let deliverer = worker::Deliverer::new(store.clone(), config.deliveries()?).map_err(anyhow::Error::msg)?;
    let app = app::App::new(store, aws, config.import.overlap, config.webhooks()?);
    let discoverer = worker::Discoverer::new(app, config.discovery_interval);
    Ok(vec![
        tokio::spawn(importer.run(shutdown.clone())),
        tokio::spawn(deliverer.run(shutdown.clone())),
        tokio::spawn(discoverer.run(shutdown.clone())),
    ])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => {
            println!("{}", api::openapi_document().to_pretty_json()?);
            return Ok(());
        }
        #[cfg(feature = "standin")]
        Command::Dev { command: DevCommand::AwsStandin { listen } } => {
            return changetrail::dev::run_standin(listen).await
        }
        #[cfg(feature = "standin")]
        Command::Demo => {
            let config = Config::from_env()?;
            init_logging(&config);
            return changetrail::dev::run_demo(config).await;
        }
        _ => {}
    }
    let config = Config::from_env()?;
    init_logging(&config);
    let store = open_store(&config).await?;
    match cli.command {
        Command::Openapi => unreachable!("handled above"),
        #[cfg(feature = "standin")]
        Command::Dev { .. } | Command::Demo => unreachable!("handled above"),
        Command::Migrate => {
            println!("migrations applied");
            Ok(())
        }
        Command::Serve | Command::Api => {
            announce_bootstrap(bootstrap(store.as_ref(), config.bootstrap_token.as_deref()).await?, &config);
            let aws = aws_access(&config).await;
            let shutdown = shutdown_token();
            let worker = if matches!(cli.command, Command::Serve) {
                Some(spawn_background(&config, store.clone(), aws.clone(), &shutdown)?)
            } else {
                None
            };
            serve_api(&config, store, aws, shutdown.clone().cancelled_owned()).await?;
            shutdown.cancel();
            if let Some(tasks) = worker {
                for task in tasks {
                    task.await.context("a background job failed")?;
                }
            }
            Ok(())
        }
        Command::Worker => {
            let aws = changetrail::aws_access(&config).await;
            let shutdown = shutdown_token();
            for task in spawn_background(&config, store, aws, &shutdown)? {
                task.await.context("a background job failed")?;
            }
            Ok(())
        }
        Command::Org { command: OrgCommand::Create { name } } => {
            let name = domain::validation::text("name", &name, domain::organization::MAX_NAME_CHARS)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let org = store.create_organization(&name).await?;
            let secret = TokenSecret::generate();
            store
                .create_token(org.id, "first admin", &domain::Scopes::admin(), &secret.display_prefix(), &secret.hash())
                .await?;
            println!("organisation {} ({})\nadmin token (shown once): {}", org.name, org.id, secret.expose());
            Ok(())
        }
        Command::Token { command: TokenCommand::Create { org, name, scopes } } => {
            let scopes = parse_scopes(&scopes)?;
            store.get_organization(org).await?.with_context(|| format!("no organisation {org}"))?;
            let secret = TokenSecret::generate();
            let token = store.create_token(org, &name, &scopes, &secret.display_prefix(), &secret.hash()).await?;
            println!("token {} ({})\nsecret (shown once): {}", token.id, scopes.to_stored(), secret.expose());
            Ok(())
        }
    }
}

/// The first admin token goes to stdout once, never to the log.
fn announce_bootstrap(outcome: Bootstrap, config: &Config) {
    if let Bootstrap::Created { org_id, secret, chosen } = outcome {
        let mut out = std::io::stdout().lock();
        if chosen {
            let _ =
                writeln!(out, "Created organisation {org_id} with the admin token from CHANGETRAIL_BOOTSTRAP_TOKEN.");
        } else {
            let _ = writeln!(
                out,
                "Created organisation {org_id}. Its admin token, shown only this once:\n\n    {}\n",
                secret.expose()
            );
            let _ = writeln!(
                out,
                "Use it like this:\n\n    curl -H \"Authorization: Bearer {}\" http://{}/v1/environments\n\n\
                 or sign in to the web view at http://{}/ui/ with it.\n",
                secret.expose(),
                config.listen,
                config.listen
            );
        }
        let _ = out.flush();
    }
}
