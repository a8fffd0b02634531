//! One configuration for every process, read from the environment and, optionally, a file of
//! `KEY=value` lines named by `CHANGETRAIL_CONFIG`. The environment wins over the file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderValue;

/// A configuration variable, its default and what it means: the README's table and the
/// docker-compose test are checked against this list.
pub struct Variable {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

pub const VARIABLES: &[Variable] = &[
    Variable { name: "CHANGETRAIL_LISTEN", default: "127.0.0.1:8080", meaning: "address the API listens on" },
    Variable {
        name: "CHANGETRAIL_DATABASE_URL",
        default: "SQLite file in CHANGETRAIL_DATA_DIR",
        meaning: "`sqlite://PATH` or `postgres://…`",
    },
    Variable { name: "CHANGETRAIL_DATA_DIR", default: "./data", meaning: "where the embedded SQLite database lives" },
    Variable {
        name: "CHANGETRAIL_BOOTSTRAP_TOKEN",
        default: "none (a random one is printed)",
        meaning: "the first admin token of an empty database (at least 24 characters)",
    },
    Variable {
        name: "CHANGETRAIL_AWS_PRINCIPAL_ARN",
        default: "found with GetCallerIdentity",
        meaning: "the identity customers' trust policies name (changetrail's own role or user)",
    },
    Variable {
        name: "CHANGETRAIL_CFN_TEMPLATE_URL",
        default: "none",
        meaning: "where you published `crates/api/templates/cloudformation.yaml` in S3; enables the setup's quick-create link",
    },
    Variable {
        name: "CHANGETRAIL_PUBLIC_URL",
        default: "http:// and CHANGETRAIL_LISTEN",
        meaning: "where GitHub and PagerDuty reach this server: the base of each source's `ingest_url`",
    },
    Variable {
        name: "CHANGETRAIL_SECRET_KEY",
        default: "generated into CHANGETRAIL_DATA_DIR/secret.key",
        meaning: "base64 of 32 bytes: seals the webhook secrets stored in the database (keep it with your backups)",
    },
    Variable {
        name: "CHANGETRAIL_PAGERDUTY_URL",
        default: "https://events.pagerduty.com",
        meaning: "PagerDuty's Events API v2, where rules' `pagerduty_alert` and `pagerduty_change` actions go",
    },
    Variable {
        name: "CHANGETRAIL_ALLOW_PRIVATE_TARGETS",
        default: "false",
        meaning: "`true` lets rules' webhooks reach private, loopback and link-local addresses and plain http (a private network; tests)",
    },
    Variable {
        name: "CHANGETRAIL_ALLOW_SERVICE_CREDENTIALS",
        default: "false",
        meaning: "`true` lets one organisation import the account of changetrail's own AWS identity with it (`credentials: service`, no role): for a changetrail run by and for one organisation",
    },
    Variable {
        name: "CHANGETRAIL_DISCOVERY_INTERVAL",
        default: "1h",
        meaning: "how often each organisation connection's accounts are listed (new members, suspended and departed accounts)",
    },
    Variable { name: "CHANGETRAIL_IMPORT_INTERVAL", default: "5m", meaning: "how often each region is brought up to date" },
    Variable { name: "CHANGETRAIL_IMPORT_OVERLAP", default: "20m", meaning: "how far behind its checkpoint each run re-scans (LookupEvents delivers late)" },
    Variable { name: "CHANGETRAIL_IMPORT_LEASE", default: "60s", meaning: "how long a dead worker's regions stay claimed before another worker takes them" },
    Variable { name: "CHANGETRAIL_WORKER_CONCURRENCY", default: "16", meaning: "account-regions one worker imports at once" },
    Variable {
        name: "CHANGETRAIL_CORS_ORIGINS",
        default: "none",
        meaning: "frontend origins allowed by CORS, comma-separated",
    },
    Variable {
        name: "CHANGETRAIL_BODY_LIMIT",
        default: "1048576",
        meaning: "largest request body accepted, in bytes (larger is 413)",
    },
    Variable {
        name: "CHANGETRAIL_REQUEST_TIMEOUT",
        default: "30s",
        meaning: "longest a request may take before it is answered 503 `timeout`; the database stops its query then too",
    },
    Variable {
        name: "CHANGETRAIL_TIMELINE_PAGES_FOR",
        default: "1s",
        meaning: "how long a timeline page read for one caller answers the organisation's same request again, unless this process writes first (0s: read each anew; at most 60s)",
    },
    Variable {
        name: "CHANGETRAIL_HEADER_READ_TIMEOUT",
        default: "10s",
        meaning: "a connection whose request headers (or next request) take longer is closed",
    },
    Variable {
        name: "CHANGETRAIL_MAX_CONNECTIONS",
        default: "1024",
        meaning: "HTTP connections served at once; more wait to be accepted",
    },
    Variable {
        name: "CHANGETRAIL_LOG",
        default: "info",
        meaning: "log filter, in `tracing` env-filter syntax (e.g. `info,changetrail_api=debug`)",
    },
    Variable { name: "CHANGETRAIL_LOG_FORMAT", default: "text", meaning: "`text` or `json`" },
    Variable {
        name: "CHANGETRAIL_CONFIG",
        default: "none",
        meaning: "a file of `KEY=value` lines offering any of these variables; the environment wins",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub bootstrap_token: Option<String>,
    pub aws_principal_arn: Option<String>,
    pub cfn_template_url: Option<String>,
    pub public_url: String,
    /// `CHANGETRAIL_SECRET_KEY`, read; `None` means the key file in the data directory.
    pub secret_key: Option<domain::secret_box::SecretKey>,
    pub import: worker::ImportSettings,
    pub pagerduty_url: String,
    pub allow_private_targets: bool,
    pub allow_service_credentials: bool,
    pub discovery_interval: Duration,
    pub cors_origins: Vec<HeaderValue>,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    /// How long `app::pages` remembers a timeline page.
    pub timeline_pages_for: Duration,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub log_filter: String,
    pub log_format: LogFormat,
}

impl Config {
    /// Reads the process environment (and the `CHANGETRAIL_CONFIG` file, if any).
    pub fn from_env() -> anyhow::Result<Config> {
        let env: HashMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("CHANGETRAIL_")).collect();
        let file = match env.get("CHANGETRAIL_CONFIG") {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read CHANGETRAIL_CONFIG {path}: {e}"))?;
                parse_file(&text)?
            }
            None => HashMap::new(),
        };
        Config::from_lookup(|key| env.get(key).or_else(|| file.get(key)).cloned())
            .map_err(|errors| anyhow::anyhow!(errors.join("; ")))
    }

