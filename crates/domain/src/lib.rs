//! changetrail's domain: the types every other crate speaks, their validation, and the storage
//! trait the backends implement. Nothing here knows HTTP or SQL.

pub mod aws;
pub mod channel;
pub mod cloudtrail;
pub mod connection;
pub mod environment;
pub mod event;
pub mod import;
pub mod linking;
pub mod noise;
pub mod organization;
pub mod page;
pub mod posted;
pub mod rule;
pub mod secret_box;
pub mod session;
pub mod source;
pub mod store;
pub mod suspects;
pub mod time_util;
pub mod timeline;
pub mod token;
pub mod validation;

pub use aws::{ExternalId, RoleArn};
pub use connection::{Connection, ConnectionSettings, ConnectionStatus, EnvironmentRule, RegisteredRole};
pub use environment::{Environment, EnvironmentPatch, EnvironmentRef, EnvironmentSlug, NewEnvironment};
pub use organization::Organization;
pub use page::{Page, PageRequest};
pub use store::{Store, StoreError};
pub use token::{ApiToken, Scope, Scopes, TokenSecret};
pub use validation::{FieldError, Invalid};
