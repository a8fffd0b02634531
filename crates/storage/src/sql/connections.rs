//! AWS connections: settings, generated external IDs, registered roles.

use async_trait::async_trait;
use domain::connection::ConnectionProblem;
use domain::connection::{CredentialSource, NewMember};
use domain::import::JobPlan;
use domain::store::{Connections, StoreResult};
use domain::time_util::{from_micros, now, to_micros};
use domain::token::TokenHash;
use domain::{Connection, ConnectionSettings, ExternalId, Page, PageRequest, RegisteredRole};
use sqlx::query::QueryAs;
use sqlx::types::Json;
use sqlx::{Database, Encode, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use super::imports::{remove_other_jobs, upsert_jobs};
use crate::rows::{backend, db_error, ConnectionRow, CONNECTION_COLUMNS};
use crate::SqlStore;

fn insert_sql() -> String {
    format!(
        "INSERT INTO connections (id, org_id, name, regions, default_environment, environment_rules, lookback_days,
             include_read_only, enabled, event_filter, session_duration_seconds, external_id, status, created_at,
             updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending_role', $13, $13)
         RETURNING {CONNECTION_COLUMNS}"
    )
}

fn update_settings_sql() -> String {
    format!(
        "UPDATE connections SET name = $3, regions = $4, default_environment = $5, environment_rules = $6,
             lookback_days = $7, include_read_only = $8, enabled = $9, event_filter = $10,
             session_duration_seconds = $11, updated_at = $12
         WHERE org_id = $1 AND id = $2 RETURNING {CONNECTION_COLUMNS}"
    )
}

fn insert_organization_sql() -> String {
    format!(
        "INSERT INTO connections (id, org_id, name, regions, default_environment, environment_rules, lookback_days,
             include_read_only, enabled, event_filter, session_duration_seconds, external_id, status, created_at,
             updated_at, kind, member_role_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending_role', $13, $13, 'organization', $14)
         RETURNING {CONNECTION_COLUMNS}"
    )
}

/// A listed account's member: created with its parent's settings, or its name and status
/// brought up to date (nothing else: an admin may have changed its settings).
const UPSERT_MEMBER: &str =
    "INSERT INTO connections (id, org_id, name, regions, default_environment, environment_rules,
         lookback_days, include_read_only, enabled, event_filter, session_duration_seconds, external_id, status,
         created_at, updated_at, kind, parent_id, role_arn, account_id, member_account_name, member_account_status)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending_role', $13, $13, 'member', $14, $15, $16,
         $17, $18)
     ON CONFLICT (parent_id, account_id) WHERE parent_id IS NOT NULL
     DO UPDATE SET member_account_name = excluded.member_account_name,
         member_account_status = excluded.member_account_status
     RETURNING id";

fn claim_discovery_sql(lock: &str) -> String {
    format!(
        "UPDATE connections SET discovery_owner = $2, discovery_leased_until = $3
         WHERE id = (SELECT j.id FROM connections j
                     WHERE j.discovery_due_at <= $1 AND j.kind = 'organization' AND j.status = 'active'
                       AND (j.discovery_leased_until IS NULL OR j.discovery_leased_until < $1)
                     ORDER BY j.discovery_due_at LIMIT 1 {lock})
           AND (discovery_leased_until IS NULL OR discovery_leased_until < $1 OR discovery_owner = $2)
         RETURNING org_id, id"
    )
}

fn register_role_sql() -> String {
    format!(
        "UPDATE connections SET status = 'active', role_arn = $3, account_id = $4, assumed_role_arn = $5, role_via = $7,
             validated_at = $6, last_error_code = NULL, last_error_message = NULL, last_error_at = NULL,
             updated_at = $6, credentials = $8,
             discovery_due_at = CASE WHEN kind = 'organization' THEN $6 ELSE discovery_due_at END
         WHERE org_id = $1 AND id = $2 RETURNING {CONNECTION_COLUMNS}"
    )
}

