//! The storage conformance suite: written once against `domain::Store`, run on every backend.
//! A backend that passes it behaves as the rest of changetrail expects.

use domain::connection::{ConnectionProblem, ConnectionSettings};
use domain::store::StoreError;
use domain::{ConnectionStatus, EnvironmentRule, ExternalId, RegisteredRole};
use domain::{
    EnvironmentPatch, EnvironmentRef, EnvironmentSlug, NewEnvironment, PageRequest, Scope, Scopes, TokenSecret,
};
use test_support::Backend;
use uuid::Uuid;

on_both_backends!(
    organizations_are_created_and_found,
    tokens_are_found_by_hash_only_and_scoped,
    sessions_act_as_their_token_until_expiry_sign_out_or_deletion,
    environments_round_trip_and_are_scoped,
    environment_slugs_are_unique_per_organisation,
    environment_updates_are_partial,
    pages_yield_every_item_exactly_once,
    ping_answers,
    connections_round_trip_and_keep_their_external_id,
);

fn env(name: &str, slug: &str) -> NewEnvironment {
    NewEnvironment::parse(name, Some(slug), None).unwrap()
}

async fn organizations_are_created_and_found(backend: Backend) {
    let db = db_or_skip!(backend, "organizations_are_created_and_found");
    assert!(!db.store.organization_exists().await.unwrap());
    let org = db.store.create_organization("Acme").await.unwrap();
    assert!(db.store.organization_exists().await.unwrap());
    assert_eq!(db.store.get_organization(org.id).await.unwrap(), Some(org.clone()));
    assert_eq!(db.store.get_organization(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(org.id.get_version_num(), 7);
}

async fn tokens_are_found_by_hash_only_and_scoped(backend: Backend) {
    let db = db_or_skip!(backend, "tokens_are_found_by_hash_only_and_scoped");
    let a = db.store.create_organization("a").await.unwrap();
    let b = db.store.create_organization("b").await.unwrap();
    let secret = TokenSecret::generate();
    let scopes = Scopes::new(vec![Scope::Read, Scope::Write]).unwrap();
    let token = db.store.create_token(a.id, "ci", &scopes, &secret.display_prefix(), &secret.hash()).await.unwrap();

    let found = db.store.find_token(&secret.hash()).await.unwrap().expect("found by its hash");
    assert_eq!(found, token);
    assert_eq!(found.scopes, scopes);
    assert!(found.secret_hash.matches(&secret.hash().0));
    assert!(db.store.find_token(&TokenSecret::generate().hash()).await.unwrap().is_none());

    // The same secret twice would make a token ambiguous.
    let again = db.store.create_token(b.id, "dup", &scopes, "x", &secret.hash()).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

    assert_eq!(db.store.list_tokens(b.id, PageRequest::default()).await.unwrap().items, vec![]);
    assert!(!db.store.delete_token(b.id, token.id).await.unwrap(), "another organisation cannot delete it");
    assert!(db.store.find_token(&secret.hash()).await.unwrap().is_some());
    assert!(db.store.delete_token(a.id, token.id).await.unwrap());
    assert!(db.store.find_token(&secret.hash()).await.unwrap().is_none());
}

async fn sessions_act_as_their_token_until_expiry_sign_out_or_deletion(backend: Backend) {
    use domain::session::SessionSecret;
    let db = db_or_skip!(backend, "sessions_act_as_their_token_until_expiry_sign_out_or_deletion");
    let org = db.store.create_organization("a").await.unwrap();
    let keep = TokenSecret::generate();
    db.store.create_token(org.id, "keep", &Scopes::admin(), "ct_keep", &keep.hash()).await.unwrap();
    let secret = TokenSecret::generate();
    let read = Scopes::new(vec![Scope::Read]).unwrap();
    let token = db.store.create_token(org.id, "ui", &read, "ct_ui", &secret.hash()).await.unwrap();
    let now = domain::time_util::now();
    let (a, b, expired) = (SessionSecret::generate(), SessionSecret::generate(), SessionSecret::generate());
    db.store.create_session(token.id, &expired.hash(), now - time::Duration::seconds(1)).await.unwrap();
    db.store.create_session(token.id, &a.hash(), now + time::Duration::hours(1)).await.unwrap();
    db.store.create_session(token.id, &b.hash(), now + time::Duration::hours(1)).await.unwrap();

    let found = db.store.find_session(&a.hash(), now).await.unwrap().expect("a live session");
    assert_eq!((found.id, found.org_id, found.scopes), (token.id, org.id, read));
    assert!(db.store.find_session(&expired.hash(), now).await.unwrap().is_none(), "expired");
    assert!(db.store.find_session(&a.hash(), now + time::Duration::hours(2)).await.unwrap().is_none(), "past expiry");
    assert!(db.store.find_session(&SessionSecret::generate().hash(), now).await.unwrap().is_none());

    db.store.delete_session(&a.hash()).await.unwrap();
    db.store.delete_session(&a.hash()).await.unwrap();
    assert!(db.store.find_session(&a.hash(), now).await.unwrap().is_none(), "signed out");
    assert!(db.store.find_session(&b.hash(), now).await.unwrap().is_some(), "another session of the token stays");
    assert!(db.store.delete_token(org.id, token.id).await.unwrap());
    assert!(db.store.find_session(&b.hash(), now).await.unwrap().is_none(), "the token's deletion ends its sessions");
}

async fn environments_round_trip_and_are_scoped(backend: Backend) {
    let db = db_or_skip!(backend, "environments_round_trip_and_are_scoped");
    let a = db.store.create_organization("a").await.unwrap();
    let b = db.store.create_organization("b").await.unwrap();
    let new = NewEnvironment::parse("Production", Some("prod"), Some("the one that pays")).unwrap();
    let created = db.store.create_environment(a.id, &new).await.unwrap();
    assert_eq!((created.slug.as_str(), created.name.as_str()), ("prod", "Production"));
    assert_eq!(created.description.as_deref(), Some("the one that pays"));
    assert_eq!(created.created_at, created.updated_at);

    let by_id = db.store.get_environment(a.id, &EnvironmentRef::Id(created.id)).await.unwrap();
    let by_slug = db.store.get_environment(a.id, &EnvironmentRef::Slug(created.slug.clone())).await.unwrap();
    assert_eq!(by_id.as_ref(), Some(&created), "times and fields survive the round trip exactly");
    assert_eq!(by_slug.as_ref(), Some(&created));

    assert_eq!(db.store.get_environment(b.id, &EnvironmentRef::Id(created.id)).await.unwrap(), None);
    assert_eq!(db.store.get_environment(b.id, &EnvironmentRef::Slug(created.slug.clone())).await.unwrap(), None);
    assert!(db.store.list_environments(b.id, PageRequest::default()).await.unwrap().items.is_empty());
    let patch = EnvironmentPatch::parse(Some("stolen"), None, None).unwrap();
    assert_eq!(db.store.update_environment(b.id, created.id, &patch).await.unwrap(), None);
    assert!(!db.store.delete_environment(b.id, created.id).await.unwrap());

    assert!(db.store.delete_environment(a.id, created.id).await.unwrap());
    assert_eq!(db.store.get_environment(a.id, &EnvironmentRef::Id(created.id)).await.unwrap(), None);
    assert!(!db.store.delete_environment(a.id, created.id).await.unwrap());
}

async fn environment_slugs_are_unique_per_organisation(backend: Backend) {
    let db = db_or_skip!(backend, "environment_slugs_are_unique_per_organisation");
    let a = db.store.create_organization("a").await.unwrap();
    let b = db.store.create_organization("b").await.unwrap();
    let first = db.store.create_environment(a.id, &env("Prod", "prod")).await.unwrap();
    let clash = db.store.create_environment(a.id, &env("Prod again", "prod")).await;
    match clash {
        Err(StoreError::Conflict(what)) => assert!(what.contains("prod"), "{what}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    db.store.create_environment(b.id, &env("Prod", "prod")).await.expect("another organisation may use the slug");

    let staging = db.store.create_environment(a.id, &env("Staging", "staging")).await.unwrap();
    let rename = EnvironmentPatch::parse(None, Some("prod"), None).unwrap();
    let result = db.store.update_environment(a.id, staging.id, &rename).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    let unchanged = db.store.get_environment(a.id, &EnvironmentRef::Id(first.id)).await.unwrap().unwrap();
    assert_eq!(unchanged, first);
}

async fn environment_updates_are_partial(backend: Backend) {
    let db = db_or_skip!(backend, "environment_updates_are_partial");
    let org = db.store.create_organization("a").await.unwrap();
    let new = NewEnvironment::parse("Staging", Some("staging"), Some("pre-prod")).unwrap();
    let created = db.store.create_environment(org.id, &new).await.unwrap();

    let rename = EnvironmentPatch::parse(Some("Staging EU"), None, None).unwrap();
    let renamed = db.store.update_environment(org.id, created.id, &rename).await.unwrap().unwrap();
    assert_eq!(renamed.name, "Staging EU");
    assert_eq!(renamed.slug, created.slug);
    assert_eq!(renamed.description.as_deref(), Some("pre-prod"), "an absent field is left as it is");
    assert!(renamed.updated_at >= created.updated_at);
    assert_eq!(renamed.created_at, created.created_at);

    let clear = EnvironmentPatch::parse(None, Some("staging-eu"), Some(None)).unwrap();
    let cleared = db.store.update_environment(org.id, created.id, &clear).await.unwrap().unwrap();
    assert_eq!(cleared.description, None);
    assert_eq!(cleared.slug, EnvironmentSlug::parse("slug", "staging-eu").unwrap());
    assert_eq!(cleared.name, "Staging EU");
}

async fn pages_yield_every_item_exactly_once(backend: Backend) {
    let db = db_or_skip!(backend, "pages_yield_every_item_exactly_once");
    let org = db.store.create_organization("a").await.unwrap();
    let other = db.store.create_organization("b").await.unwrap();
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            db.store.create_environment(org.id, &env(&format!("Env {i}"), &format!("env-{i}"))).await.unwrap().id,
        );
        db.store.create_environment(other.id, &env(&format!("Other {i}"), &format!("env-{i}"))).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut page = PageRequest { limit: 3, after: None };
    let mut pages = 0;
    loop {
        let result = db.store.list_environments(org.id, page).await.unwrap();
        assert!(result.items.len() <= 3);
        seen.extend(result.items.iter().map(|e| e.id));
        pages += 1;
        match result.next_cursor {
            Some(cursor) => page = PageRequest::parse(Some(3), Some(&cursor)).unwrap(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every environment once, in creation order, none of the other organisation's");

    let exact = db.store.list_environments(org.id, PageRequest { limit: 7, after: None }).await.unwrap();
    assert_eq!(exact.items.len(), 7);
    assert_eq!(exact.next_cursor, None, "no cursor when nothing is left");
}

async fn ping_answers(backend: Backend) {
    let db = db_or_skip!(backend, "ping_answers");
    db.store.ping().await.unwrap();
}

async fn connections_round_trip_and_keep_their_external_id(backend: Backend) {
    let db = db_or_skip!(backend, "connections_round_trip_and_keep_their_external_id");
    let a = db.store.create_organization("a").await.unwrap();
    let b = db.store.create_organization("b").await.unwrap();
    let slug = EnvironmentSlug::parse("slug", "prod").unwrap();
    let settings = ConnectionSettings {
        name: "prod account".into(),
        regions: vec!["us-east-1".into(), "eu-west-1".into()],
        default_environment: Some(slug.clone()),
        environment_rules: vec![EnvironmentRule {
            environment: slug,
            regions: Some(vec!["eu-west-1".into()]),
            event_sources: None,
            resource_pattern: Some("arn:aws:ecs:*".into()),
            actor_pattern: None,
        }],
        lookback_days: 30,
        include_read_only: true,
        enabled: true,
        event_filter: Default::default(),
        session_duration_seconds: 3600,
    };
    let external_id = ExternalId::generate();
    let created = db.store.create_connection(a.id, &settings, &external_id).await.unwrap();
    assert_eq!(created.settings, settings);
    assert_eq!(created.external_id, external_id);
    assert_eq!(created.status, ConnectionStatus::PendingRole);
    assert_eq!(db.store.get_connection(a.id, created.id).await.unwrap(), Some(created.clone()));
    assert_eq!(db.store.get_connection(b.id, created.id).await.unwrap(), None);
    assert!(db.store.list_connections(b.id, PageRequest::default()).await.unwrap().items.is_empty());

    let same_id = db.store.create_connection(b.id, &settings, &external_id).await;
    assert!(
        matches!(same_id, Err(StoreError::Conflict(_))),
        "external IDs are unique across organisations: {same_id:?}"
    );

    let changed =
        ConnectionSettings { name: "renamed".into(), enabled: false, environment_rules: vec![], ..settings.clone() };
    assert_eq!(db.store.update_connection_settings(b.id, created.id, &changed).await.unwrap(), None);
    let updated = db.store.update_connection_settings(a.id, created.id, &changed).await.unwrap().unwrap();
    assert_eq!(updated.settings, changed);
    assert_eq!(updated.external_id, external_id, "settings never touch the external ID");

    let problem =
        ConnectionProblem { code: "assume_role_denied".into(), message: "no".into(), at: domain::time_util::now() };
    let pending = db.store.record_connection_problem(a.id, created.id, &problem, false).await.unwrap().unwrap();
    assert_eq!((pending.status, pending.last_error.clone()), (ConnectionStatus::PendingRole, Some(problem.clone())));

    let role = RegisteredRole {
        role_arn: Some("arn:aws:iam::222222222222:role/r".into()),
        via: vec![],
        account_id: "222222222222".into(),
        assumed_role_arn: "arn:aws:sts::222222222222:assumed-role/r/s".into(),
        validated_at: domain::time_util::now(),
        credentials: domain::connection::CredentialSource::Role,
    };
    assert_eq!(db.store.register_role(b.id, created.id, &role).await.unwrap(), None);
    let active = db.store.register_role(a.id, created.id, &role).await.unwrap().unwrap();
    assert_eq!(active.status, ConnectionStatus::Active);
    assert_eq!(
        (active.role_arn.as_deref(), active.account_id.as_deref()),
        (role.role_arn.as_deref(), Some("222222222222"))
    );
    assert_eq!(active.validated_at, Some(role.validated_at));
    assert_eq!(active.last_error, None, "registering clears the last error");
    assert_eq!(active.external_id, external_id);

    let broken = db.store.record_connection_problem(a.id, created.id, &problem, true).await.unwrap().unwrap();
    assert_eq!(broken.status, ConnectionStatus::Error);
    assert_eq!(broken.role_arn, active.role_arn, "a broken role stays registered");

    let of_account = db.store.connections_of_account(a.id, "222222222222").await.unwrap();
    assert_eq!(of_account.iter().map(|c| c.id).collect::<Vec<_>>(), vec![created.id]);
    assert!(db.store.connections_of_account(b.id, "222222222222").await.unwrap().is_empty());

    assert!(!db.store.delete_connection(b.id, created.id).await.unwrap());
    assert!(db.store.delete_connection(a.id, created.id).await.unwrap());
    assert_eq!(db.store.get_connection(a.id, created.id).await.unwrap(), None);
}
