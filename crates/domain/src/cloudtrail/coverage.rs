//! Every write record of `../shared/data/cloudtrail/` (MIT: invictus-ir/aws_dataset and
//! OTRF/Security-Datasets) and of the demo's sample names its primary resource: the figure the
//! README and the resource model are held to.

use std::path::Path;

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{normalize, RecordContext};

pub(super) fn shared_records() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cloudtrail");
    let mut records = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root.join("invictus-aws-dataset"))
        .expect("../shared/data/cloudtrail is beside the project")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in files {
        let doc: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        records.extend(doc["Records"].as_array().unwrap().iter().cloned());
    }
    for dir in std::fs::read_dir(root.join("otrf-ec2-proxy-s3-exfiltration")).unwrap() {
        let path = dir.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(path).unwrap();
            records.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()));
        }
    }
    let demo: Value = serde_json::from_str(include_str!("../../../cli/demo/cloudtrail-sample.json")).unwrap();
    records.extend(demo["Records"].as_array().unwrap().iter().cloned());
    records
}

/// A record that carries nothing a resource could be read from: a throttled call's record has
/// no `requestParameters`, no `responseElements` and no `resources`.
fn names_nothing(record: &Value) -> bool {
    ["requestParameters", "responseElements", "resources", "additionalEventData", "serviceEventDetails"]
        .iter()
        .all(|k| record.get(*k).is_none_or(|v| v.is_null() || v.as_object().is_some_and(|o| o.is_empty())))
}

#[test]
fn write_records_name_their_primary_resource() {
    let ctx = RecordContext {
        connection_id: Uuid::nil(),
        account_id: "123456789012",
        region: "us-east-1",
        fallback_time: OffsetDateTime::UNIX_EPOCH,
    };
    let writes: Vec<Value> =
        shared_records().into_iter().filter(|r| r.get("readOnly").and_then(Value::as_bool) == Some(false)).collect();
    let (mut named, mut readable, mut readable_named) = (0, 0, 0);
    let mut missing = Vec::new();
    for record in &writes {
        let n = normalize(record, &ctx);
        let has = n.event.resources.iter().any(|r| r.primary);
        named += usize::from(has);
        // A record that names nothing is counted apart, and only when it really does.
        let is_caller_event =
            matches!(record["eventSource"].as_str(), Some("signin.amazonaws.com" | "organizations.amazonaws.com"));
        if !names_nothing(record) || is_caller_event {
            readable += 1;
            readable_named += usize::from(has);
            if !has {
                missing.push(format!("{} {}", record["eventSource"], record["eventName"]));
            }
        }
    }
    let share = readable_named as f64 / readable as f64;
    eprintln!(
        "{named} of {} write records name their primary resource; {readable_named} of the {readable} that name anything ({:.1}%)",
        writes.len(),
        share * 100.0
    );
    assert!(writes.len() > 500, "the data is there: {}", writes.len());
    assert!(share >= 0.95, "{:.1}% name their primary resource; missing: {missing:?}", share * 100.0);
}
