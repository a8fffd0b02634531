//! The one implementation of [`domain::Store`] in SQL that both SQLite and PostgreSQL run as is:
//! `$n` placeholders, `RETURNING`, integer times, UUIDs bound natively by sqlx. A macro rather
//! than generics, because sqlx's generic bounds over `Database` cost more to read than the SQL.
//! Anything a backend must do differently goes in that backend's own `impl` block, not here.

macro_rules! sql_store {
    ($store:ident) => {
        #[async_trait::async_trait]
        impl domain::Store for $store {
            async fn ping(&self) -> domain::store::StoreResult<()> {
                sqlx::query("SELECT id FROM organizations LIMIT 1")
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err($crate::rows::backend)
            }

            async fn create_organization(&self, name: &str) -> domain::store::StoreResult<domain::Organization> {
                sqlx::query_as::<_, $crate::rows::OrganizationRow>(
                    "INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3) RETURNING id, name, created_at",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(name)
                .bind(domain::time_util::to_micros(domain::time_util::now()))
                .fetch_one(&self.pool)
                .await
                .map(Into::into)
                .map_err($crate::rows::backend)
            }

            async fn organization_exists(&self) -> domain::store::StoreResult<bool> {
                sqlx::query("SELECT id FROM organizations LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await
                    .map(|row| row.is_some())
                    .map_err($crate::rows::backend)
            }

            async fn get_organization(&self, org_id: uuid::Uuid) -> domain::store::StoreResult<Option<domain::Organization>> {
                sqlx::query_as::<_, $crate::rows::OrganizationRow>("SELECT id, name, created_at FROM organizations WHERE id = $1")
                    .bind(org_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map(|row| row.map(Into::into))
                    .map_err($crate::rows::backend)
            }

            async fn create_token(
                &self,
                org_id: uuid::Uuid,
                name: &str,
                scopes: &domain::Scopes,
                prefix: &str,
                hash: &domain::token::TokenHash,
            ) -> domain::store::StoreResult<domain::ApiToken> {
                sqlx::query_as::<_, $crate::rows::TokenRow>(
                    "INSERT INTO api_tokens (id, org_id, name, scopes, prefix, secret_hash, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     RETURNING id, org_id, name, scopes, prefix, secret_hash, created_at",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(org_id)
                .bind(name)
                .bind(scopes.to_stored())
                .bind(prefix)
                .bind(hash.0.to_vec())
                .bind(domain::time_util::to_micros(domain::time_util::now()))
                .fetch_one(&self.pool)
                .await
                .map(Into::into)
                .map_err($crate::rows::db_error("a token with this secret already exists"))
            }

            async fn find_token(&self, hash: &domain::token::TokenHash) -> domain::store::StoreResult<Option<domain::ApiToken>> {
                sqlx::query_as::<_, $crate::rows::TokenRow>(
                    "SELECT id, org_id, name, scopes, prefix, secret_hash, created_at FROM api_tokens WHERE secret_hash = $1",
                )
                .bind(hash.0.to_vec())
                .fetch_optional(&self.pool)
                .await
                .map(|row| row.map(Into::into))
                .map_err($crate::rows::backend)
            }

            async fn list_tokens(
                &self,
                org_id: uuid::Uuid,
                page: domain::PageRequest,
            ) -> domain::store::StoreResult<domain::Page<domain::ApiToken>> {
                let rows = sqlx::query_as::<_, $crate::rows::TokenRow>(
                    "SELECT id, org_id, name, scopes, prefix, secret_hash, created_at FROM api_tokens
                     WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(org_id)
                .bind(page.after.unwrap_or(uuid::Uuid::nil()))
                .bind(page.fetch_limit())
                .fetch_all(&self.pool)
                .await
                .map_err($crate::rows::backend)?;
                let tokens = rows.into_iter().map(domain::ApiToken::from).collect();
                Ok(domain::Page::from_overfetch(tokens, page, |t| t.id))
            }

            async fn delete_token(&self, org_id: uuid::Uuid, token_id: uuid::Uuid) -> domain::store::StoreResult<bool> {
                sqlx::query("DELETE FROM api_tokens WHERE org_id = $1 AND id = $2")
                    .bind(org_id)
                    .bind(token_id)
                    .execute(&self.pool)
                    .await
                    .map(|r| r.rows_affected() > 0)
                    .map_err($crate::rows::backend)
            }

            async fn create_environment(
                &self,
                org_id: uuid::Uuid,
                env: &domain::NewEnvironment,
            ) -> domain::store::StoreResult<domain::Environment> {
                let now = domain::time_util::to_micros(domain::time_util::now());
                sqlx::query_as::<_, $crate::rows::EnvironmentRow>(
                    "INSERT INTO environments (id, org_id, slug, name, description, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)
                     RETURNING id, org_id, slug, name, description, created_at, updated_at",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(org_id)
                .bind(env.slug.as_str())
                .bind(&env.name)
                .bind(env.description.as_deref())
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::rows::db_error(&format!("an environment with slug '{}' already exists", env.slug)))?
                .try_into()
            }

            async fn list_environments(
                &self,
                org_id: uuid::Uuid,
                page: domain::PageRequest,
            ) -> domain::store::StoreResult<domain::Page<domain::Environment>> {
                let rows = sqlx::query_as::<_, $crate::rows::EnvironmentRow>(
                    "SELECT id, org_id, slug, name, description, created_at, updated_at FROM environments
                     WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(org_id)
                .bind(page.after.unwrap_or(uuid::Uuid::nil()))
                .bind(page.fetch_limit())
                .fetch_all(&self.pool)
                .await
                .map_err($crate::rows::backend)?;
                let envs = rows.into_iter().map(domain::Environment::try_from).collect::<Result<Vec<_>, _>>()?;
                Ok(domain::Page::from_overfetch(envs, page, |e| e.id))
            }

            async fn get_environment(
                &self,
                org_id: uuid::Uuid,
                env: &domain::EnvironmentRef,
            ) -> domain::store::StoreResult<Option<domain::Environment>> {
                const COLUMNS: &str = "SELECT id, org_id, slug, name, description, created_at, updated_at FROM environments";
                let row = match env {
                    domain::EnvironmentRef::Id(id) => {
                        sqlx::query_as::<_, $crate::rows::EnvironmentRow>(&format!("{COLUMNS} WHERE org_id = $1 AND id = $2"))
                            .bind(org_id)
                            .bind(*id)
                            .fetch_optional(&self.pool)
                            .await
                    }
                    domain::EnvironmentRef::Slug(slug) => {
                        sqlx::query_as::<_, $crate::rows::EnvironmentRow>(&format!("{COLUMNS} WHERE org_id = $1 AND slug = $2"))
                            .bind(org_id)
                            .bind(slug.as_str())
                            .fetch_optional(&self.pool)
                            .await
                    }
                }
                .map_err($crate::rows::backend)?;
                row.map(TryInto::try_into).transpose()
            }

            async fn update_environment(
                &self,
                org_id: uuid::Uuid,
                env_id: uuid::Uuid,
                patch: &domain::EnvironmentPatch,
            ) -> domain::store::StoreResult<Option<domain::Environment>> {
                let what = match &patch.slug {
                    Some(slug) => format!("an environment with slug '{slug}' already exists"),
                    None => "environment conflict".to_owned(),
                };
                let row = sqlx::query_as::<_, $crate::rows::EnvironmentRow>(
                    "UPDATE environments SET
                        slug = COALESCE($3, slug),
                        name = COALESCE($4, name),
                        description = CASE WHEN $5 THEN $6 ELSE description END,
                        updated_at = $7
                     WHERE org_id = $1 AND id = $2
                     RETURNING id, org_id, slug, name, description, created_at, updated_at",
                )
                .bind(org_id)
                .bind(env_id)
                .bind(patch.slug.as_ref().map(|s| s.as_str()))
                .bind(patch.name.as_deref())
                .bind(patch.description.is_some())
                .bind(patch.description.clone().flatten())
                .bind(domain::time_util::to_micros(domain::time_util::now()))
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::rows::db_error(&what))?;
                row.map(TryInto::try_into).transpose()
            }

            async fn delete_environment(&self, org_id: uuid::Uuid, env_id: uuid::Uuid) -> domain::store::StoreResult<bool> {
                sqlx::query("DELETE FROM environments WHERE org_id = $1 AND id = $2")
                    .bind(org_id)
                    .bind(env_id)
                    .execute(&self.pool)
                    .await
                    .map(|r| r.rows_affected() > 0)
                    .map_err($crate::rows::backend)
            }

            async fn create_connection(
                &self,
                org_id: uuid::Uuid,
                settings: &domain::ConnectionSettings,
                external_id: &domain::ExternalId,
            ) -> domain::store::StoreResult<domain::Connection> {
                let now = domain::time_util::to_micros(domain::time_util::now());
                sqlx::query_as::<_, $crate::rows::ConnectionRow>(&format!(
                    "INSERT INTO connections (id, org_id, name, regions, default_environment, environment_rules, lookback_days,
                         include_read_only, enabled, external_id, status, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending_role', $11, $11)
                     RETURNING {}",
                    $crate::rows::CONNECTION_COLUMNS
                ))
                .bind(uuid::Uuid::now_v7())
                .bind(org_id)
                .bind(&settings.name)
                .bind(sqlx::types::Json(&settings.regions))
                .bind(settings.default_environment.as_ref().map(|s| s.as_str()))
                .bind(sqlx::types::Json(&settings.environment_rules))
                .bind(settings.lookback_days as i32)
                .bind(settings.include_read_only)
                .bind(settings.enabled)
                .bind(external_id.as_str())
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::rows::db_error("a connection with this external ID already exists"))?
                .try_into()
            }

            async fn list_connections(
                &self,
                org_id: uuid::Uuid,
                page: domain::PageRequest,
            ) -> domain::store::StoreResult<domain::Page<domain::Connection>> {
                let rows = sqlx::query_as::<_, $crate::rows::ConnectionRow>(&format!(
                    "SELECT {} FROM connections WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                    $crate::rows::CONNECTION_COLUMNS
                ))
                .bind(org_id)
                .bind(page.after.unwrap_or(uuid::Uuid::nil()))
                .bind(page.fetch_limit())
                .fetch_all(&self.pool)
                .await
                .map_err($crate::rows::backend)?;
                let connections = rows.into_iter().map(domain::Connection::try_from).collect::<Result<Vec<_>, _>>()?;
                Ok(domain::Page::from_overfetch(connections, page, |c| c.id))
            }

            async fn get_connection(
                &self,
                org_id: uuid::Uuid,
                connection_id: uuid::Uuid,
            ) -> domain::store::StoreResult<Option<domain::Connection>> {
                sqlx::query_as::<_, $crate::rows::ConnectionRow>(&format!(
                    "SELECT {} FROM connections WHERE org_id = $1 AND id = $2",
                    $crate::rows::CONNECTION_COLUMNS
                ))
                .bind(org_id)
                .bind(connection_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::rows::backend)?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn update_connection_settings(
                &self,
                org_id: uuid::Uuid,
                connection_id: uuid::Uuid,
                settings: &domain::ConnectionSettings,
            ) -> domain::store::StoreResult<Option<domain::Connection>> {
                sqlx::query_as::<_, $crate::rows::ConnectionRow>(&format!(
                    "UPDATE connections SET name = $3, regions = $4, default_environment = $5, environment_rules = $6,
                         lookback_days = $7, include_read_only = $8, enabled = $9, updated_at = $10
                     WHERE org_id = $1 AND id = $2 RETURNING {}",
                    $crate::rows::CONNECTION_COLUMNS
                ))
                .bind(org_id)
                .bind(connection_id)
                .bind(&settings.name)
                .bind(sqlx::types::Json(&settings.regions))
                .bind(settings.default_environment.as_ref().map(|s| s.as_str()))
                .bind(sqlx::types::Json(&settings.environment_rules))
                .bind(settings.lookback_days as i32)
                .bind(settings.include_read_only)
                .bind(settings.enabled)
                .bind(domain::time_util::to_micros(domain::time_util::now()))
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::rows::backend)?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn delete_connection(&self, org_id: uuid::Uuid, connection_id: uuid::Uuid) -> domain::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err($crate::rows::backend)?;
                let deleted = sqlx::query("DELETE FROM connections WHERE org_id = $1 AND id = $2")
                    .bind(org_id)
                    .bind(connection_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::rows::backend)?
                    .rows_affected()
                    > 0;
                if deleted {
                    sqlx::query("DELETE FROM events WHERE org_id = $1 AND connection_id = $2")
                        .bind(org_id)
                        .bind(connection_id)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::rows::backend)?;
                }
                tx.commit().await.map_err($crate::rows::backend)?;
                Ok(deleted)
            }

            async fn register_role(
                &self,
                org_id: uuid::Uuid,
                connection_id: uuid::Uuid,
                role: &domain::RegisteredRole,
            ) -> domain::store::StoreResult<Option<domain::Connection>> {
                sqlx::query_as::<_, $crate::rows::ConnectionRow>(&format!(
                    "UPDATE connections SET status = 'active', role_arn = $3, account_id = $4, assumed_role_arn = $5,
                         validated_at = $6, last_error_code = NULL, last_error_message = NULL, last_error_at = NULL,
                         updated_at = $6
                     WHERE org_id = $1 AND id = $2 RETURNING {}",
                    $crate::rows::CONNECTION_COLUMNS
                ))
                .bind(org_id)
                .bind(connection_id)
                .bind(&role.role_arn)
                .bind(&role.account_id)
                .bind(&role.assumed_role_arn)
                .bind(domain::time_util::to_micros(role.validated_at))
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::rows::backend)?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn record_connection_problem(
                &self,
                org_id: uuid::Uuid,
                connection_id: uuid::Uuid,
                problem: &domain::connection::ConnectionProblem,
                mark_error: bool,
            ) -> domain::store::StoreResult<Option<domain::Connection>> {
                sqlx::query_as::<_, $crate::rows::ConnectionRow>(&format!(
                    "UPDATE connections SET last_error_code = $3, last_error_message = $4, last_error_at = $5,
                         status = CASE WHEN $6 THEN 'error' ELSE status END, updated_at = $5
                     WHERE org_id = $1 AND id = $2 RETURNING {}",
                    $crate::rows::CONNECTION_COLUMNS
                ))
                .bind(org_id)
                .bind(connection_id)
                .bind(&problem.code)
                .bind(&problem.message)
                .bind(domain::time_util::to_micros(problem.at))
                .bind(mark_error)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::rows::backend)?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn connections_of_account(
                &self,
                org_id: uuid::Uuid,
                account_id: &str,
            ) -> domain::store::StoreResult<Vec<domain::Connection>> {
                let rows = sqlx::query_as::<_, $crate::rows::ConnectionRow>(&format!(
                    "SELECT {} FROM connections WHERE org_id = $1 AND account_id = $2 ORDER BY id",
                    $crate::rows::CONNECTION_COLUMNS
                ))
                .bind(org_id)
                .bind(account_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::rows::backend)?;
                rows.into_iter().map(domain::Connection::try_from).collect()
            }
        }
    };
}
