//! Organisations, API tokens and environments.

use async_trait::async_trait;
use domain::store::{StoreResult, Tenants};
use domain::time_util::{now, to_micros};
use domain::token::TokenHash;
use domain::{ApiToken, Environment, EnvironmentPatch, EnvironmentRef, NewEnvironment, Organization};
use domain::{Page, PageRequest, Scopes};
use time::OffsetDateTime;
use uuid::Uuid;

use super::org_page_sql;
use crate::rows::{backend, db_error, EnvironmentRow, OrganizationRow, TokenRow};
use crate::SqlStore;

const TOKENS: &str = "SELECT id, org_id, name, scopes, prefix, secret_hash, created_at FROM api_tokens";
const ENVIRONMENTS: &str = "SELECT id, org_id, slug, name, description, created_at, updated_at FROM environments";

const INSERT_ORGANIZATION: &str =
    "INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3) RETURNING id, name, created_at";
const INSERT_TOKEN: &str = "INSERT INTO api_tokens (id, org_id, name, scopes, prefix, secret_hash, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     RETURNING id, org_id, name, scopes, prefix, secret_hash, created_at";
const INSERT_ENVIRONMENT: &str =
    "INSERT INTO environments (id, org_id, slug, name, description, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $6)
     RETURNING id, org_id, slug, name, description, created_at, updated_at";
/// Deletes a token unless it is the organisation's last admin token (in one statement, so two
/// deletions at once cannot both pass the check). Scopes are stored as `read,write,admin`.
const DELETE_TOKEN: &str = "DELETE FROM api_tokens WHERE org_id = $1 AND id = $2
     AND (',' || scopes || ',' NOT LIKE '%,admin,%'
          OR (SELECT COUNT(*) FROM api_tokens o WHERE o.org_id = $1 AND ',' || o.scopes || ',' LIKE '%,admin,%') > 1)";

const UPDATE_ENVIRONMENT: &str = "UPDATE environments SET
        slug = COALESCE($3, slug),
        name = COALESCE($4, name),
        description = CASE WHEN $5 THEN $6 ELSE description END,
        updated_at = $7
     WHERE org_id = $1 AND id = $2
     RETURNING id, org_id, slug, name, description, created_at, updated_at";

#[async_trait]
impl Tenants for SqlStore {
    async fn create_organization(&self, name: &str) -> StoreResult<Organization> {
        let (id, at) = (Uuid::now_v7(), to_micros(now()));
        let row: OrganizationRow = on_pool!(self, |pool: Db| {
            sqlx::query_as(INSERT_ORGANIZATION).bind(id).bind(name).bind(at).fetch_one(pool).await
        })
        .map_err(backend)?;
        Ok(row.into())
    }

    async fn organization_exists(&self) -> StoreResult<bool> {
        let row: Option<(Uuid,)> = on_pool!(self, |pool: Db| {
            sqlx::query_as("SELECT id FROM organizations LIMIT 1").fetch_optional(pool).await
        })
        .map_err(backend)?;
        Ok(row.is_some())
    }

