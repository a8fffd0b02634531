//! The one implementation of [`domain::Store`] in SQL that both SQLite and PostgreSQL run as is:
//! `$n` placeholders, `RETURNING`, integer times, UUIDs bound natively by sqlx. A macro rather
//! than generics, because sqlx's generic bounds over `Database` cost more to read than the SQL.
//! Anything a backend must do differently goes in that backend's own `impl` block, not here.

macro_rules! sql_store {
    ($store:ident, $db:ty, $claim_lock:literal) => {
        impl $store {
            /// One keyset page of an organisation's rows of a table, oldest first: `select`
            /// names the columns and table; the org, cursor and limit conditions are added here.
            async fn org_page<R, T>(
                &self,
                select: &str,
                org_id: uuid::Uuid,
                page: domain::PageRequest,
                convert: impl Fn(R) -> domain::store::StoreResult<T>,
                id_of: impl Fn(&T) -> uuid::Uuid,
            ) -> domain::store::StoreResult<domain::Page<T>>
            where
                R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                let rows = sqlx::query_as::<_, R>(&format!("{select} WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"))
                    .bind(org_id)
                    .bind(page.after.unwrap_or(uuid::Uuid::nil()))
                    .bind(page.fetch_limit())
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::backend)?;
                let items = rows.into_iter().map(convert).collect::<Result<Vec<_>, _>>()?;
                Ok(domain::Page::from_overfetch(items, page, id_of))
            }
        }

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
                let select = "SELECT id, org_id, name, scopes, prefix, secret_hash, created_at FROM api_tokens";
                self.org_page(select, org_id, page, |r: $crate::rows::TokenRow| Ok(r.into()), |t: &domain::ApiToken| t.id).await
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
                let select = "SELECT id, org_id, slug, name, description, created_at, updated_at FROM environments";
                self.org_page(select, org_id, page, |r: $crate::rows::EnvironmentRow| r.try_into(), |e: &domain::Environment| e.id).await
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
                let select = format!("SELECT {} FROM connections", $crate::rows::CONNECTION_COLUMNS);
                self.org_page(&select, org_id, page, |r: $crate::rows::ConnectionRow| r.try_into(), |c: &domain::Connection| c.id).await
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

            async fn sync_import_jobs(&self, org_id: uuid::Uuid, connection_id: uuid::Uuid) -> domain::store::StoreResult<()> {
                use domain::time_util::{now, to_micros};
                let Some(connection) = domain::Store::get_connection(self, org_id, connection_id).await? else { return Ok(()) };
                let Some(account_id) = connection.account_id.clone() else { return Ok(()) };
                let now = to_micros(now());
                let start = now - i64::from(connection.settings.lookback_days) * 86_400_000_000;
                let mut tx = self.pool.begin().await.map_err($crate::rows::backend)?;
                let existing: Vec<(String,)> = sqlx::query_as("SELECT region FROM import_jobs WHERE connection_id = $1")
                    .bind(connection_id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err($crate::rows::backend)?;
                for (region,) in existing.iter().filter(|(r,)| !connection.settings.regions.contains(r)) {
                    sqlx::query("DELETE FROM import_jobs WHERE connection_id = $1 AND region = $2")
                        .bind(connection_id)
                        .bind(region)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::rows::backend)?;
                }
                for region in &connection.settings.regions {
                    sqlx::query(
                        "INSERT INTO import_jobs (connection_id, region, org_id, account_id, next_run_at, scanned_until)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (connection_id, region) DO UPDATE SET account_id = $4",
                    )
                    .bind(connection_id)
                    .bind(region)
                    .bind(org_id)
                    .bind(&account_id)
                    .bind(now)
                    .bind(start)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::rows::backend)?;
                }
                tx.commit().await.map_err($crate::rows::backend)
            }

            async fn claim_import_jobs(
                &self,
                owner: &str,
                now: time::OffsetDateTime,
                lease_until: time::OffsetDateTime,
                limit: u32,
            ) -> domain::store::StoreResult<Vec<domain::import::ImportJob>> {
                use domain::time_util::to_micros;
                let sql = format!(
                    "UPDATE import_jobs SET leased_until = $2, lease_owner = $3, last_run_at = $1
                     WHERE (connection_id, region) IN (
                         SELECT j.connection_id, j.region FROM import_jobs j JOIN connections c ON c.id = j.connection_id
                         WHERE j.next_run_at <= $1 AND (j.leased_until IS NULL OR j.leased_until < $1)
                           AND c.status = 'active' AND c.enabled
                         ORDER BY j.next_run_at LIMIT $4 {})
                       AND (leased_until IS NULL OR leased_until < $1 OR lease_owner = $3)
                     RETURNING {}",
                    $claim_lock,
                    $crate::rows::IMPORT_JOB_COLUMNS.replace("j.", "")
                );
                let rows = sqlx::query_as::<_, $crate::rows::ImportJobRow>(&sql)
                    .bind(to_micros(now))
                    .bind(to_micros(lease_until))
                    .bind(owner)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::backend)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn save_import_page(
                &self,
                lease: &domain::import::Lease,
                events: &[domain::event::NewEvent],
                progress: &domain::import::PageProgress,
            ) -> domain::store::StoreResult<u64> {
                use domain::time_util::to_micros;
                let mut tx = self.pool.begin().await.map_err($crate::rows::backend)?;
                let org_id = lease.org_id;
                let mut inserted: Vec<(uuid::Uuid, String)> = Vec::new();
                if !events.is_empty() {
                    let now = to_micros(domain::time_util::now());
                    let mut insert = sqlx::QueryBuilder::<$db>::new($crate::rows::EVENT_COLUMNS);
                    insert.push_values(events, |row, e| $crate::rows::push_event(row, uuid::Uuid::now_v7(), org_id, e, now));
                    insert.push(" ON CONFLICT (org_id, source, source_key) DO NOTHING RETURNING id, source_key");
                    inserted = insert.build_query_as().fetch_all(&mut *tx).await.map_err($crate::rows::backend)?;
                }
                let new_events: Vec<(uuid::Uuid, &domain::event::NewEvent)> = inserted
                    .iter()
                    .filter_map(|(id, key)| events.iter().find(|e| &e.source_key == key).map(|e| (*id, e)))
                    .collect();
                let links: Vec<(uuid::Uuid, uuid::Uuid, &domain::event::NewEvent)> =
                    new_events.iter().flat_map(|(id, e)| e.environment_ids.iter().map(move |env| (*env, *id, *e))).collect();
                if !links.is_empty() {
                    let mut link = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO event_environments (environment_id, occurred_at, event_id, kind, read_only) ",
                    );
                    link.push_values(&links, |mut row, (env, id, e)| {
                        row.push_bind(*env).push_bind(to_micros(e.occurred_at)).push_bind(*id).push_bind(e.kind.as_str()).push_bind(e.read_only);
                    });
                    link.push(" ON CONFLICT DO NOTHING");
                    link.build().execute(&mut *tx).await.map_err($crate::rows::backend)?;
                }
                let flagged = new_events.iter().filter(|(_, e)| e.details.get("flagged") == Some(&serde_json::Value::Bool(true))).count() as i64;
                let (scanned, walk) = match &progress.continue_walk {
                    Some(walk) => (None, Some(walk)),
                    None => (Some(to_micros(progress.window_end)), None),
                };
                // The progress moves, and the lease is extended, only if this worker still holds
                // it; otherwise the whole page rolls back and the new holder stores it.
                let held = sqlx::query(
                    "UPDATE import_jobs SET
                         scanned_until = COALESCE($3, scanned_until),
                         window_start = $4, window_end = $5, next_token = $6,
                         events_imported = events_imported + $7, events_flagged = events_flagged + $8,
                         leased_until = $10
                     WHERE connection_id = $1 AND region = $2 AND org_id = $11 AND lease_owner = $9",
                )
                .bind(lease.connection_id)
                .bind(&lease.region)
                .bind(scanned)
                .bind(walk.map(|w| to_micros(w.start)))
                .bind(walk.map(|w| to_micros(w.end)))
                .bind(walk.and_then(|w| w.next_token.clone()))
                .bind(inserted.len() as i64)
                .bind(flagged)
                .bind(&lease.owner)
                .bind(to_micros(progress.lease_until))
                .bind(org_id)
                .execute(&mut *tx)
                .await
                .map_err($crate::rows::backend)?
                .rows_affected()
                    > 0;
                if !held {
                    return Err(domain::StoreError::LeaseLost);
                }
                tx.commit().await.map_err($crate::rows::backend)?;
                Ok(inserted.len() as u64)
            }

            async fn finish_import_run(
                &self,
                lease: &domain::import::Lease,
                outcome: &domain::import::RunOutcome,
            ) -> domain::store::StoreResult<()> {
                use domain::time_util::{now, to_micros};
                sqlx::query(
                    "UPDATE import_jobs SET leased_until = NULL, lease_owner = NULL, next_run_at = $4,
                         attempts = CASE WHEN $5 THEN 0 ELSE attempts + 1 END,
                         last_error = $6,
                         last_success_at = CASE WHEN $5 THEN $7 ELSE last_success_at END
                     WHERE connection_id = $1 AND region = $2 AND lease_owner = $3",
                )
                .bind(lease.connection_id)
                .bind(&lease.region)
                .bind(&lease.owner)
                .bind(to_micros(outcome.next_run_at))
                .bind(outcome.error.is_none())
                .bind(outcome.error.as_deref())
                .bind(to_micros(now()))
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err($crate::rows::backend)
            }

            async fn release_leases(&self, owner: &str) -> domain::store::StoreResult<()> {
                sqlx::query("UPDATE import_jobs SET leased_until = NULL, lease_owner = NULL WHERE lease_owner = $1")
                    .bind(owner)
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err($crate::rows::backend)
            }

            async fn list_import_jobs(
                &self,
                org_id: uuid::Uuid,
                connection_id: uuid::Uuid,
            ) -> domain::store::StoreResult<Vec<domain::import::ImportJob>> {
                let rows = sqlx::query_as::<_, $crate::rows::ImportJobRow>(&format!(
                    "SELECT {} FROM import_jobs j WHERE j.org_id = $1 AND j.connection_id = $2 ORDER BY j.region",
                    $crate::rows::IMPORT_JOB_COLUMNS
                ))
                .bind(org_id)
                .bind(connection_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::rows::backend)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn request_import(&self, org_id: uuid::Uuid, connection_id: uuid::Uuid) -> domain::store::StoreResult<bool> {
                sqlx::query("UPDATE import_jobs SET next_run_at = $3 WHERE org_id = $1 AND connection_id = $2")
                    .bind(org_id)
                    .bind(connection_id)
                    .bind(domain::time_util::to_micros(domain::time_util::now()))
                    .execute(&self.pool)
                    .await
                    .map(|r| r.rows_affected() > 0)
                    .map_err($crate::rows::backend)
            }

            async fn reserve_lookup_slot(
                &self,
                account_id: &str,
                region: &str,
                now: time::OffsetDateTime,
                interval_micros: i64,
            ) -> domain::store::StoreResult<time::OffsetDateTime> {
                let (next,): (i64,) = sqlx::query_as(
                    "INSERT INTO lookup_pacing (account_id, region, next_slot_at) VALUES ($1, $2, CAST($3 AS BIGINT) + CAST($4 AS BIGINT))
                     ON CONFLICT (account_id, region) DO UPDATE SET next_slot_at =
                         CASE WHEN lookup_pacing.next_slot_at > CAST($3 AS BIGINT) THEN lookup_pacing.next_slot_at
                              ELSE CAST($3 AS BIGINT) END + CAST($4 AS BIGINT)
                     RETURNING next_slot_at",
                )
                .bind(account_id)
                .bind(region)
                .bind(domain::time_util::to_micros(now))
                .bind(interval_micros)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::rows::backend)?;
                Ok(domain::time_util::from_micros(next - interval_micros))
            }

            async fn timeline(
                &self,
                org_id: uuid::Uuid,
                query: &domain::timeline::TimelineQuery,
            ) -> domain::store::StoreResult<Vec<domain::timeline::TimelineItem>> {
                use domain::time_util::to_micros;
                if query.environment_ids.is_empty() {
                    return Ok(Vec::new());
                }
                // Every condition but the filters is on the link table's key or its copied
                // columns, so one environment's page is a backward range scan of
                // (environment_id, occurred_at, event_id). Several environments need DISTINCT:
                // an item in two of them is one item.
                let several = query.environment_ids.len() > 1;
                let mut sql = sqlx::QueryBuilder::<$db>::new(if several { "SELECT DISTINCT" } else { "SELECT" });
                sql.push(
                    " e.id, e.kind, e.source, e.occurred_at, e.title, e.actor, e.read_only, e.resources, e.labels,
                         e.links, e.details
                     FROM event_environments l JOIN events e ON e.id = l.event_id
                     WHERE l.environment_id IN (",
                );
                let mut envs = sql.separated(", ");
                for env in &query.environment_ids {
                    envs.push_bind(*env);
                }
                sql.push(")");
                sql.push(" AND e.org_id = ").push_bind(org_id);
                sql.push(" AND l.occurred_at >= ").push_bind(to_micros(query.since));
                sql.push(" AND l.occurred_at <= ").push_bind(to_micros(query.until));
                if let Some((at, id)) = query.after {
                    sql.push(" AND (l.occurred_at < ").push_bind(to_micros(at));
                    sql.push(" OR (l.occurred_at = ").push_bind(to_micros(at));
                    sql.push(" AND l.event_id < ").push_bind(id).push("))");
                }
                let f = &query.filters;
                if let Some(actor) = &f.actor {
                    sql.push(" AND e.actor = ").push_bind(actor.clone());
                }
                if let Some(source) = &f.source {
                    sql.push(" AND (e.source = ").push_bind(source.clone());
                    sql.push(" OR e.details ->> 'event_source' = ").push_bind(source.clone()).push(")");
                }
                if let Some(resource) = &f.resource {
                    sql.push(" AND CAST(e.resources AS TEXT) LIKE ").push_bind($crate::rows::like_pattern(resource)).push(" ESCAPE '\\'");
                }
                if let Some(text) = &f.text {
                    sql.push(" AND LOWER(e.title) LIKE ").push_bind($crate::rows::like_pattern(&text.to_lowercase())).push(" ESCAPE '\\'");
                }
                if let Some(service) = &f.service {
                    sql.push(" AND e.labels ->> 'service' = ").push_bind(service.clone());
                }
                for (key, value) in &f.labels {
                    sql.push(" AND e.labels ->> ").push_bind(key.clone()).push(" = ").push_bind(value.clone());
                }
                if !query.include_read_only {
                    sql.push(" AND l.read_only = ").push_bind(false);
                }
                if !query.kinds.is_empty() {
                    sql.push(" AND l.kind IN (");
                    let mut kinds = sql.separated(", ");
                    for kind in &query.kinds {
                        kinds.push_bind(kind.as_str());
                    }
                    sql.push(")");
                }
                sql.push(if several { " ORDER BY e.occurred_at DESC, e.id DESC LIMIT " } else { " ORDER BY l.occurred_at DESC, l.event_id DESC LIMIT " })
                    .push_bind(i64::from(query.limit));
                let rows: Vec<$crate::rows::TimelineRow> = sql.build_query_as().fetch_all(&self.pool).await.map_err($crate::rows::backend)?;
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let mut envs = sqlx::QueryBuilder::<$db>::new(
                    "SELECT l.event_id, env.slug FROM event_environments l JOIN environments env ON env.id = l.environment_id
                     WHERE l.event_id IN (",
                );
                let mut ids = envs.separated(", ");
                for row in &rows {
                    ids.push_bind(row.id);
                }
                envs.push(") ORDER BY env.slug");
                let links: Vec<(uuid::Uuid, String)> = envs.build_query_as().fetch_all(&self.pool).await.map_err($crate::rows::backend)?;
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        let slugs = links.iter().filter(|(id, _)| *id == row.id).map(|(_, slug)| slug.clone()).collect();
                        row.into_item(slugs)
                    })
                    .collect())
            }

            async fn upsert_event(&self, org_id: uuid::Uuid, e: &domain::event::NewEvent) -> domain::store::StoreResult<(uuid::Uuid, bool)> {
                use domain::time_util::to_micros;
                let new_id = uuid::Uuid::now_v7();
                let now = to_micros(domain::time_util::now());
                let mut tx = self.pool.begin().await.map_err($crate::rows::backend)?;
                // The returned id tells an insert (our new id) from an update (the stored one).
                let mut upsert = sqlx::QueryBuilder::<$db>::new($crate::rows::EVENT_COLUMNS);
                upsert.push_values(std::iter::once(e), |row, e| $crate::rows::push_event(row, new_id, org_id, e, now));
                upsert.push(
                    " ON CONFLICT (org_id, source, source_key) DO UPDATE SET occurred_at = excluded.occurred_at,
                         title = excluded.title, actor = excluded.actor, resources = excluded.resources,
                         labels = excluded.labels, links = excluded.links, details = excluded.details,
                         updated_at = excluded.updated_at
                     RETURNING id",
                );
                let (id,): (uuid::Uuid,) = upsert
                    .build_query_as()
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::rows::backend)?;
                sqlx::query("DELETE FROM event_environments WHERE event_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::rows::backend)?;
                if !e.environment_ids.is_empty() {
                    let mut link = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO event_environments (environment_id, occurred_at, event_id, kind, read_only) ",
                    );
                    link.push_values(&e.environment_ids, |mut row, env| {
                        row.push_bind(*env).push_bind(to_micros(e.occurred_at)).push_bind(id).push_bind(e.kind.as_str()).push_bind(e.read_only);
                    });
                    link.build().execute(&mut *tx).await.map_err($crate::rows::backend)?;
                }
                tx.commit().await.map_err($crate::rows::backend)?;
                Ok((id, id == new_id))
            }

            async fn get_event(
                &self,
                org_id: uuid::Uuid,
                event_id: uuid::Uuid,
            ) -> domain::store::StoreResult<Option<(domain::timeline::TimelineItem, Option<serde_json::Value>)>> {
                let row: Option<$crate::rows::EventRow> = sqlx::query_as(
                    "SELECT id, kind, source, occurred_at, title, actor, read_only, resources, labels, links, details, original
                     FROM events WHERE org_id = $1 AND id = $2",
                )
                .bind(org_id)
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::rows::backend)?;
                let Some($crate::rows::EventRow { item: row, original }) = row else { return Ok(None) };
                let slugs: Vec<(String,)> = sqlx::query_as(
                    "SELECT env.slug FROM event_environments l JOIN environments env ON env.id = l.environment_id
                     WHERE l.event_id = $1 ORDER BY env.slug",
                )
                .bind(event_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::rows::backend)?;
                Ok(Some((row.into_item(slugs.into_iter().map(|(s,)| s).collect()), original.map(|o| o.0))))
            }

            async fn request_relink(&self, org_id: uuid::Uuid, connection_id: uuid::Uuid) -> domain::store::StoreResult<()> {
                sqlx::query("UPDATE connections SET links_version = links_version + 1, relink_cursor = NULL WHERE org_id = $1 AND id = $2")
                    .bind(org_id)
                    .bind(connection_id)
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err($crate::rows::backend)
            }

            async fn claim_relink(
                &self,
                owner: &str,
                now: time::OffsetDateTime,
                lease_until: time::OffsetDateTime,
            ) -> domain::store::StoreResult<Option<domain::import::RelinkJob>> {
                use domain::time_util::to_micros;
                let sql = format!(
                    "UPDATE connections SET relink_owner = $2, relink_leased_until = $3
                     WHERE id = (SELECT j.id FROM connections j
                                 WHERE j.relinked_version < j.links_version
                                   AND (j.relink_leased_until IS NULL OR j.relink_leased_until < $1)
                                 ORDER BY j.id LIMIT 1 {})
                       AND relinked_version < links_version
                       AND (relink_leased_until IS NULL OR relink_leased_until < $1 OR relink_owner = $2)
                     RETURNING org_id, id, links_version, relink_cursor",
                    $claim_lock
                );
                let row: Option<(uuid::Uuid, uuid::Uuid, i64, Option<uuid::Uuid>)> = sqlx::query_as(&sql)
                    .bind(to_micros(now))
                    .bind(owner)
                    .bind(to_micros(lease_until))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::rows::backend)?;
                Ok(row.map(|(org_id, connection_id, version, after)| domain::import::RelinkJob { org_id, connection_id, version, after }))
            }

            async fn linkable_events(
                &self,
                job: &domain::import::RelinkJob,
                limit: u32,
            ) -> domain::store::StoreResult<Vec<domain::import::LinkableEvent>> {
                let rows: Vec<$crate::rows::TimelineRow> = sqlx::query_as(
                    "SELECT id, kind, source, occurred_at, title, actor, read_only, resources, labels, links, details
                     FROM events WHERE org_id = $1 AND connection_id = $2 AND id > $3 ORDER BY id LIMIT $4",
                )
                .bind(job.org_id)
                .bind(job.connection_id)
                .bind(job.after.unwrap_or(uuid::Uuid::nil()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::rows::backend)?;
                Ok(rows
                    .into_iter()
                    .map(|r| {
                        let item = r.into_item(Vec::new());
                        let detail = |k: &str| item.details.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                        domain::import::LinkableEvent {
                            id: item.id,
                            occurred_at: item.occurred_at,
                            kind: item.kind,
                            read_only: item.read_only,
                            region: detail("region"),
                            event_source: detail("event_source"),
                            resources: item.resources.iter().map(|r| r.name.clone()).collect(),
                            actor: item.actor.clone(),
                        }
                    })
                    .collect())
            }

            async fn relink_batch(
                &self,
                job: &domain::import::RelinkJob,
                owner: &str,
                links: &[(domain::import::LinkableEvent, Vec<uuid::Uuid>)],
                done: bool,
                lease_until: time::OffsetDateTime,
            ) -> domain::store::StoreResult<()> {
                use domain::time_util::to_micros;
                let mut tx = self.pool.begin().await.map_err($crate::rows::backend)?;
                if !links.is_empty() {
                    let mut delete = sqlx::QueryBuilder::<$db>::new("DELETE FROM event_environments WHERE event_id IN (");
                    let mut ids = delete.separated(", ");
                    for (e, _) in links {
                        ids.push_bind(e.id);
                    }
                    delete.push(")");
                    delete.build().execute(&mut *tx).await.map_err($crate::rows::backend)?;
                    let rows: Vec<(uuid::Uuid, &domain::import::LinkableEvent)> =
                        links.iter().flat_map(|(e, envs)| envs.iter().map(move |env| (*env, e))).collect();
                    if !rows.is_empty() {
                        let mut insert = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO event_environments (environment_id, occurred_at, event_id, kind, read_only) ",
                        );
                        insert.push_values(&rows, |mut row, (env, e)| {
                            row.push_bind(*env).push_bind(to_micros(e.occurred_at)).push_bind(e.id).push_bind(e.kind.as_str()).push_bind(e.read_only);
                        });
                        insert.build().execute(&mut *tx).await.map_err($crate::rows::backend)?;
                    }
                }
                let cursor = links.last().map(|(e, _)| e.id).or(job.after);
                // Applies only while this worker holds the lease and the rules have not changed
                // again; otherwise the batch rolls back and the re-link starts over.
                let held = sqlx::query(
                    "UPDATE connections SET relink_cursor = $4, relink_leased_until = $5,
                         relinked_version = CASE WHEN $6 THEN $3 ELSE relinked_version END
                     WHERE org_id = $1 AND id = $2 AND links_version = $3 AND relink_owner = $7",
                )
                .bind(job.org_id)
                .bind(job.connection_id)
                .bind(job.version)
                .bind(cursor)
                .bind(to_micros(lease_until))
                .bind(done)
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err($crate::rows::backend)?
                .rows_affected()
                    > 0;
                if !held {
                    return Err(domain::StoreError::LeaseLost);
                }
                tx.commit().await.map_err($crate::rows::backend)
            }
        }
    };
}
