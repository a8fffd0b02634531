//! The connection lifecycle: create, change settings, register and re-validate the role,
//! import status, sync, delete.

use domain::connection::{self, ConnectionKind, ConnectionProblem, CredentialSource, NewMember, SettingsPatch};
use domain::import::JobPlan;
use domain::{Connection, ConnectionSettings, ConnectionStatus, ExternalId, FieldError, Invalid};
use domain::{RegisteredRole, RoleArn};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{App, AppError, AppResult, Refusal};

/// The role an admin registers: one ARN, a chain of roles assumed in turn, or changetrail's own
/// identity (no role).
pub enum RoleInput<'a> {
    Arn(&'a str),
    Chain(&'a [String]),
    Service,
}

/// The AWS account status of a member that imports.
const ACCOUNT_ACTIVE: &str = "ACTIVE";

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

    /// A new organisation connection: its role (registered next) lists the organisation's
    /// accounts, and each member account's `member_role_name` role is imported as a member.
    pub async fn create_organization_connection(
        &self,
        org_id: Uuid,
        patch: SettingsPatch,
        member_role_name: Option<&str>,
    ) -> AppResult<Connection> {
        let mut errors = Invalid::default();
        let settings = errors.check(ConnectionSettings::new_connection().apply(patch));
        let role_name = member_role_name.unwrap_or(connection::DEFAULT_MEMBER_ROLE_NAME);
        let role_name = errors.check(connection::parse_member_role_name(role_name));
        errors.into_result()?;
        let (Some(settings), Some(role_name)) = (settings, role_name) else { unreachable!("no errors") };
        self.check_environments(org_id, &settings).await?;
        Ok(self.store.create_organization_connection(org_id, &settings, &ExternalId::generate(), &role_name).await?)
    }

    /// New settings; a change of rules re-links the stored events in the background. A
    /// member's own settings stop following its organisation connection's; an organisation
    /// connection's new settings go to each member that has none of its own.
    pub async fn update_connection(&self, org_id: Uuid, id: Uuid, patch: SettingsPatch) -> AppResult<Connection> {
        let existing = self.connection(org_id, id).await?;
        let updated = self.apply_settings(&existing, patch).await?;
        match existing.kind {
            ConnectionKind::Member => self.store.mark_settings_overridden(org_id, id).await?,
            ConnectionKind::Organization => {
                for member in self.store.list_members(org_id, id).await? {
                    if !member.settings_overridden {
                        let settings =
                            ConnectionSettings { name: member.settings.name.clone(), ..updated.settings.clone() };
                        self.store_settings(&member, settings).await?;
                    }
                }
            }
            ConnectionKind::Account => {}
        }
        Ok(updated)
    }

    async fn apply_settings(&self, existing: &Connection, patch: SettingsPatch) -> AppResult<Connection> {
        let mut settings = existing.settings.apply(patch);
        if let (Ok(s), Some(role)) =
            (&settings, existing.role_arn.as_deref().and_then(|a| RoleArn::parse("role_arn", a).ok()))
        {
            if let Err(clash) = connection::check_regions_in_partition(&role, &s.regions) {
                settings = Err(clash);
            }
        }
        let settings = settings?;
        self.check_environments(existing.org_id, &settings).await?;
        if let (Some(account_id), false) =
            (existing.account_id.as_deref(), existing.kind == ConnectionKind::Organization)
        {
            self.check_no_overlap(existing.org_id, existing.id, account_id, &settings.regions).await?;
        }
        self.store_settings(existing, settings).await
    }

    /// Stores checked settings: re-links when the rules changed, and schedules the regions.
    async fn store_settings(&self, existing: &Connection, settings: ConnectionSettings) -> AppResult<Connection> {
        let updated = self
            .store
            .update_connection_settings(existing.org_id, existing.id, &settings)
            .await?
            .ok_or(AppError::NotFound("connection"))?;
        if updated.settings.links_differ(&existing.settings) {
            self.store.request_relink(updated.org_id, updated.id).await?;
        }
        self.schedule(&updated).await?;
        Ok(updated)
    }

    pub async fn delete_connection(&self, org_id: Uuid, id: Uuid) -> AppResult<()> {
        if self.connection(org_id, id).await?.kind == ConnectionKind::Member {
            return Err(AppError::refused(
                Refusal::Conflict,
                "organization_member",
                "this connection is a member of an organisation connection, and discovery would create it again; \
                 disable it (PATCH enabled: false) or delete the organisation connection",
            ));
        }
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
        if connection.kind == ConnectionKind::Member {
            return Err(AppError::refused(
                Refusal::Conflict,
                "organization_member",
                "a member's role is the organisation connection's member_role_name in its account, kept by discovery",
            ));
        }
        let (via, role) = match role {
            RoleInput::Service => return self.register_service_credentials(&connection).await,
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
        if connection.kind == ConnectionKind::Account {
            self.check_no_overlap(org_id, connection.id, &role.account_id, &connection.settings.regions).await?;
        }
        self.validate(&connection, &via, &role, false).await
    }

    /// `credentials: service`: the account of changetrail's own identity, read with that
    /// identity. Only where the operator allows it, and for one organisation.
    async fn register_service_credentials(&self, connection: &Connection) -> AppResult<Connection> {
        if !self.aws.allow_service_credentials {
            return Err(AppError::refused(
                Refusal::Forbidden,
                "service_credentials_disabled",
                "this changetrail does not import with its own AWS identity: that identity belongs to its operator. \
                 Register a role (role_arn or role_chain); an operator running changetrail for one organisation \
                 can allow it with CHANGETRAIL_ALLOW_SERVICE_CREDENTIALS=true",
            ));
        }
        if connection.kind != ConnectionKind::Account {
            return Err(AppError::refused(
                Refusal::Conflict,
                "service_credentials_not_for_organization",
                "an organisation connection needs a role in the management account; credentials: service reads one account",
            ));
        }
        let org_id = connection.org_id;
        if self.store.organizations_on_service_credentials().await?.iter().any(|other| *other != org_id) {
            return Err(AppError::refused(
                Refusal::Forbidden,
                "service_credentials_taken",
                "another organisation already imports with changetrail's own AWS identity; it serves one organisation",
            ));
        }
        let region = connection.settings.regions.first().map(String::as_str).unwrap_or("us-east-1");
        match self.aws.aws.validate_own_identity(region).await {
            Ok((arn, account_id)) => {
                self.check_no_overlap(org_id, connection.id, &account_id, &connection.settings.regions).await?;
                let registration = RegisteredRole {
                    role_arn: None,
                    via: Vec::new(),
                    account_id,
                    assumed_role_arn: arn,
                    validated_at: domain::time_util::now(),
                    credentials: CredentialSource::Service,
                };
                let updated = self
                    .store
                    .register_role(org_id, connection.id, &registration)
                    .await?
                    .ok_or(AppError::NotFound("connection"))?;
                tracing::info!(connection = %connection.id, "registered on changetrail's own identity");
                Ok(updated)
            }
            Err(failure) => {
                let transient = matches!(failure, aws::RoleCheckFailure::Unavailable(_));
                let detail = match &failure {
                    aws::RoleCheckFailure::LookupDenied { region, message } => format!(
                        "changetrail's own identity may not call cloudtrail:LookupEvents in {region} ({message}); \
                         attach the setup's permissions_policy to it"
                    ),
                    aws::RoleCheckFailure::Unavailable(message) => format!(
                        "AWS could not be reached or failed ({message}); nothing was registered. Try again shortly."
                    ),
                    other => format!("changetrail's own identity failed the {} check", other.code()),
                };
                let kind = if transient { Refusal::Upstream } else { Refusal::Unacceptable };
                Err(AppError::refused(kind, failure.code(), detail))
            }
        }
    }

    /// Lists an active organisation connection's accounts and brings its members up to date:
    /// a member per listed account (created with the parent's settings), each new or failing
    /// one validated with the six checks, suspended and departed accounts stopped with the
    /// reason. Returns the members.
    pub async fn discover_members(&self, org_id: Uuid, id: Uuid) -> AppResult<Vec<Connection>> {
        let parent = self.active_connection(org_id, id).await?;
        if parent.kind != ConnectionKind::Organization {
            return Err(AppError::refused(
                Refusal::Conflict,
                "not_organization",
                "only an organisation connection has members",
            ));
        }
        let chain = parent.role_chain()?;
        let partition = chain.last().map_or("aws", |r| r.partition.as_str()).to_owned();
        let duration = std::time::Duration::from_secs(u64::from(parent.settings.session_duration_seconds));
        let session = aws::session_name(parent.id);
        let upstream = |code: &'static str, detail: String| AppError::refused(Refusal::Upstream, code, detail);
        let credentials = self
            .aws
            .aws
            .assume_role_for_import(&chain, parent.external_id.as_str(), &session, duration)
            .await
            .map_err(|e| match e {
                aws::AssumeRoleFailure::Denied(m) | aws::AssumeRoleFailure::Failed(m) => {
                    upstream("assume_role_failed", m)
                }
            })?;
        let accounts = self
            .aws
            .aws
            .list_accounts(&credentials, &partition)
            .await
            .map_err(|e| upstream("list_accounts_failed", e.to_string()))?;
        let listed: Vec<NewMember> = accounts.iter().map(|account| NewMember::of(&parent, account)).collect();
        let members = self.store.sync_members(org_id, id, &listed, domain::time_util::now()).await?;
        for member in &members {
            self.settle_member(member).await?;
        }
        Ok(self.store.list_members(org_id, id).await?)
    }

    /// An organisation connection and its members.
    pub async fn connection_members(&self, org_id: Uuid, id: Uuid) -> AppResult<(Connection, Vec<Connection>)> {
        let parent = self.connection(org_id, id).await?;
        if parent.kind != ConnectionKind::Organization {
            return Err(AppError::refused(
                Refusal::Conflict,
                "not_organization",
                "only an organisation connection has members",
            ));
        }
        let members = self.store.list_members(org_id, id).await?;
        Ok((parent, members))
    }

    /// One member after a listing: an active account's member validated unless it already
    /// imports; any other's stopped with why.
    async fn settle_member(&self, member: &Connection) -> AppResult<()> {
        let account = member.account_id.as_deref().unwrap_or_default();
        let status = member.member_account.as_ref().map_or(ACCOUNT_ACTIVE, |a| a.status.as_str());
        let stopped = |code: &str, message: String| ConnectionProblem {
            code: code.to_owned(),
            message,
            at: domain::time_util::now(),
        };
        let problem = if status == ACCOUNT_ACTIVE {
            if member.status == ConnectionStatus::Active {
                return Ok(());
            }
            let Some(role) = member.role_arn.as_deref().and_then(|arn| RoleArn::parse("role_arn", arn).ok()) else {
                return Ok(());
            };
            match self.check_no_overlap(member.org_id, member.id, account, &member.settings.regions).await {
                Ok(()) => {
                    return match self.validate(member, &[], &role, member.status == ConnectionStatus::Error).await {
                        // A failed check is recorded on the member; only the store failing stops discovery.
                        Err(AppError::Store(e)) => Err(AppError::Store(e)),
                        _ => Ok(()),
                    };
                }
                Err(AppError::Refused { detail, .. }) => stopped("region_overlap", detail),
                Err(other) => return Err(other),
            }
        } else if status == connection::MEMBER_LEFT {
            stopped(
                "account_left_organization",
                format!(
                    "account {account} is no longer listed by the organisation's ListAccounts, so it is no longer \
                     imported; the events already imported stay on the timeline"
                ),
            )
        } else {
            stopped(
                "account_suspended",
                format!(
                    "AWS Organizations lists account {account} as {status}, so it is not imported; its import \
                     resumes when the account is ACTIVE again"
                ),
            )
        };
        let unchanged = member.status == ConnectionStatus::Error
            && member.last_error.as_ref().is_some_and(|e| e.code == problem.code);
        if !unchanged {
            self.store.record_connection_problem(member.org_id, member.id, &problem, true).await?;
        }
        Ok(())
    }

    /// Re-runs the role's checks; a role that stopped working puts the connection in `error`.
    pub async fn validate_connection(&self, org_id: Uuid, id: Uuid) -> AppResult<Connection> {
        let connection = self.connection(org_id, id).await?;
        if connection.credentials == CredentialSource::Service {
            return self.register_service_credentials(&connection).await;
        }
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

    /// Makes every region of an active connection due now (an organisation connection: its
    /// discovery).
    pub async fn sync_connection(&self, org_id: Uuid, id: Uuid) -> AppResult<()> {
        let connection = self.active_connection(org_id, id).await?;
        match connection.kind {
            ConnectionKind::Organization => {
                self.store.request_discovery(org_id, connection.id, domain::time_util::now()).await?
            }
            _ => {
                self.store.request_import(org_id, connection.id).await?;
            }
        }
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
            // An organisation connection's role is in an account it does not import.
            if other.id != id && other.kind != ConnectionKind::Organization && !shared.is_empty() {
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
        let purpose = match connection.kind {
            ConnectionKind::Organization => aws::RoleUse::ListAccounts,
            _ => aws::RoleUse::Import { lookup_region: region },
        };
        let outcome =
            self.aws.aws.validate_role(via, role, connection.external_id.as_str(), &session, purpose, duration).await;
        let (org_id, id) = (connection.org_id, connection.id);
        match outcome {
            Ok(validated) => {
                let registration = RegisteredRole {
                    role_arn: Some(role.to_string()),
                    via: via.iter().map(ToString::to_string).collect(),
                    account_id: role.account_id.clone(),
                    assumed_role_arn: validated.assumed_role_arn,
                    validated_at: domain::time_util::now(),
                    credentials: CredentialSource::Role,
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
