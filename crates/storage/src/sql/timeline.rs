//! The timeline query: one page of one or more environments, newest first.

use domain::event::EventKind;
use domain::store::StoreResult;
use domain::time_util::to_micros;
use domain::timeline::{StreamQuery, TimelineFilters, TimelineItem, TimelineQuery};
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::links::{RESOURCES_LOWERED, TITLE_LOWERED};
use crate::rows::{backend, like_pattern, PageRow};
use crate::SqlStore;

const ITEM_COLUMNS: &str =
    " e.id, e.kind, e.source, e.occurred_at, e.title, e.actor, e.read_only, e.resources, e.labels, e.links, e.details, \
     e.created_at, e.ingested_via";

/// The item's columns and, in the same query, the slugs of its environments (a JSON array,
/// sorted): one round trip per page.
fn item_columns<DB: Database>() -> String {
    let slugs =
        "FROM event_environments l2 JOIN environments env ON env.id = l2.environment_id WHERE l2.event_id = e.id";
    let environments = if DB::NAME == "PostgreSQL" {
        format!("(SELECT COALESCE(jsonb_agg(env.slug ORDER BY env.slug), '[]'::jsonb) {slugs})")
    } else {
        format!("(SELECT json_group_array(slug) FROM (SELECT env.slug AS slug {slugs} ORDER BY env.slug))")
    };
    format!("{ITEM_COLUMNS}, {environments} AS environments")
}

/// The page's SQL after `prefix` (`SELECT`, or `EXPLAIN … SELECT` for the benchmark's plan).
///
/// Every condition but the filters is on the link table's key or its copied columns, so one
/// environment's page is a backward range scan of (environment_id, occurred_at, event_id) that
/// stops after `limit` matches. Several environments are a merge of such scans, one per
/// environment, each stopping after `limit`: `environment_id IN (…)` with one ORDER BY would
/// read and sort every row of the window before the LIMIT (seconds for a long window). UNION
/// makes an item linked to two of them one item.
fn timeline_sql<'a, DB>(prefix: &str, org_id: Uuid, query: &'a TimelineQuery) -> QueryBuilder<'a, DB>
where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    let limit = i64::from(query.limit);
    let mut sql = QueryBuilder::new(prefix);
    let facet = driving_facet(&query.filters);
    let scan = if facet.is_some() { "f" } else { "l" };
    if let [environment_id] = query.environment_ids[..] {
        sql.push(item_columns::<DB>()).push(scan_from(facet.is_some()));
        push_scan_conditions(&mut sql, org_id, environment_id, query, facet.as_ref());
        sql.push(format!(" ORDER BY {scan}.occurred_at DESC, {scan}.event_id DESC LIMIT ")).push_bind(limit);
        return sql;
    }
    sql.push(item_columns::<DB>()).push(" FROM events e JOIN (");
    for (n, environment_id) in query.environment_ids.iter().enumerate() {
        if n > 0 {
            sql.push(" UNION ");
        }
        sql.push(format!("SELECT * FROM (SELECT {scan}.event_id, {scan}.occurred_at")).push(scan_from(facet.is_some()));
        push_scan_conditions(&mut sql, org_id, *environment_id, query, facet.as_ref());
        sql.push(format!(" ORDER BY {scan}.occurred_at DESC, {scan}.event_id DESC LIMIT ")).push_bind(limit);
        sql.push(format!(") AS scan{n}"));
    }
    sql.push(") AS page ON e.id = page.event_id ORDER BY page.occurred_at DESC, page.event_id DESC LIMIT ")
        .push_bind(limit);
    sql
}

/// The value of an item a filter asks for, that `event_facets` (migration 0016) indexes: the
/// scan then reads that value's rows of the environment, newest first, instead of walking the
/// environment's links until enough match. The most selective kind of filter leads; the others
/// (and this one again) are checked on each row found. The values migration 0019 leaves out of
/// the facets, frequent in every CloudTrail environment, never lead.
fn driving_facet(f: &TimelineFilters) -> Option<(String, &str)> {
    if let Some((key, value)) = f.labels.iter().find(|(key, _)| !key.starts_with(UNFACETED_LABELS)) {
        return Some((format!("label:{key}"), value.as_str()));
    }
    if let Some(service) = &f.service {
        return Some(("label:service".to_owned(), service.as_str()));
    }
    if let Some(actor) = &f.actor {
        return Some(("actor".to_owned(), actor.as_str()));
    }
    f.source
        .as_deref()
        .filter(|source| *source != domain::cloudtrail::SOURCE)
        .map(|source| ("source".to_owned(), source))
}