fn record_problem_sql() -> String {
    format!(
        "UPDATE connections SET last_error_code = $3, last_error_message = $4, last_error_at = $5,
             status = CASE WHEN $6 THEN 'error' ELSE status END, updated_at = $5
         WHERE org_id = $1 AND id = $2 RETURNING {CONNECTION_COLUMNS}"
    )
}

/// Binds the settings an admin chooses, in the order both the INSERT and the UPDATE name them
/// (after two leading binds).
fn bind_settings<'q, DB, O>(
    query: QueryAs<'q, DB, O, <DB as Database>::Arguments<'q>>,
    settings: &'q ConnectionSettings,
) -> QueryAs<'q, DB, O, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    &'q String: Encode<'q, DB> + Type<DB>,
    Json<&'q Vec<String>>: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Json<&'q Vec<domain::EnvironmentRule>>: Encode<'q, DB> + Type<DB>,
    Json<&'q domain::noise::EventFilter>: Encode<'q, DB> + Type<DB>,
    i32: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
{
    query
        .bind(&settings.name)
        .bind(Json(&settings.regions))
        .bind(settings.default_environment.as_ref().map(|s| s.as_str()))
        .bind(Json(&settings.environment_rules))
        .bind(i32::from(settings.lookback_days))
        .bind(settings.include_read_only)
        .bind(settings.enabled)
        .bind(Json(&settings.event_filter))
        .bind(settings.session_duration_seconds as i32)
}

#[async_trait]
impl Connections for SqlStore {
    async fn create_connection(
        &self,
        org_id: Uuid,
        settings: &ConnectionSettings,
        external_id: &ExternalId,
    ) -> StoreResult<Connection> {
        let (id, at, sql) = (Uuid::now_v7(), to_micros(now()), insert_sql());
        let row: ConnectionRow = on_pool!(self, |pool: Db| {
            bind_settings(sqlx::query_as(&sql).bind(id).bind(org_id), settings)
                .bind(external_id.as_str())
                .bind(at)
                .fetch_one(pool)
                .await
        })
        .map_err(db_error("a connection with this external ID already exists"))?;
        row.try_into()
    }

