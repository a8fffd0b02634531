//! The connection lifecycle: create, change settings, register and re-validate the role,
//! import status, sync, delete.

use domain::connection::{self, ConnectionProblem, SettingsPatch};
use domain::import::JobPlan;
use domain::{Connection, ConnectionSettings, ConnectionStatus, ExternalId, FieldError, Invalid};
use domain::{RegisteredRole, RoleArn};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{App, AppError, AppResult, Refusal};

/// The role an admin registers: one ARN, or a chain of roles assumed in turn.
pub enum RoleInput<'a> {
    Arn(&'a str),
    Chain(&'a [String]),
}

/// The import of one region of a connection, as an admin follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionImport {
    pub job: domain::import::ImportJob,
    /// `scheduled`, `running`, `backfilling` or `failing`.
    pub status: &'static str,
    /// Events up to this time are complete: the end of the last fully walked window, less the
    /// re-scan overlap that catches late deliveries.
    pub checkpoint: OffsetDateTime,
}

fn invalid_role(invalid: Invalid) -> AppError {
    let detail = match invalid.0.as_slice() {
        [one] => format!("{}: {}", one.field, one.message),
        many => format!("{} fields are invalid", many.len()),
    };
    AppError::Refused { kind: Refusal::Unacceptable, code: "invalid_role_arn", detail, errors: invalid.0 }
}

impl App {
    pub async fn connection(&self, org_id: Uuid, id: Uuid) -> AppResult<Connection> {
        self.store.get_connection(org_id, id).await?.ok_or(AppError::NotFound("connection"))
    }

    /// A new connection with a generated external ID, waiting for its role.
    pub async fn create_connection(&self, org_id: Uuid, patch: SettingsPatch) -> AppResult<Connection> {
        let settings = ConnectionSettings::new_connection().apply(patch)?;
        self.check_environments(org_id, &settings).await?;
        Ok(self.store.create_connection(org_id, &settings, &ExternalId::generate()).await?)
    }

    /// New settings; a change of rules re-links the stored events in the background.
    pub async fn update_connection(&self, org_id: Uuid, id: Uuid, patch: SettingsPatch) -> AppResult<Connection> {
        let existing = self.connection(org_id, id).await?;
        let mut settings = existing.settings.apply(patch);
        if let (Ok(s), Some(role)) =
            (&settings, existing.role_arn.as_deref().and_then(|a| RoleArn::parse("role_arn", a).ok()))
        {
            if let Err(clash) = connection::check_regions_in_partition(&role, &s.regions) {
                settings = Err(clash);
            }
        }
        let settings = settings?;
        self.check_environments(org_id, &settings).await?;
        if let Some(account_id) = existing.account_id.as_deref() {
            self.check_no_overlap(org_id, existing.id, account_id, &settings.regions).await?;
        }
        let updated = self
            .store
            .update_connection_settings(org_id, existing.id, &settings)
            .await?
            .ok_or(AppError::NotFound("connection"))?;
        if updated.settings.links_differ(&existing.settings) {
            self.store.request_relink(org_id, updated.id).await?;
        }
        self.schedule(&updated).await?;
        Ok(updated)
    }

    pub async fn delete_connection(&self, org_id: Uuid, id: Uuid) -> AppResult<()> {
        match self.store.delete_connection(org_id, id).await? {
            true => Ok(()),
            false => Err(AppError::NotFound("connection")),
        }
    }

    /// Validates a role in AWS and registers it; nothing is registered when a check fails.
    /// `role` is either one role's ARN or a chain of 1–5 roles assumed in turn (the last one's
    /// account is imported).
    pub async fn register_role(&self, org_id: Uuid, id: Uuid, role: RoleInput<'_>) -> AppResult<Connection> {
        let connection = self.connection(org_id, id).await?;
        let (via, role) = match role {
            RoleInput::Arn(arn) => (Vec::new(), RoleArn::parse("role_arn", arn).map_err(invalid_role)?),
            RoleInput::Chain(chain) => {
                let mut chain = connection::parse_role_chain(chain).map_err(invalid_role)?;
                let last = chain.pop().expect("a parsed chain has a role");
                (chain, last)
            }
        };
        // At registration the ARN is what the admin just gave, so a partition clash is its error.
        connection::check_regions_in_partition(&role, &connection.settings.regions).map_err(|clash| {
            let regions = clash.0.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
            invalid_role(Invalid::one(
                "role_arn",
                format!("the role's partition does not hold this connection's regions: {regions}"),
            ))
        })?;
        self.check_no_overlap(org_id, connection.id, &role.account_id, &connection.settings.regions).await?;
        self.validate(&connection, &via, &role, false).await
    }

    /// Re-runs the role's checks; a role that stopped working puts the connection in `error`.
    pub async fn validate_connection(&self, org_id: Uuid, id: Uuid) -> AppResult<Connection> {
        let connection = self.connection(org_id, id).await?;
        let Some(role) = connection.role_arn.as_deref().and_then(|arn| RoleArn::parse("role_arn", arn).ok()) else {
            return Err(AppError::refused(
                Refusal::Conflict,
                "no_role",
                "this connection has no role yet; register one with PUT /v1/connections/{id}/role",
            ));
        };
        let via: Vec<RoleArn> =
            connection.role_via.iter().filter_map(|arn| RoleArn::parse("role_chain", arn).ok()).collect();
        self.validate(&connection, &via, &role, true).await
    }

