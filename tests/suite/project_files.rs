//! The files next to the code stay true to it: the committed OpenAPI document, the README's
//! configuration table, docker-compose.yml and the Dockerfile.

use std::path::PathBuf;

use changetrail::config::VARIABLES;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn read(file: &str) -> String {
    std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn committed_openapi_document_is_what_the_code_generates() {
    let generated = api::openapi_document().to_pretty_json().unwrap();
    let committed = read("openapi/openapi.json");
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json differs from the code; regenerate it with\n    cargo run -q -- openapi > openapi/openapi.json"
    );
}

#[test]
fn readme_documents_every_configuration_variable() {
    let readme = read("README.md");
    for variable in VARIABLES {
        assert!(readme.contains(&format!("`{}`", variable.name)), "README.md does not document {}", variable.name);
    }
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let service = &compose["services"][name];
    assert!(!service.is_badvalue(), "docker-compose.yml has no service {name}");
    service
}

fn environment(service: &Yaml) -> Vec<(String, String)> {
    match &service["environment"] {
        Yaml::Hash(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => panic!("unexpected value {other:?}"),
                };
                (k.as_str().unwrap().to_owned(), value)
            })
            .collect(),
        Yaml::BadValue => Vec::new(),
        other => panic!("environment should be a map, got {other:?}"),
    }
}

#[test]
fn docker_compose_matches_the_configuration_code() {
    let docs = YamlLoader::load_from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML");
    let compose = &docs[0];
    let postgres = service(compose, "postgres");
    let pg_env = environment(postgres);
    let pg = |key: &str| {
        pg_env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("postgres lacks {key}"))
    };
    let expected_url =
        format!("postgres://{}:{}@postgres:5432/{}", pg("POSTGRES_USER"), pg("POSTGRES_PASSWORD"), pg("POSTGRES_DB"));

    let api = service(compose, "api");
    let worker = service(compose, "worker");
    assert_eq!(api["image"], worker["image"], "api and worker run one image");
    assert!(api["build"].as_str().is_some() || !api["build"].is_badvalue(), "the api service builds the image");
    assert_eq!(api["command"][0].as_str(), Some("api"));
    assert_eq!(worker["command"][0].as_str(), Some("worker"));

    for (name, service) in [("api", api), ("worker", worker)] {
        let env = environment(service);
        for (key, _) in &env {
            let known = VARIABLES.iter().any(|v| v.name == key) || key.starts_with("AWS_") || key == "RUST_BACKTRACE";
            assert!(known, "{name} sets {key}, which the configuration code does not read");
        }
        let url = env.iter().find(|(k, _)| k == "CHANGETRAIL_DATABASE_URL").map(|(_, v)| v.as_str());
        assert_eq!(url, Some(expected_url.as_str()), "{name} points at the postgres service");
        let depends = &service["depends_on"];
        assert!(!depends["postgres"].is_badvalue(), "{name} waits for postgres");
    }

    let api_env = environment(api);
    let listen = api_env
        .iter()
        .find(|(k, _)| k == "CHANGETRAIL_LISTEN")
        .map(|(_, v)| v.clone())
        .expect("api sets CHANGETRAIL_LISTEN");
    let listen: std::net::SocketAddr = listen.parse().expect("CHANGETRAIL_LISTEN is an address");
    assert!(listen.ip().is_unspecified(), "inside a container the API must listen on all interfaces");
    let ports: Vec<&str> =
        api["ports"].as_vec().expect("api publishes a port").iter().filter_map(Yaml::as_str).collect();
    assert!(
        ports.iter().any(|p| p.ends_with(&format!(":{}", listen.port()))),
        "a published port {ports:?} maps to the port the API listens on ({})",
        listen.port()
    );
    let health =
        api["healthcheck"]["test"].as_vec().map(|t| t.iter().filter_map(Yaml::as_str).collect::<Vec<_>>().join(" "));
    assert!(health.is_some_and(|h| h.contains("/readyz")), "the api's health check asks /readyz");
}

#[test]
fn dockerfile_builds_and_runs_the_one_binary() {
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked -p changetrail"), "it builds the changetrail binary");
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/changetrail"]"#));
    assert!(dockerfile.contains("USER "), "it does not run as root");
}

/// Every operation documents the errors it can answer: 401 and 403 where a token is needed,
/// 400/413/415/422 where a body is read, 422 where query parameters are, 404 on a path with an id,
/// and 500/503 everywhere. (They were once added to the document before its paths existed.)
#[test]
fn every_operation_documents_its_errors() {
    let document = serde_json::to_value(api::openapi_document()).unwrap();
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            let name = format!("{method} {path}");
            assert!(has("500") && has("503"), "{name}");
            if operation.get("security").is_some() {
                assert!(has("401") && has("403"), "{name}");
            }
            // PutAuditEvents answers AWS's errors (400 ValidationException for what would be a
            // 422 elsewhere, and no 415: AWS reads the body whatever its content type).
            if operation.get("requestBody").is_some() && operation["operationId"] != "put_audit_events" {
                assert!(has("400") && has("413") && has("415") && has("422"), "{name}");
            }
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            if parameters.iter().any(|p| p["in"] == "query") && operation["operationId"] != "put_audit_events" {
                assert!(has("422"), "{name}");
            }
            if parameters.iter().any(|p| p["in"] == "path") {
                assert!(has("404"), "{name}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 31, "{checked} operations");
}