    async fn list_connections(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<Connection>> {
        let select = format!("SELECT {CONNECTION_COLUMNS} FROM connections");
        let rows: Vec<ConnectionRow> = self.org_page(&select, org_id, page).await?;
        let items = rows.into_iter().map(TryInto::try_into).collect::<StoreResult<Vec<Connection>>>()?;
        Ok(Page::from_overfetch(items, page, |c: &Connection| c.id))
    }

    async fn get_connection(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<Option<Connection>> {
        let sql = format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE org_id = $1 AND id = $2");
        let row: Option<ConnectionRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as(&sql).bind(org_id).bind(connection_id).fetch_optional(pool).await
        })
        .map_err(backend)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn update_connection_settings(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        settings: &ConnectionSettings,
    ) -> StoreResult<Option<Connection>> {
        let (at, sql) = (to_micros(now()), update_settings_sql());
        let row: Option<ConnectionRow> = on_pool!(self, |pool: Db| {
            bind_settings(sqlx::query_as(&sql).bind(org_id).bind(connection_id), settings)
                .bind(at)
                .fetch_optional(pool)
                .await
        })
        .map_err(backend)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn delete_connection(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<bool> {
        let deleted = on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            // An organisation connection's members go with it (ON DELETE CASCADE), and so do
            // the events they imported.
            sqlx::query(
                "DELETE FROM events WHERE org_id = $1 AND connection_id IN
                     (SELECT id FROM connections WHERE org_id = $1 AND parent_id = $2)",
            )
            .bind(org_id)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
            let deleted = sqlx::query("DELETE FROM connections WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(connection_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            if deleted {
                sqlx::query("DELETE FROM events WHERE org_id = $1 AND connection_id = $2")
                    .bind(org_id)
                    .bind(connection_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await.map(|()| deleted)
        })
        .map_err(backend)?;
        self.timeline_written();
        Ok(deleted)
    }

    async fn register_role(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        role: &RegisteredRole,
    ) -> StoreResult<Option<Connection>> {
        let (sql, at) = (register_role_sql(), to_micros(now()));
        // Active and scheduled in one transaction: an active connection always has its jobs.
        // The first statement writes, so SQLite takes the write lock at once.
        let connection: Option<Connection> = on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            let row: Option<ConnectionRow> = sqlx::query_as(&sql)
                .bind(org_id)
                .bind(connection_id)
                .bind(&role.role_arn)
                .bind(&role.account_id)
                .bind(&role.assumed_role_arn)
                .bind(to_micros(role.validated_at))
                .bind(Json(&role.via))
                .bind(match role.credentials {
                    CredentialSource::Role => "role",
                    CredentialSource::Service => "service",
                })
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else { return Ok(None) };
            let connection = Connection::try_from(row).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            if let Some(plan) = JobPlan::for_connection(&connection, from_micros(at)) {
                remove_other_jobs::<Db>(connection_id, &plan).build().execute(&mut *tx).await?;
                upsert_jobs::<Db>(org_id, connection_id, &plan, at).build().execute(&mut *tx).await?;
            }
            tx.commit().await.map(|()| Some(connection))
        })
        .map_err(backend)?;
        Ok(connection)
    }

    async fn record_connection_problem(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        problem: &ConnectionProblem,
        mark_error: bool,
    ) -> StoreResult<Option<Connection>> {
        let sql = record_problem_sql();
        let row: Option<ConnectionRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as(&sql)
                .bind(org_id)
                .bind(connection_id)
                .bind(&problem.code)
                .bind(&problem.message)
                .bind(to_micros(problem.at))
                .bind(mark_error)
                .fetch_optional(pool)
                .await
        })
        .map_err(backend)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn connections_of_account(&self, org_id: Uuid, account_id: &str) -> StoreResult<Vec<Connection>> {
        let sql =
            format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE org_id = $1 AND account_id = $2 ORDER BY id");
        let rows: Vec<ConnectionRow> =
            on_pool!(self, |pool: Db| sqlx::query_as(&sql).bind(org_id).bind(account_id).fetch_all(pool).await)
                .map_err(backend)?;
        rows.into_iter().map(Connection::try_from).collect()
    }