    pub async fn connection_imports(&self, org_id: Uuid, id: Uuid) -> AppResult<Vec<RegionImport>> {
        let connection = self.connection(org_id, id).await?;
        let now = domain::time_util::now();
        let jobs = self.store.list_import_jobs(org_id, connection.id).await?;
        Ok(jobs
            .into_iter()
            .map(|job| RegionImport {
                status: job.status(now),
                checkpoint: job.scanned_until - self.import_overlap,
                job,
            })
            .collect())
    }

    /// Makes every region of an active connection due now.
    pub async fn sync_connection(&self, org_id: Uuid, id: Uuid) -> AppResult<()> {
        let connection = self.active_connection(org_id, id).await?;
        self.store.request_import(org_id, connection.id).await?;
        Ok(())
    }

    /// Walks an active connection's `lookback_days` again, now: what its filter or its
    /// read-only setting dropped before and lets through now is stored; the rest, already
    /// stored, stays stored once.
    pub async fn reimport_connection(&self, org_id: Uuid, id: Uuid) -> AppResult<()> {
        let connection = self.active_connection(org_id, id).await?;
        let start = domain::time_util::now() - time::Duration::days(i64::from(connection.settings.lookback_days));
        self.store.restart_imports(org_id, connection.id, start).await?;
        Ok(())
    }

    async fn active_connection(&self, org_id: Uuid, id: Uuid) -> AppResult<Connection> {
        let connection = self.connection(org_id, id).await?;
        if connection.status != ConnectionStatus::Active {
            return Err(AppError::refused(
                Refusal::Conflict,
                "not_active",
                "only an active connection imports; register a working role first",
            ));
        }
        Ok(connection)
    }

    /// changetrail's own AWS identity, which trust policies name.
    pub async fn service_principal(&self) -> AppResult<String> {
        self.aws.principal().await.map_err(|e| {
            AppError::refused(
                Refusal::Upstream,
                "aws_unavailable",
                format!("changetrail's own AWS identity could not be found with GetCallerIdentity ({e}); set CHANGETRAIL_AWS_PRINCIPAL_ARN"),
            )
        })
    }

    async fn check_environments(&self, org_id: Uuid, settings: &ConnectionSettings) -> AppResult<()> {
        self.require_environments(org_id, &Connection::referenced_environments(settings)).await
    }

    /// Two connections to one account may not import the same region: they would race and
    /// double the calls against the account's 2-per-second LookupEvents budget.
    async fn check_no_overlap(&self, org_id: Uuid, id: Uuid, account_id: &str, regions: &[String]) -> AppResult<()> {
        for other in self.store.connections_of_account(org_id, account_id).await? {
            let shared: Vec<&str> =
                other.settings.regions.iter().filter(|r| regions.contains(r)).map(String::as_str).collect();
            if other.id != id && !shared.is_empty() {
                let list = shared.join(", ");
                return Err(AppError::Refused {
                    kind: Refusal::Unacceptable,
                    code: "region_overlap",
                    detail: format!(
                        "connection {:?} ({}) already imports {list} of account {account_id}; give this connection other regions",
                        other.settings.name, other.id
                    ),
                    errors: vec![FieldError { field: "regions".into(), message: format!("{list} already imported by {}", other.id) }],
                });
            }
        }
        Ok(())
    }

    /// Each region of a connection with a role gets its import job (a backfill first).
    async fn schedule(&self, connection: &Connection) -> AppResult<()> {
        if let Some(plan) = JobPlan::for_connection(connection, domain::time_util::now()) {
            self.store.schedule_imports(connection.org_id, connection.id, &plan).await?;
        }
        Ok(())
    }

    /// Runs the checks; on success registers the role, on failure records why. `registered`
    /// says whether this re-checks a role already in use (whose failure puts the connection in
    /// error).
    async fn validate(
        &self,
        connection: &Connection,
        via: &[RoleArn],
        role: &RoleArn,
        registered: bool,
    ) -> AppResult<Connection> {
        let principal = self.aws.principal().await.unwrap_or_else(|_| "changetrail's principal".to_owned());
        let region = connection.settings.regions.first().map(String::as_str).unwrap_or("us-east-1");
        let session = aws::session_name(connection.id);
        let duration = std::time::Duration::from_secs(u64::from(connection.settings.session_duration_seconds));
        let outcome =
            self.aws.aws.validate_role(via, role, connection.external_id.as_str(), &session, region, duration).await;
        let (org_id, id) = (connection.org_id, connection.id);
        match outcome {
            Ok(validated) => {
                let registration = RegisteredRole {
                    role_arn: role.to_string(),
                    via: via.iter().map(ToString::to_string).collect(),
                    account_id: role.account_id.clone(),
                    assumed_role_arn: validated.assumed_role_arn,
                    validated_at: domain::time_util::now(),
                };
                let updated = self
                    .store
                    .register_role(org_id, id, &registration)
                    .await?
                    .ok_or(AppError::NotFound("connection"))?;
                self.schedule(&updated).await?;
                tracing::info!(connection = %id, role = %role, "role registered");
                Ok(updated)
            }
            Err(failure) => {
                let detail = failure.detail(role, &principal);
                let transient = matches!(failure, aws::RoleCheckFailure::Unavailable(_));
                let problem = ConnectionProblem {
                    code: failure.code().to_owned(),
                    message: detail.clone(),
                    at: domain::time_util::now(),
                };
                self.store.record_connection_problem(org_id, id, &problem, registered && !transient).await?;
                tracing::info!(connection = %id, role = %role, code = failure.code(), "role validation failed");
                let kind = if transient { Refusal::Upstream } else { Refusal::Unacceptable };
                Err(AppError::refused(kind, failure.code(), detail))
            }
        }
    }
}