/// The labels changetrail derives for CloudTrail items (`aws.account`, `aws.region`,
/// `aws.service`), which have no facets (migration 0019).
const UNFACETED_LABELS: &str = "aws.";

/// What one environment's scan reads: its links (`l`), or one value's facet rows (`f`) and
/// their links.
fn scan_from(by_facet: bool) -> &'static str {
    if by_facet {
        " FROM event_facets f
          JOIN event_environments l
            ON l.environment_id = f.environment_id AND l.occurred_at = f.occurred_at AND l.event_id = f.event_id
          JOIN events e ON e.id = l.event_id"
    } else {
        " FROM event_environments l JOIN events e ON e.id = l.event_id"
    }
}

/// The WHERE clause of one environment's scan: the window, the cursor and the filters, the
/// window and cursor on the scanned table's key so that they bound its range.
fn push_scan_conditions<'a, DB>(
    sql: &mut QueryBuilder<'a, DB>,
    org_id: Uuid,
    environment_id: Uuid,
    query: &'a TimelineQuery,
    facet: Option<&(String, &'a str)>,
) where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    let scan = if facet.is_some() { "f" } else { "l" };
    sql.push(format!(" WHERE {scan}.environment_id = ")).push_bind(environment_id);
    if let Some((name, value)) = facet {
        sql.push(" AND f.facet = ").push_bind(name.clone());
        sql.push(" AND f.value = ").push_bind(*value);
    }
    sql.push(" AND e.org_id = ").push_bind(org_id);
    sql.push(format!(" AND {scan}.occurred_at >= ")).push_bind(to_micros(query.since));
    sql.push(format!(" AND {scan}.occurred_at <= ")).push_bind(to_micros(query.until));
    if let Some((at, id)) = query.after {
        sql.push(format!(" AND ({scan}.occurred_at < ")).push_bind(to_micros(at));
        sql.push(format!(" OR ({scan}.occurred_at = ")).push_bind(to_micros(at));
        sql.push(format!(" AND {scan}.event_id < ")).push_bind(id).push("))");
    }
    push_filters(sql, &query.filters, query.include_read_only, &query.kinds, "l");
}

/// The filters of a timeline or a stream. `read_only` and `kind` are read from `alias` (the
/// link table's copies on a timeline scan, the event's own on a stream); on the link table
/// (`l`) the texts of `q` and `resource` are tested on its copies too.
fn push_filters<'a, DB>(
    sql: &mut QueryBuilder<'a, DB>,
    f: &'a TimelineFilters,
    include_read_only: bool,
    kinds: &'a [EventKind],
    alias: &str,
) where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    if let Some(actor) = &f.actor {
        sql.push(" AND e.actor = ").push_bind(actor.as_str());
    }
    if let Some(source) = &f.source {
        sql.push(" AND (e.source = ").push_bind(source.as_str());
        sql.push(" OR e.event_source = ").push_bind(source.as_str()).push(")");
    }
    // Lowered on both sides: SQLite's LIKE ignores ASCII case and PostgreSQL's does not, and a
    // name typed in another case (a role's `OrganizationAccountAccessRole`) should match. On a
    // timeline scan the link's copy of the text (migration 0021) is tested first, in the link
    // table's key; a NULL copy (a link older than the copies, a text too long) passes to the
    // event's own test.
    for (event_text, link_copy, wanted) in
        [(RESOURCES_LOWERED, "resources_lowered", &f.resource), (TITLE_LOWERED, "title_lowered", &f.text)]
    {
        if let Some(wanted) = wanted {
            let pattern = like_pattern(&wanted.to_lowercase());
            if alias == "l" {
                sql.push(format!(" AND (l.{link_copy} IS NULL OR l.{link_copy} LIKE "))
                    .push_bind(pattern.clone())
                    .push(" ESCAPE '\\')");
            }
            sql.push(format!(" AND {event_text} LIKE ")).push_bind(pattern).push(" ESCAPE '\\'");
        }
    }
    // Labels are free-form key/value pairs: the JSON object is their storage.
    if let Some(service) = &f.service {
        sql.push(" AND e.labels ->> 'service' = ").push_bind(service.as_str());
    }
    for (key, value) in &f.labels {
        sql.push(" AND e.labels ->> ").push_bind(key.as_str()).push(" = ").push_bind(value.as_str());
    }
    if !include_read_only {
        sql.push(format!(" AND {alias}.read_only = ")).push_bind(false);
    }
    if !kinds.is_empty() {
        sql.push(format!(" AND {alias}.kind IN ("));
        let mut separated = sql.separated(", ");
        for kind in kinds {
            separated.push_bind(kind.as_str());
        }
        sql.push(")");
    }
}

