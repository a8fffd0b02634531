//! Reading: timelines of one or several environments, one item in full, an alert's suspects.

use domain::event::{EventKind, StoredEvent};
use domain::page::{Page, PageError};
use domain::suspects::Suspect;
use domain::timeline::{TimelineItem, TimelineParams, TimelineQuery, TimelineRequest};
use domain::{Environment, EnvironmentRef, Invalid};
use uuid::Uuid;

use crate::{App, AppError, AppResult, Refusal};

/// At most this many environments in one merged timeline.
pub const MAX_ENVIRONMENTS: usize = 20;
const MAX_SUSPECT_CANDIDATES: u32 = 500;

/// An alert and the changes before it, ranked.
#[derive(Debug, Clone, PartialEq)]
pub struct Suspects {
    pub alert: TimelineItem,
    pub window_minutes: i64,
    pub items: Vec<Suspect>,
}

fn invalid_cursor(_: PageError) -> AppError {
    AppError::refused(Refusal::BadInput, "invalid_cursor", "the cursor was not issued by this server for this timeline")
}

impl App {
    /// One environment of the organisation, by UUID or slug, as found in the last second
    /// (`lookups.rs`): for reads.
    pub async fn environment(&self, org_id: Uuid, env: &str) -> AppResult<Environment> {
        if let Some(environment) = self.lookups.environment(org_id, env) {
            return Ok(environment);
        }
        let environment = self.stored_environment(org_id, env).await?;
        self.lookups.remember_environment(env, &environment);
        Ok(environment)
    }

    /// One environment as stored now: for changes to it.
    pub(crate) async fn stored_environment(&self, org_id: Uuid, env: &str) -> AppResult<Environment> {
        let reference = EnvironmentRef::parse(env).map_err(|_| AppError::NotFound("environment"))?;
        self.store.get_environment(org_id, &reference).await?.ok_or(AppError::NotFound("environment"))
    }

    /// One page of one environment's timeline.
    pub async fn timeline(&self, org_id: Uuid, env: &str, params: TimelineParams) -> AppResult<Page<TimelineItem>> {
        let environment = self.environment(org_id, env).await?;
        self.timeline_of(org_id, &environment, params).await
    }

    /// One page of the timeline of an environment already looked up.
    pub async fn timeline_of(
        &self,
        org_id: Uuid,
        environment: &Environment,
        params: TimelineParams,
    ) -> AppResult<Page<TimelineItem>> {
        let request = TimelineRequest::parse(params, domain::time_util::now())?;
        self.timeline_page(org_id, request.query(vec![environment.id]).map_err(invalid_cursor)?).await
    }

    /// One page of several environments' timelines merged; each named environment must exist.
    pub async fn timelines(
        &self,
        org_id: Uuid,
        envs: &[String],
        params: TimelineParams,
    ) -> AppResult<Page<TimelineItem>> {
        let ids = self.environment_ids(org_id, envs).await?;
        let request = TimelineRequest::parse(params, domain::time_util::now())?;
        self.timeline_page(org_id, request.query(ids).map_err(invalid_cursor)?).await
    }

    /// The ids of 1–20 environments named by UUID or slug; each must exist.
    pub async fn environment_ids(&self, org_id: Uuid, envs: &[String]) -> AppResult<Vec<Uuid>> {
        if envs.is_empty() || envs.len() > MAX_ENVIRONMENTS {
            return Err(Invalid::one("environment", format!("give 1 to {MAX_ENVIRONMENTS} environments")).into());
        }
        let refs: Vec<Option<EnvironmentRef>> = envs.iter().map(|e| EnvironmentRef::parse(e).ok()).collect();
        let found = self.store.find_environments(org_id, &refs.iter().flatten().cloned().collect::<Vec<_>>()).await?;
        let mut errors = Invalid::default();
        let mut ids = Vec::new();
        for (i, (name, reference)) in envs.iter().zip(&refs).enumerate() {
            match reference.as_ref().and_then(|r| found.iter().find(|e| r.names(e))) {
                Some(env) => ids.push(env.id),
                None => {
                    errors.push(format!("environment[{i}]"), format!("no environment {name:?} in your organisation"))
                }
            }
        }
        errors.into_result()?;
        Ok(ids)
    }

    async fn timeline_page(&self, org_id: Uuid, query: TimelineQuery) -> AppResult<Page<TimelineItem>> {
        let items = self.store.timeline(org_id, &query).await?;
        Ok(query.page(items))
    }

    /// One item in full, with its original record.
    pub async fn event(&self, org_id: Uuid, id: Uuid) -> AppResult<StoredEvent> {
        self.store.get_event(org_id, id).await?.ok_or(AppError::NotFound("event"))
    }

    /// The changes in the alert's environments in the window before it started, ranked.
    pub async fn suspects(&self, org_id: Uuid, alert_id: Uuid, window_minutes: Option<i64>) -> AppResult<Suspects> {
        let window_minutes = window_minutes.unwrap_or(120);
        if !(1..=10_080).contains(&window_minutes) {
            return Err(Invalid::one("window_minutes", "must be between 1 and 10080 (a week)").into());
        }
        let alert = self
            .store
            .get_event(org_id, alert_id)
            .await?
            .map(|stored| stored.item)
            .filter(|item| item.kind == EventKind::Alert)
            .ok_or(AppError::NotFound("alert"))?;
        let refs: Vec<EnvironmentRef> = alert
            .environments
            .iter()
            .filter_map(|slug| domain::EnvironmentSlug::parse("env", slug).ok())
            .map(EnvironmentRef::Slug)
            .collect();
        let environment_ids = self.store.find_environments(org_id, &refs).await?.into_iter().map(|e| e.id).collect();
        let window = time::Duration::minutes(window_minutes);
        let query = TimelineQuery {
            environment_ids,
            filters: Default::default(),
            since: alert.occurred_at - window,
            until: alert.occurred_at,
            kinds: vec![EventKind::Deploy, EventKind::Cloudtrail, EventKind::PullRequest, EventKind::Custom],
            include_read_only: false,
            limit: MAX_SUSPECT_CANDIDATES,
            after: None,
        };
        let candidates = self.store.timeline(org_id, &query).await?;
        let items = domain::suspects::rank(&alert, candidates, window);
        Ok(Suspects { alert, window_minutes, items })
    }
}
