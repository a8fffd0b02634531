//! Which environments an imported event belongs to, by its connection's rules. Pure: no I/O.

use globset::{Glob, GlobMatcher};

use crate::connection::EnvironmentRule;
use crate::environment::EnvironmentSlug;
use crate::event::{Details, NewEvent, Resource};
use crate::import::LinkableEvent;

/// What the rules look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFacts<'a> {
    pub region: &'a str,
    pub event_source: &'a str,
    /// Resource names and ARNs.
    pub resources: Vec<&'a str>,
    pub actor: Option<&'a str>,
}

impl<'a> LinkFacts<'a> {
    /// The facts of an item, the same whether it is being imported or re-linked: CloudTrail's
    /// region and event source come from its typed record.
    pub fn of(details: &'a Details, resources: &'a [Resource], actor: Option<&'a str>) -> LinkFacts<'a> {
        let cloudtrail = details.cloudtrail();
        LinkFacts {
            region: cloudtrail.map_or("", |d| d.region.as_str()),
            event_source: cloudtrail.map_or("", |d| d.event_source.as_str()),
            resources: resources
                .iter()
                .flat_map(|r| std::iter::once(r.name.as_str()).chain(r.arn.as_deref()))
                .collect(),
            actor,
        }
    }

    pub fn of_event(event: &'a NewEvent) -> LinkFacts<'a> {
        LinkFacts::of(&event.details, &event.resources, event.actor.as_deref())
    }

    pub fn of_stored(event: &'a LinkableEvent) -> LinkFacts<'a> {
        LinkFacts::of(&event.details, &event.resources, event.actor.as_deref())
    }
}

/// A connection's linker and the ids of the environments its rules name, as one page or one
/// pushed event is linked with. Rules that name an environment that no longer exists link to
/// nothing.
pub struct ConnectionLinker {
    linker: Linker,
    ids: std::collections::HashMap<EnvironmentSlug, uuid::Uuid>,
    /// The connection's count of rule changes these rules are from: the store refuses what was
    /// linked under an older one.
    pub links_version: i64,
}

impl ConnectionLinker {
    /// The connection's rules with the environments they name resolved to ids, in one query.
    pub async fn load(store: &dyn crate::Store, connection: &crate::Connection) -> crate::store::StoreResult<Self> {
        let refs: Vec<_> = crate::Connection::referenced_environments(&connection.settings)
            .into_iter()
            .map(|(_, slug)| crate::EnvironmentRef::Slug(slug))
            .collect();
        let environments = store.find_environments(connection.org_id, &refs).await?;
        Ok(ConnectionLinker::new(connection, environments))
    }

    /// `environments` are the organisation's environments the connection's rules name
    /// (`Connection::referenced_environments`), as the store found them.
    pub fn new(connection: &crate::Connection, environments: Vec<crate::Environment>) -> ConnectionLinker {
        ConnectionLinker {
            linker: Linker::new(
                &connection.settings.environment_rules,
                connection.settings.default_environment.as_ref(),
            ),
            ids: environments.into_iter().map(|e| (e.slug, e.id)).collect(),
            links_version: connection.links_version,
        }
    }

    pub fn environment_ids(&self, facts: &LinkFacts<'_>) -> Vec<uuid::Uuid> {
        self.linker.environments(facts).iter().filter_map(|slug| self.ids.get(slug).copied()).collect()
    }
}

struct CompiledRule {
    environment: EnvironmentSlug,
    regions: Option<Vec<String>>,
    event_sources: Option<Vec<String>>,
    resource: Option<GlobMatcher>,
    actor: Option<GlobMatcher>,
}

/// A connection's rules, compiled once and applied to many events.
pub struct Linker {
    rules: Vec<CompiledRule>,
    default: Option<EnvironmentSlug>,
}

fn matcher(pattern: &Option<String>) -> Option<GlobMatcher> {
    // Patterns are validated when rules are written; one that no longer compiles matches nothing.
    pattern.as_ref().map(|p| {
        Glob::new(p).map(|g| g.compile_matcher()).unwrap_or_else(|_| Glob::new("[]").unwrap().compile_matcher())
    })
}

impl Linker {
    pub fn new(rules: &[EnvironmentRule], default: Option<&EnvironmentSlug>) -> Linker {
        let rules = rules
            .iter()
            .map(|r| CompiledRule {
                environment: r.environment.clone(),
                regions: r.regions.clone(),
                event_sources: r.event_sources.clone(),
                resource: matcher(&r.resource_pattern),
                actor: matcher(&r.actor_pattern),
            })
            .collect();
        Linker { rules, default: default.cloned() }
    }

    /// Every environment whose rule matches (each condition given must hold), sorted and
    /// without duplicates; the default environment only when no rule matches.
    pub fn environments(&self, facts: &LinkFacts<'_>) -> Vec<EnvironmentSlug> {
        let mut matched: Vec<EnvironmentSlug> = self
            .rules
            .iter()
            .filter(|rule| {
                rule.regions.as_ref().is_none_or(|r| r.iter().any(|x| x == facts.region))
                    && rule.event_sources.as_ref().is_none_or(|s| s.iter().any(|x| x == facts.event_source))
                    && rule.resource.as_ref().is_none_or(|m| facts.resources.iter().any(|r| m.is_match(r)))
                    && rule.actor.as_ref().is_none_or(|m| facts.actor.is_some_and(|a| m.is_match(a)))
            })
            .map(|rule| rule.environment.clone())
            .collect();
        matched.sort();
        matched.dedup();
        if matched.is_empty() {
            matched.extend(self.default.clone());
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(s: &str) -> EnvironmentSlug {
        EnvironmentSlug::parse("slug", s).unwrap()
    }

    fn rule(env: &str) -> EnvironmentRule {
        EnvironmentRule {
            environment: slug(env),
            regions: None,
            event_sources: None,
            resource_pattern: None,
            actor_pattern: None,
        }
    }

    #[test]
    fn every_condition_of_a_rule_must_hold() {
        let rules = vec![
            EnvironmentRule {
                regions: Some(vec!["eu-west-1".into()]),
                event_sources: Some(vec!["ec2.amazonaws.com".into()]),
                ..rule("prod-eu")
            },
            EnvironmentRule { resource_pattern: Some("*staging*".into()), ..rule("staging") },
            EnvironmentRule { actor_pattern: Some("deploy-*".into()), ..rule("deploys") },
        ];
        let linker = Linker::new(&rules, Some(&slug("unsorted")));
        let ec2_eu = LinkFacts {
            region: "eu-west-1",
            event_source: "ec2.amazonaws.com",
            resources: vec!["sg-1"],
            actor: Some("alice"),
        };
        assert_eq!(linker.environments(&ec2_eu), [slug("prod-eu")]);
        let ec2_us = LinkFacts { region: "us-east-1", ..ec2_eu.clone() };
        assert_eq!(linker.environments(&ec2_us), [slug("unsorted")], "region condition fails: default");
        let staging_by_bot = LinkFacts {
            region: "eu-west-1",
            event_source: "ec2.amazonaws.com",
            resources: vec!["arn:aws:ecs:x:service/staging-api"],
            actor: Some("deploy-bot"),
        };
        assert_eq!(
            linker.environments(&staging_by_bot),
            [slug("deploys"), slug("prod-eu"), slug("staging")],
            "an event may belong to several"
        );
        let no_actor = LinkFacts { actor: None, resources: vec![], ..ec2_us };
        assert_eq!(linker.environments(&no_actor), [slug("unsorted")]);
    }

    #[test]
    fn no_rules_and_no_default_links_nowhere() {
        let linker = Linker::new(&[], None);
        assert!(linker.environments(&LinkFacts::default()).is_empty());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const REGIONS: &[&str] = &["us-east-1", "eu-west-1", "ap-south-1"];
        const SOURCES: &[&str] = &["ec2.amazonaws.com", "iam.amazonaws.com", "s3.amazonaws.com"];
        const ENVS: &[&str] = &["prod", "staging", "dev", "shared"];
        const PATTERNS: &[&str] = &["*", "sg-*", "*prod*", "arn:aws:s3:::*", "deploy-*", "alice"];

        fn pick(from: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
            proptest::sample::select(from)
        }

        fn rule() -> impl Strategy<Value = EnvironmentRule> {
            (
                pick(ENVS),
                proptest::option::of(proptest::collection::vec(pick(REGIONS), 1..3)),
                proptest::option::of(proptest::collection::vec(pick(SOURCES), 1..3)),
                proptest::option::of(pick(PATTERNS)),
                proptest::option::of(pick(PATTERNS)),
            )
                .prop_map(|(env, regions, sources, resource, actor)| EnvironmentRule {
                    environment: slug(env),
                    regions: regions.map(|r| r.into_iter().map(str::to_owned).collect()),
                    event_sources: sources.map(|s| s.into_iter().map(str::to_owned).collect()),
                    resource_pattern: resource.map(str::to_owned),
                    actor_pattern: actor.map(str::to_owned),
                })
        }

        fn facts() -> impl Strategy<Value = (String, String, Vec<String>, Option<String>)> {
            (
                pick(REGIONS),
                pick(SOURCES),
                proptest::collection::vec(pick(&["sg-123", "arn:aws:s3:::prod-logs", "i-0abc", "staging-db"]), 0..3),
                proptest::option::of(pick(&["alice", "deploy-bot", "bob"])),
            )
                .prop_map(|(r, s, res, a)| {
                    (r.to_owned(), s.to_owned(), res.into_iter().map(str::to_owned).collect(), a.map(str::to_owned))
                })
        }

        proptest! {
            #[test]
            fn the_order_of_rules_does_not_change_the_result(
                rules in proptest::collection::vec(rule(), 0..6),
                seed in any::<u64>(),
                (region, source, resources, actor) in facts(),
            ) {
                let facts = LinkFacts { region: &region, event_source: &source, resources: resources.iter().map(String::as_str).collect(), actor: actor.as_deref() };
                let default = slug("unsorted");
                let mut shuffled = rules.clone();
                // A deterministic shuffle from the seed.
                let n = shuffled.len().max(1);
                shuffled.rotate_left((seed as usize) % n);
                if seed % 2 == 0 { shuffled.reverse(); }
                prop_assert_eq!(Linker::new(&rules, Some(&default)).environments(&facts), Linker::new(&shuffled, Some(&default)).environments(&facts));
            }

            #[test]
            fn the_default_is_used_exactly_when_no_rule_matches(
                rules in proptest::collection::vec(rule(), 0..6),
                (region, source, resources, actor) in facts(),
            ) {
                let facts = LinkFacts { region: &region, event_source: &source, resources: resources.iter().map(String::as_str).collect(), actor: actor.as_deref() };
                let default = slug("unsorted");
                let with_default = Linker::new(&rules, Some(&default)).environments(&facts);
                let without = Linker::new(&rules, None).environments(&facts);
                if without.is_empty() {
                    prop_assert_eq!(with_default, vec![default]);
                } else {
                    prop_assert!(!with_default.contains(&default));
                    prop_assert_eq!(with_default, without);
                }
            }

            #[test]
            fn every_environment_linked_comes_from_a_rule_or_the_default(
                rules in proptest::collection::vec(rule(), 0..6),
                (region, source, resources, actor) in facts(),
            ) {
                let facts = LinkFacts { region: &region, event_source: &source, resources: resources.iter().map(String::as_str).collect(), actor: actor.as_deref() };
                let default = slug("unsorted");
                for env in Linker::new(&rules, Some(&default)).environments(&facts) {
                    prop_assert!(env == default || rules.iter().any(|r| r.environment == env));
                }
            }
        }
    }
}
