//! AWS connections: settings, generated external IDs, registered roles.

use async_trait::async_trait;
use domain::connection::ConnectionProblem;
use domain::import::JobPlan;
use domain::store::{Connections, StoreResult};
use domain::time_util::{from_micros, now, to_micros};
use domain::token::TokenHash;
use domain::{Connection, ConnectionSettings, ExternalId, Page, PageRequest, RegisteredRole};
use sqlx::query::QueryAs;
use sqlx::types::Json;
use sqlx::{Database, Encode, Type};
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

fn register_role_sql() -> String {
    format!(
        "UPDATE connections SET status = 'active', role_arn = $3, account_id = $4, assumed_role_arn = $5, role_via = $7,
             validated_at = $6, last_error_code = NULL, last_error_message = NULL, last_error_at = NULL,
             updated_at = $6
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
        on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
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
        .map_err(backend)
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
}