/// A stream's next batch: the organisation's items stored after the position (the index
/// `events_by_creation` leads), linked to one of the environments.
fn stream_sql<'a, DB>(org_id: Uuid, query: &'a StreamQuery) -> QueryBuilder<'a, DB>
where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new("SELECT");
    sql.push(item_columns::<DB>()).push(" FROM events e WHERE e.org_id = ").push_bind(org_id);
    let after = query.after;
    sql.push(" AND (e.created_at > ").push_bind(after.stored_at);
    sql.push(" OR (e.created_at = ").push_bind(after.stored_at);
    sql.push(" AND e.id > ").push_bind(after.id).push("))");
    sql.push(" AND EXISTS (SELECT 1 FROM event_environments l WHERE l.event_id = e.id AND l.environment_id IN (");
    let mut separated = sql.separated(", ");
    for id in &query.environment_ids {
        separated.push_bind(*id);
    }
    sql.push("))");
    push_filters(&mut sql, &query.filters, query.include_read_only, &query.kinds, "e");
    sql.push(" ORDER BY e.created_at, e.id LIMIT ").push_bind(i64::from(query.limit));
    sql
}

impl SqlStore {
    pub(super) async fn timeline_page(&self, org_id: Uuid, query: &TimelineQuery) -> StoreResult<Vec<TimelineItem>> {
        if query.environment_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<PageRow> = match &self.pool {
            crate::Pool::Sqlite(pool) => {
                let mut connection = self.sqlite_with_deadline(pool).await.map_err(backend)?;
                timeline_sql::<sqlx::Sqlite>("SELECT", org_id, query).build_query_as().fetch_all(&mut *connection).await
            }
            crate::Pool::Postgres(pool) => {
                timeline_sql::<sqlx::Postgres>("SELECT", org_id, query).build_query_as().fetch_all(pool).await
            }
        }
        .map_err(backend)?;
        Ok(rows.into_iter().map(PageRow::into_item).collect())
    }

    /// A live stream's next batch (`Events::stream_items`).
    pub(super) async fn stream_batch(&self, org_id: Uuid, query: &StreamQuery) -> StoreResult<Vec<TimelineItem>> {
        if query.environment_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<PageRow> =
            on_pool!(self, |pool: Db| stream_sql::<Db>(org_id, query).build_query_as().fetch_all(pool).await)
                .map_err(backend)?;
        Ok(rows.into_iter().map(PageRow::into_item).collect())
    }

    /// The plan the database chooses for a timeline page: `EXPLAIN (ANALYZE, BUFFERS)` on
    /// PostgreSQL, `EXPLAIN QUERY PLAN` on SQLite. For the benchmark, from the same SQL.
    pub async fn explain_timeline(&self, org_id: Uuid, query: &TimelineQuery) -> anyhow::Result<Vec<String>> {
        Ok(match &self.pool {
            crate::Pool::Postgres(pool) => {
                let prefix = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT";
                let plan: Vec<(String,)> =
                    timeline_sql::<sqlx::Postgres>(prefix, org_id, query).build_query_as().fetch_all(pool).await?;
                plan.into_iter().map(|(line,)| line).collect()
            }
            crate::Pool::Sqlite(pool) => {
                let plan: Vec<(i64, i64, i64, String)> =
                    timeline_sql::<sqlx::Sqlite>("EXPLAIN QUERY PLAN SELECT", org_id, query)
                        .build_query_as()
                        .fetch_all(pool)
                        .await?;
                plan.into_iter().map(|(.., line)| line).collect()
            }
        })
    }
}