    async fn count_excluded_event(&self, org_id: Uuid, connection_id: Uuid, source_key: &str) -> StoreResult<()> {
        let keys = [source_key.to_owned()];
        on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            count_excluded!(tx, org_id, connection_id, &keys);
            tx.commit().await
        })
        .map_err(backend)
    }

    async fn set_push_secret(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        hash: &TokenHash,
    ) -> StoreResult<Option<Connection>> {
        let at = to_micros(now());
        let sql = format!(
            "UPDATE connections SET push_secret_hash = $3, push_secret_created_at = $4, updated_at = $4
             WHERE org_id = $1 AND id = $2 RETURNING {CONNECTION_COLUMNS}"
        );
        let row: Option<ConnectionRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as(&sql)
                .bind(org_id)
                .bind(connection_id)
                .bind(hash.0.to_vec())
                .bind(at)
                .fetch_optional(pool)
                .await
        })
        .map_err(backend)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn connection_for_push(&self, connection_id: Uuid) -> StoreResult<Option<Connection>> {
        let sql = format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1");
        let row: Option<ConnectionRow> =
            on_pool!(self, |pool: Db| sqlx::query_as(&sql).bind(connection_id).fetch_optional(pool).await)
                .map_err(backend)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn create_organization_connection(
        &self,
        org_id: Uuid,
        settings: &ConnectionSettings,
        external_id: &ExternalId,
        member_role_name: &str,
    ) -> StoreResult<Connection> {
        let (id, at, sql) = (Uuid::now_v7(), to_micros(now()), insert_organization_sql());
        let row: ConnectionRow = on_pool!(self, |pool: Db| {
            bind_settings(sqlx::query_as(&sql).bind(id).bind(org_id), settings)
                .bind(external_id.as_str())
                .bind(at)
                .bind(member_role_name)
                .fetch_one(pool)
                .await
        })
        .map_err(db_error("a connection with this external ID already exists"))?;
        row.try_into()
    }

    async fn sync_members(
        &self,
        org_id: Uuid,
        parent_id: Uuid,
        members: &[NewMember],
        at: OffsetDateTime,
    ) -> StoreResult<Vec<Connection>> {
        let at = to_micros(at);
        on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            // Every member is LEFT until the listing names it again.
            sqlx::query("UPDATE connections SET member_account_status = 'LEFT' WHERE org_id = $1 AND parent_id = $2")
                .bind(org_id)
                .bind(parent_id)
                .execute(&mut *tx)
                .await?;
            for member in members {
                let query = sqlx::query_as::<_, (Uuid,)>(UPSERT_MEMBER).bind(Uuid::now_v7()).bind(org_id);
                bind_settings(query, &member.settings)
                    .bind(member.external_id.as_str())
                    .bind(at)
                    .bind(parent_id)
                    .bind(&member.role_arn)
                    .bind(&member.account.id)
                    .bind(&member.account.name)
                    .bind(&member.account.status)
                    .fetch_one(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "UPDATE connections SET discovered_at = $3, discovery_error = NULL WHERE org_id = $1 AND id = $2",
            )
            .bind(org_id)
            .bind(parent_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
        .map_err(backend)?;
        self.list_members(org_id, parent_id).await
    }

    async fn list_members(&self, org_id: Uuid, parent_id: Uuid) -> StoreResult<Vec<Connection>> {
        let sql =
            format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE org_id = $1 AND parent_id = $2 ORDER BY id");
        let rows: Vec<ConnectionRow> =
            on_pool!(self, |pool: Db| sqlx::query_as(&sql).bind(org_id).bind(parent_id).fetch_all(pool).await)
                .map_err(backend)?;
        rows.into_iter().map(Connection::try_from).collect()
    }

    async fn mark_settings_overridden(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<()> {
        on_pool!(self, |pool: Db| {
            sqlx::query("UPDATE connections SET settings_overridden = TRUE WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(connection_id)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(backend)
    }

    async fn organizations_on_service_credentials(&self) -> StoreResult<Vec<Uuid>> {
        let rows: Vec<(Uuid,)> = on_pool!(self, |pool: Db| {
            sqlx::query_as("SELECT DISTINCT org_id FROM connections WHERE credentials = 'service'")
                .fetch_all(pool)
                .await
        })
        .map_err(backend)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn request_discovery(&self, org_id: Uuid, connection_id: Uuid, at: OffsetDateTime) -> StoreResult<()> {
        on_pool!(self, |pool: Db| {
            sqlx::query(
                "UPDATE connections SET discovery_due_at = $3 WHERE org_id = $1 AND id = $2 AND kind = 'organization'",
            )
            .bind(org_id)
            .bind(connection_id)
            .bind(to_micros(at))
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(backend)
    }

    async fn claim_discovery(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> StoreResult<Option<(Uuid, Uuid)>> {
        let sql = claim_discovery_sql(self.claim_lock());
        on_pool!(self, |pool: Db| {
            sqlx::query_as(&sql)
                .bind(to_micros(now))
                .bind(owner)
                .bind(to_micros(lease_until))
                .fetch_optional(pool)
                .await
        })
        .map_err(backend)
    }

    async fn finish_discovery(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        owner: &str,
        next_due_at: OffsetDateTime,
        error: Option<&str>,
    ) -> StoreResult<()> {
        on_pool!(self, |pool: Db| {
            sqlx::query(
                "UPDATE connections SET discovery_due_at = $4, discovery_owner = NULL, discovery_leased_until = NULL,
                     discovery_error = $5
                 WHERE org_id = $1 AND id = $2 AND discovery_owner = $3",
            )
            .bind(org_id)
            .bind(connection_id)
            .bind(owner)
            .bind(to_micros(next_due_at))
            .bind(error)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(backend)
    }
}