    /// Builds the configuration from any source of values, reporting every bad value at once.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, Vec<String>> {
        let mut errors = Vec::new();
        let parse = |name: &str, default: &str| -> String {
            debug_assert!(VARIABLES.iter().any(|v| v.name == name), "{name} is missing from VARIABLES");
            get(name).filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_owned())
        };
        let listen_text = parse("CHANGETRAIL_LISTEN", "127.0.0.1:8080");
        let database_url = Some(parse("CHANGETRAIL_DATABASE_URL", "")).filter(|s| !s.is_empty());
        let data_dir = PathBuf::from(parse("CHANGETRAIL_DATA_DIR", "./data"));
        let bootstrap_token = Some(parse("CHANGETRAIL_BOOTSTRAP_TOKEN", "")).filter(|s| !s.is_empty());
        let aws_principal_arn = Some(parse("CHANGETRAIL_AWS_PRINCIPAL_ARN", "")).filter(|s| !s.is_empty());
        let cfn_template_url = Some(parse("CHANGETRAIL_CFN_TEMPLATE_URL", "")).filter(|s| !s.is_empty());
        let public_url_text = parse("CHANGETRAIL_PUBLIC_URL", "");
        let secret_key_text = parse("CHANGETRAIL_SECRET_KEY", "");
        let secret_key = (!secret_key_text.is_empty())
            .then(|| domain::secret_box::SecretKey::from_base64(&secret_key_text))
            .transpose()
            .unwrap_or_else(|e| {
                errors.push(format!(
                    "CHANGETRAIL_SECRET_KEY {e}: give base64 of 32 random bytes (openssl rand -base64 32)"
                ));
                None
            });
        let pagerduty_url = parse("CHANGETRAIL_PAGERDUTY_URL", "https://events.pagerduty.com");
        if !(pagerduty_url.starts_with("https://") || pagerduty_url.starts_with("http://")) {
            errors.push(format!("CHANGETRAIL_PAGERDUTY_URL: {pagerduty_url:?} is not an http(s):// URL"));
        }
        let allow_private_text = parse("CHANGETRAIL_ALLOW_PRIVATE_TARGETS", "false");
        let allow_private_targets = match allow_private_text.as_str() {
            "true" => true,
            "false" => false,
            other => {
                errors.push(format!("CHANGETRAIL_ALLOW_PRIVATE_TARGETS: {other:?} is neither true nor false"));
                false
            }
        };
        let allow_service_text = parse("CHANGETRAIL_ALLOW_SERVICE_CREDENTIALS", "false");
        let allow_service_credentials = match allow_service_text.as_str() {
            "true" => true,
            "false" => false,
            other => {
                errors.push(format!("CHANGETRAIL_ALLOW_SERVICE_CREDENTIALS: {other:?} is neither true nor false"));
                false
            }
        };
        let discovery_text = parse("CHANGETRAIL_DISCOVERY_INTERVAL", "1h");
        let discovery_interval =
            parse_duration(&discovery_text).filter(|d| *d >= Duration::from_secs(60)).unwrap_or_else(|| {
                errors.push(format!(
                    "CHANGETRAIL_DISCOVERY_INTERVAL: {discovery_text:?} is not a duration of at least 1m"
                ));
                Duration::from_secs(3600)
            });
        let interval_text = parse("CHANGETRAIL_IMPORT_INTERVAL", "5m");
        let overlap_text = parse("CHANGETRAIL_IMPORT_OVERLAP", "20m");
        let concurrency_text = parse("CHANGETRAIL_WORKER_CONCURRENCY", "16");
        let lease_text = parse("CHANGETRAIL_IMPORT_LEASE", "60s");
        let cors_text = parse("CHANGETRAIL_CORS_ORIGINS", "");
        let body_limit_text = parse("CHANGETRAIL_BODY_LIMIT", "1048576");
        let timeout_text = parse("CHANGETRAIL_REQUEST_TIMEOUT", "30s");
        let pages_for_text = parse("CHANGETRAIL_TIMELINE_PAGES_FOR", "1s");
        let header_timeout_text = parse("CHANGETRAIL_HEADER_READ_TIMEOUT", "10s");
        let max_connections_text = parse("CHANGETRAIL_MAX_CONNECTIONS", "1024");
        let log_filter = parse("CHANGETRAIL_LOG", "info");
        let log_format_text = parse("CHANGETRAIL_LOG_FORMAT", "text");

        let listen = listen_text.parse().unwrap_or_else(|_| {
            errors.push(format!("CHANGETRAIL_LISTEN: {listen_text:?} is not an address like 127.0.0.1:8080"));
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        if let Some(arn) = &aws_principal_arn {
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            if parts.len() != 6 || parts[0] != "arn" || parts[2] != "iam" {
                errors.push(format!("CHANGETRAIL_AWS_PRINCIPAL_ARN: {arn:?} is not an IAM ARN like arn:aws:iam::111111111111:role/changetrail"));
            }
        }
        if let Some(url) = &cfn_template_url {
            if !url.starts_with("https://") {
                errors
                    .push(format!("CHANGETRAIL_CFN_TEMPLATE_URL: {url:?} must be an https:// URL (an S3 object URL)"));
            }
        }
        let cors_origins = cors_text
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .filter_map(|origin| match HeaderValue::from_str(origin) {
                Ok(v) if origin.starts_with("http://") || origin.starts_with("https://") => Some(v),
                _ => {
                    errors.push(format!(
                        "CHANGETRAIL_CORS_ORIGINS: {origin:?} is not an origin like https://app.example.com"
                    ));
                    None
                }
            })
            .collect();
        let body_limit_bytes = body_limit_text.parse::<usize>().ok().filter(|n| *n >= 1024).unwrap_or_else(|| {
            errors.push(format!("CHANGETRAIL_BODY_LIMIT: {body_limit_text:?} is not a number of bytes ≥ 1024"));
            1024 * 1024
        });
        let request_timeout = parse_duration(&timeout_text).unwrap_or_else(|| {
            errors.push(format!("CHANGETRAIL_REQUEST_TIMEOUT: {timeout_text:?} is not a duration like 30s, 5m or 2h"));
            Duration::from_secs(30)
        });
        let timeline_pages_for =
            parse_duration(&pages_for_text).filter(|d| *d <= Duration::from_secs(60)).unwrap_or_else(|| {
                errors.push(format!(
                    "CHANGETRAIL_TIMELINE_PAGES_FOR: {pages_for_text:?} is not a duration from 0s to 60s, like 1s or 500ms"
                ));
                app::PAGES_FRESH_FOR
            });
        let header_read_timeout = parse_duration(&header_timeout_text).filter(|d| !d.is_zero()).unwrap_or_else(|| {
            errors.push(format!(
                "CHANGETRAIL_HEADER_READ_TIMEOUT: {header_timeout_text:?} is not a duration like 10s or 1m"
            ));
            Duration::from_secs(10)
        });
        let max_connections = max_connections_text.parse::<usize>().ok().filter(|n| *n >= 1).unwrap_or_else(|| {
            errors.push(format!("CHANGETRAIL_MAX_CONNECTIONS: {max_connections_text:?} is not a number ≥ 1"));
            1024
        });
        let mut import = worker::ImportSettings::default();
        match parse_duration(&interval_text) {
            Some(d) if d >= Duration::from_secs(1) => import.interval = d,
            _ => {
                errors.push(format!("CHANGETRAIL_IMPORT_INTERVAL: {interval_text:?} is not a duration of at least 1s"))
            }
        }
        match parse_duration(&overlap_text) {
            Some(d) => import.overlap = d,
            None => errors.push(format!("CHANGETRAIL_IMPORT_OVERLAP: {overlap_text:?} is not a duration like 20m")),
        }
        match parse_duration(&lease_text) {
            Some(d) if d >= Duration::from_secs(1) => import.lease = d,
            _ => errors.push(format!("CHANGETRAIL_IMPORT_LEASE: {lease_text:?} is not a duration of at least 1s")),
        }
        match concurrency_text.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => import.concurrency = n,
            _ => errors
                .push(format!("CHANGETRAIL_WORKER_CONCURRENCY: {concurrency_text:?} is not a number from 1 to 1024")),
        }
        let log_format = match log_format_text.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                errors.push(format!("CHANGETRAIL_LOG_FORMAT: {other:?} is neither text nor json"));
                LogFormat::Text
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Config {
            listen,
            database_url,
            data_dir,
            bootstrap_token,
            aws_principal_arn,
            cfn_template_url,
            public_url: if public_url_text.is_empty() { format!("http://{listen}") } else { public_url_text },
            secret_key,
            import,
            pagerduty_url,
            allow_private_targets,
            allow_service_credentials,
            discovery_interval,
            cors_origins,
            body_limit_bytes,
            request_timeout,
            timeline_pages_for,
            header_read_timeout,
            max_connections,
            log_filter,
            log_format,
        })
    }

    pub fn database_url(&self) -> anyhow::Result<String> {
        match &self.database_url {
            Some(url) => Ok(url.clone()),
            None => storage::default_sqlite_url(&self.data_dir),
        }
    }

    /// The key webhook secrets are sealed with: `CHANGETRAIL_SECRET_KEY`, or the one in the data
    /// directory, generated there (readable by this user only) on first use.
    pub fn secret_key(&self) -> anyhow::Result<domain::secret_box::SecretKey> {
        use anyhow::Context;
        if let Some(key) = &self.secret_key {
            return Ok(key.clone());
        }
        let path = self.data_dir.join("secret.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => domain::secret_box::SecretKey::from_base64(&text)
                .map_err(|e| anyhow::anyhow!("{}: the secret key {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.data_dir)
                    .with_context(|| format!("cannot create data directory {}", self.data_dir.display()))?;
                let key = domain::secret_box::SecretKey::generate();
                write_private(&path, &key.to_base64()).with_context(|| format!("cannot write {}", path.display()))?;
                tracing::info!(path = %path.display(), "generated the key that seals webhook secrets; back it up with the database");
                Ok(key)
            }
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn webhooks(&self) -> anyhow::Result<app::WebhookSettings> {
        Ok(app::WebhookSettings {
            secret_key: self.secret_key()?,
            public_url: self.public_url.clone(),
            allow_private_targets: self.allow_private_targets,
        })
    }

    /// How the outbox of rules' matches is delivered.
    pub fn deliveries(&self) -> anyhow::Result<worker::DeliverySettings> {
        let mut settings = worker::DeliverySettings::new(self.secret_key()?);
        settings.pagerduty_url = self.pagerduty_url.clone();
        settings.allow_private_targets = self.allow_private_targets;
        // A lease outlives the longest attempt, so a live worker never loses a delivery it is
        // sending (which another would then send again).
        settings.lease = self.import.lease.max(settings.timeout * 2);
        Ok(settings)
    }

    pub fn http(&self) -> api::HttpSettings {
        api::HttpSettings {
            cors_origins: self.cors_origins.clone(),
            body_limit_bytes: self.body_limit_bytes,
            request_timeout: self.request_timeout,
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
        }
    }
}

/// Creates `path` readable and writable by this user only (where the platform has modes).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// `500ms`, `30s`, `5m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

fn parse_file(text: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut values = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("CHANGETRAIL_CONFIG line {}: expected KEY=value", n + 1))?;
        let key = key.trim();
        if !VARIABLES.iter().any(|v| v.name == key) {
            anyhow::bail!("CHANGETRAIL_CONFIG line {}: unknown variable {key}", n + 1);
        }
        values.insert(key.to_owned(), value.trim().trim_matches('"').to_owned());
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(config.timeline_pages_for, Duration::from_secs(1));
        assert!(config.database_url.is_none() && config.bootstrap_token.is_none() && config.cors_origins.is_empty());
    }

    #[test]
    fn every_bad_value_is_reported() {
        let bad = HashMap::from([
            ("CHANGETRAIL_LISTEN", "nowhere"),
            ("CHANGETRAIL_REQUEST_TIMEOUT", "soon"),
            ("CHANGETRAIL_TIMELINE_PAGES_FOR", "2m"),
            ("CHANGETRAIL_LOG_FORMAT", "xml"),
            ("CHANGETRAIL_CORS_ORIGINS", "https://ok.example,not-an-origin"),
        ]);
        let errors = Config::from_lookup(|k| bad.get(k).map(|v| v.to_string())).unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
    }

    #[test]
    fn file_values_are_read_and_unknown_keys_refused() {
        let values = parse_file("# comment\nCHANGETRAIL_LISTEN=0.0.0.0:9000\n").unwrap();
        assert_eq!(values["CHANGETRAIL_LISTEN"], "0.0.0.0:9000");
        assert!(parse_file("NOPE=1").is_err());
    }
}