    async fn bootstrap_organization(
        &self,
        name: &str,
        prefix: &str,
        hash: &TokenHash,
    ) -> StoreResult<Option<Organization>> {
        let (org_id, token_id, at) = (Uuid::now_v7(), Uuid::now_v7(), to_micros(now()));
        let (scopes, hash) = (Scopes::admin().to_stored(), hash.0.to_vec());
        let row: Option<OrganizationRow> = on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            // A second process blocks here until the first commits, then finds the row.
            let first = sqlx::query("INSERT INTO bootstrap (id, org_id) VALUES (1, $1) ON CONFLICT DO NOTHING")
                .bind(org_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !first {
                return Ok(None);
            }
            let org: OrganizationRow =
                sqlx::query_as(INSERT_ORGANIZATION).bind(org_id).bind(name).bind(at).fetch_one(&mut *tx).await?;
            sqlx::query(INSERT_TOKEN)
                .bind(token_id)
                .bind(org_id)
                .bind("bootstrap admin")
                .bind(&scopes)
                .bind(prefix)
                .bind(&hash)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await.map(|()| Some(org))
        })
        .map_err(backend)?;
        Ok(row.map(Into::into))
    }

    async fn get_organization(&self, org_id: Uuid) -> StoreResult<Option<Organization>> {
        let row: Option<OrganizationRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as("SELECT id, name, created_at FROM organizations WHERE id = $1")
                .bind(org_id)
                .fetch_optional(pool)
                .await
        })
        .map_err(backend)?;
        Ok(row.map(Into::into))
    }

    async fn create_token(
        &self,
        org_id: Uuid,
        name: &str,
        scopes: &Scopes,
        prefix: &str,
        hash: &TokenHash,
    ) -> StoreResult<ApiToken> {
        let (id, at, scopes, hash) = (Uuid::now_v7(), to_micros(now()), scopes.to_stored(), hash.0.to_vec());
        let row: TokenRow = on_pool!(self, |pool: Db| {
            sqlx::query_as(INSERT_TOKEN)
                .bind(id)
                .bind(org_id)
                .bind(name)
                .bind(&scopes)
                .bind(prefix)
                .bind(&hash)
                .bind(at)
                .fetch_one(pool)
                .await
        })
        .map_err(db_error("a token with this secret already exists"))?;
        Ok(row.into())
    }

    async fn find_token(&self, hash: &TokenHash) -> StoreResult<Option<ApiToken>> {
        let hash = hash.0.to_vec();
        let sql = format!("{TOKENS} WHERE secret_hash = $1");
        let row: Option<TokenRow> =
            on_pool!(self, |pool: Db| sqlx::query_as(&sql).bind(&hash).fetch_optional(pool).await).map_err(backend)?;
        Ok(row.map(Into::into))
    }

    async fn list_tokens(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<ApiToken>> {
        let rows: Vec<TokenRow> = self.org_page(TOKENS, org_id, page).await?;
        Ok(Page::from_overfetch(rows.into_iter().map(Into::into).collect(), page, |t: &ApiToken| t.id))
    }

    async fn delete_token(&self, org_id: Uuid, token_id: Uuid) -> StoreResult<bool> {
        let done = on_pool!(self, |pool: Db| {
            sqlx::query(DELETE_TOKEN).bind(org_id).bind(token_id).execute(pool).await.map(|r| r.rows_affected())
        })
        .map_err(backend)?;
        Ok(done > 0)
    }

    async fn create_session(&self, token_id: Uuid, hash: &TokenHash, expires_at: OffsetDateTime) -> StoreResult<()> {
        let (at, until, hash) = (to_micros(now()), to_micros(expires_at), hash.0.to_vec());
        on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1").bind(at).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO ui_sessions (secret_hash, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&hash)
            .bind(token_id)
            .bind(at)
            .bind(until)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
        .map_err(db_error("this session already exists"))
    }

    async fn find_session(&self, hash: &TokenHash, now: OffsetDateTime) -> StoreResult<Option<ApiToken>> {
        let (hash, now) = (hash.0.to_vec(), to_micros(now));
        let sql = "SELECT t.id, t.org_id, t.name, t.scopes, t.prefix, t.secret_hash, t.created_at
             FROM ui_sessions s JOIN api_tokens t ON t.id = s.token_id
             WHERE s.secret_hash = $1 AND s.expires_at > $2";
        let row: Option<TokenRow> =
            on_pool!(self, |pool: Db| sqlx::query_as(sql).bind(&hash).bind(now).fetch_optional(pool).await)
                .map_err(backend)?;
        Ok(row.map(Into::into))
    }

    async fn delete_session(&self, hash: &TokenHash) -> StoreResult<()> {
        let hash = hash.0.to_vec();
        on_pool!(self, |pool: Db| {
            sqlx::query("DELETE FROM ui_sessions WHERE secret_hash = $1").bind(&hash).execute(pool).await.map(|_| ())
        })
        .map_err(backend)?;
        Ok(())
    }

    async fn create_environment(&self, org_id: Uuid, env: &NewEnvironment) -> StoreResult<Environment> {
        let (id, at) = (Uuid::now_v7(), to_micros(now()));
        let row: EnvironmentRow = on_pool!(self, |pool: Db| {
            sqlx::query_as(INSERT_ENVIRONMENT)
                .bind(id)
                .bind(org_id)
                .bind(env.slug.as_str())
                .bind(&env.name)
                .bind(env.description.as_deref())
                .bind(at)
                .fetch_one(pool)
                .await
        })
        .map_err(db_error(&format!("an environment with slug '{}' already exists", env.slug)))?;
        row.try_into()
    }

    async fn list_environments(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<Environment>> {
        let rows: Vec<EnvironmentRow> = self.org_page(ENVIRONMENTS, org_id, page).await?;
        let items = rows.into_iter().map(TryInto::try_into).collect::<StoreResult<Vec<Environment>>>()?;
        Ok(Page::from_overfetch(items, page, |e: &Environment| e.id))
    }

    async fn get_environment(&self, org_id: Uuid, env: &EnvironmentRef) -> StoreResult<Option<Environment>> {
        let row: Option<EnvironmentRow> = match env {
            EnvironmentRef::Id(id) => {
                let sql = format!("{ENVIRONMENTS} WHERE org_id = $1 AND id = $2");
                on_pool!(self, |pool: Db| sqlx::query_as(&sql).bind(org_id).bind(*id).fetch_optional(pool).await)
            }
            EnvironmentRef::Slug(slug) => {
                let sql = format!("{ENVIRONMENTS} WHERE org_id = $1 AND slug = $2");
                on_pool!(self, |pool: Db| sqlx::query_as(&sql)
                    .bind(org_id)
                    .bind(slug.as_str())
                    .fetch_optional(pool)
                    .await)
            }
        }
        .map_err(backend)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn find_environments(&self, org_id: Uuid, refs: &[EnvironmentRef]) -> StoreResult<Vec<Environment>> {
        let ids: Vec<Uuid> =
            refs.iter().filter_map(|r| if let EnvironmentRef::Id(id) = r { Some(*id) } else { None }).collect();
        let slugs: Vec<&str> =
            refs.iter().filter_map(|r| if let EnvironmentRef::Slug(s) = r { Some(s.as_str()) } else { None }).collect();
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<EnvironmentRow> = on_pool!(self, |pool: Db| {
            let mut sql = sqlx::QueryBuilder::<Db>::new(ENVIRONMENTS);
            sql.push(" WHERE org_id = ").push_bind(org_id).push(" AND (slug IN (''");
            for slug in &slugs {
                sql.push(", ").push_bind(*slug);
            }
            sql.push(") OR id IN (").push_bind(Uuid::nil());
            for id in &ids {
                sql.push(", ").push_bind(*id);
            }
            sql.push(")) ORDER BY slug");
            sql.build_query_as().fetch_all(pool).await
        })
        .map_err(backend)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn update_environment(
        &self,
        org_id: Uuid,
        env_id: Uuid,
        patch: &EnvironmentPatch,
    ) -> StoreResult<Option<Environment>> {
        let what = match &patch.slug {
            Some(slug) => format!("an environment with slug '{slug}' already exists"),
            None => "environment conflict".to_owned(),
        };
        let at = to_micros(now());
        let row: Option<EnvironmentRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as(UPDATE_ENVIRONMENT)
                .bind(org_id)
                .bind(env_id)
                .bind(patch.slug.as_ref().map(|s| s.as_str()))
                .bind(patch.name.as_deref())
                .bind(patch.description.is_some())
                .bind(patch.description.clone().flatten())
                .bind(at)
                .fetch_optional(pool)
                .await
        })
        .map_err(db_error(&what))?;
        self.timeline_written();
        row.map(TryInto::try_into).transpose()
    }

    async fn delete_environment(&self, org_id: Uuid, env_id: Uuid) -> StoreResult<bool> {
        let done = on_pool!(self, |pool: Db| {
            sqlx::query("DELETE FROM environments WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(env_id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(backend)?;
        self.timeline_written();
        Ok(done > 0)
    }
}

impl SqlStore {
    /// One keyset page of an organisation's rows of a table, oldest first, one row more than
    /// asked for (so the caller knows whether another page follows).
    pub(super) async fn org_page<R>(&self, select: &str, org_id: Uuid, page: PageRequest) -> StoreResult<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        let sql = org_page_sql(select);
        let after = page.after.unwrap_or(Uuid::nil());
        on_pool!(self, |pool: Db| {
            sqlx::query_as(&sql).bind(org_id).bind(after).bind(page.fetch_limit()).fetch_all(pool).await
        })
        .map_err(backend)
    }
}
