//! For each event `summary` knows, a record and the title an on-call engineer reads: real
//! records of `../shared/data/cloudtrail/` by their eventID, and records built as CloudTrail
//! writes them (the shapes of AWS's documented examples) for events the data does not have.

use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::coverage::shared_records;
use super::{normalize, RecordContext};

enum Record {
    /// A real record, by its eventID.
    Real(&'static str),
    Built(Value),
}

fn built(source: &str, name: &str, request: Value, response: Value) -> Record {
    Record::Built(json!({
        "eventVersion": "1.09", "eventTime": "2026-11-30T10:00:00Z", "eventSource": source, "eventName": name,
        "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.7", "userAgent": "aws-cli/2.15",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::123456789012:user/alice",
                         "accountId": "123456789012", "userName": "alice"},
        "requestParameters": request, "responseElements": response, "eventID": format!("built-{name}"),
        "readOnly": false, "eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": "123456789012"
    }))
}

fn table() -> Vec<(Record, &'static str)> {
    vec![
        (Record::Real("7e96f0e7-4d78-423d-b3f5-391370685b30"), "bert-jan opened tcp/443 to 0.0.0.0/0 on security group sg-04cfb7a4712d75b00"),
        (
            built("ec2.amazonaws.com", "AuthorizeSecurityGroupIngress",
                json!({"groupId": "sg-0abc1234def567890", "ipPermissions": {"items": [{"ipProtocol": "tcp", "fromPort": 22, "toPort": 22,
                    "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}, "ipv6Ranges": {}, "groups": {}, "prefixListIds": {}}]}}),
                json!({"_return": true})),
            "alice opened tcp/22 to 0.0.0.0/0 on security group sg-0abc1234def567890",
        ),
        (Record::Real("914469fc-c658-434c-a560-0219c0ac3b55"), "bert-jan allowed outbound all traffic to 0.0.0.0/0 and ::/0 from security group sg-04cfb7a4712d75b00"),
        (Record::Real("8733f811-267d-4c46-8e5b-000fe7c6a9f2"), "bert-jan closed tcp/22 to 0.0.0.0/0 on security group sg-04cfb7a4712d75b00"),
        (Record::Real("8fe3095f-909c-41f5-a769-00b9ec6e95df"), "bert-jan shared image ami-0aa1d83d0b0985c86 with account 012345678901"),
        (Record::Real("3ad01b1d-ebc1-4830-994b-9210534ab9f2"), "bert-jan stopped sharing snapshot snap-083d3b857c13988bc with account 012345678912"),
        (
            built("ec2.amazonaws.com", "ModifySnapshotAttribute",
                json!({"snapshotId": "snap-0123456789abcdef0", "attributeType": "CREATE_VOLUME_PERMISSION",
                       "createVolumePermission": {"add": {"items": [{"group": "all"}]}}}),
                json!({"_return": true})),
            "alice made snapshot snap-0123456789abcdef0 public",
        ),
        (Record::Real("2d19ab1e-82e9-4302-ad10-a405b50c8d49"), "bert-jan shared DB snapshot exfiltration with account 193672423079"),
        (
            built("rds.amazonaws.com", "ModifyDBSnapshotAttribute",
                json!({"dBSnapshotIdentifier": "orders-nightly", "attributeName": "restore", "valuesToAdd": ["all"]}), json!({})),
            "alice made DB snapshot orders-nightly public",
        ),
        (Record::Real("988f1043-3e3d-4d84-803b-1b4d00e0df90"), "bert-jan set the policy of bucket stratus-red-team-ctes-bucket-qyxyekjbtk"),
        (
            built("s3.amazonaws.com", "PutBucketPolicy",
                json!({"bucketName": "web-assets", "bucketPolicy": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::web-assets/*"}]}}),
                Value::Null),
            "alice set the policy of bucket web-assets, allowing anyone",
        ),
        (Record::Real("b921a62d-9241-42a2-bb3c-6821e55c20cd"), "bert-jan removed the policy of bucket stratus-red-team-bdbp-lhfzvgcamn"),
        (
            built("s3.amazonaws.com", "PutBucketAcl",
                json!({"bucketName": "web-assets", "AccessControlPolicy": {"AccessControlList": {"Grant": [{"Grantee": {
                    "xsi:type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"}]}}}),
                Value::Null),
            "alice made bucket web-assets public through its ACL",
        ),
        (
            built("s3.amazonaws.com", "PutBucketPublicAccessBlock",
                json!({"bucketName": "web-assets", "PublicAccessBlockConfiguration": {"BlockPublicAcls": false,
                    "IgnorePublicAcls": false, "BlockPublicPolicy": true, "RestrictPublicBuckets": true}}),
                Value::Null),
            "alice turned off BlockPublicAcls and IgnorePublicAcls of bucket web-assets",
        ),
        (
            built("s3.amazonaws.com", "DeleteBucketPublicAccessBlock", json!({"bucketName": "web-assets", "publicAccessBlock": ""}), Value::Null),
            "alice removed the public access block of bucket web-assets",
        ),
        (Record::Real("edc26fa8-655a-4346-9e18-f79b0d9e25de"), "bert-jan attached AmazonSSMManagedInstanceCore to role stratus-red-team-ec2-steal-credentials-role"),
        (Record::Real("a1e18dc9-e6c5-4f76-83a6-52a74457e2b9"), "bert-jan detached AmazonSSMManagedInstanceCore from role stratus-red-team-usr-data-role"),
        (Record::Real("f4923a37-92d5-4dfd-9786-6caef2b5f33c"), "bert-jan attached AdministratorAccess to user malicious-iam-user"),
        (Record::Real("7dfa2d8e-aa3d-44d1-bd90-d990f58311e0"), "bert-jan detached AdministratorAccess from user malicious-iam-user"),
        (Record::Real("6c1eed73-00ee-4810-8009-c9ce5990c100"), "bert-jan put inline policy inline-policy on role stratus-red-team-ec2-get-password-data-role"),
        (
            built("iam.amazonaws.com", "PutUserPolicy",
                json!({"userName": "ci", "policyName": "everything",
                       "policyDocument": "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}]}"}),
                Value::Null),
            "alice put inline policy everything on user ci, allowing every action on every resource",
        ),
        (Record::Real("53c16e86-82f9-4bfd-bbc3-6e5239b09cb5"), "bert-jan deleted inline policy stratus-red-team-remove-flow-logs-policy from role stratus-red-team-remove-flow-logs-role"),
        (Record::Real("64b7de64-bf53-47ae-b7e3-d30cb1b5136e"), "bert-jan created access key AKIATFQR7NSC3ZO6PKAZ for user stratus-red-team-backdoor-u-user"),
        (Record::Real("20e603c0-e2d6-4bc4-9f25-031d3e314950"), "bert-jan deleted access key AKIATFQR7NSCQLA2F4OD of user malicious-iam-user"),
        (
            built("iam.amazonaws.com", "UpdateAccessKey", json!({"userName": "ci", "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "status": "Inactive"}), Value::Null),
            "alice deactivated access key AKIAIOSFODNN7EXAMPLE of user ci",
        ),
        (Record::Real("f0d7bb15-75c8-4770-a500-92d1f71b948c"), "bert-jan gave user stratus-red-team-login-profile-user a console password"),
        (Record::Real("059cf0ed-af91-40a6-9c89-a8a4fb81dc65"), "bert-jan changed who can assume role stratus-red-team-backdoor-r-role: ec2.amazonaws.com"),
        (
            built("iam.amazonaws.com", "DeactivateMFADevice",
                json!({"userName": "bob", "serialNumber": "arn:aws:iam::123456789012:mfa/bob"}), Value::Null),
            "alice removed MFA device bob of user bob",
        ),
        (built("iam.amazonaws.com", "AddUserToGroup", json!({"groupName": "admins", "userName": "mallory"}), Value::Null), "alice added user mallory to group admins"),
        (Record::Real("70e5932e-9022-4b38-837e-ca10dad94eb7"), "stratus-red-team-nmfalu-gfjyeaypjt signed in to the console without MFA"),
        (
            Record::Built(json!({
                "eventVersion": "1.08", "eventTime": "2026-11-30T10:00:00Z", "eventSource": "signin.amazonaws.com",
                "eventName": "ConsoleLogin", "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.7",
                "userIdentity": {"type": "Root", "principalId": "123456789012", "arn": "arn:aws:iam::123456789012:root", "accountId": "123456789012"},
                "requestParameters": null, "responseElements": {"ConsoleLogin": "Success"},
                "additionalEventData": {"LoginTo": "https://console.aws.amazon.com/", "MobileVersion": "No", "MFAUsed": "No"},
                "eventID": "built-root-login", "readOnly": false, "eventType": "AwsConsoleSignIn", "recipientAccountId": "123456789012"
            })),
            "root signed in to the console as root without MFA",
        ),
        (Record::Real("74b4a7d6-764d-4ec8-bbd4-91e7a84e6780"), "bert-jan passed the MFA check of a console sign-in"),
        (built("kms.amazonaws.com", "DisableKey", json!({"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"}), Value::Null), "alice disabled KMS key 1234abcd-12ab-34cd-56ef-1234567890ab"),
        (
            built("kms.amazonaws.com", "ScheduleKeyDeletion", json!({"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "pendingWindowInDays": 7}),
                json!({"keyId": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", "deletionDate": "Dec 7, 2026, 10:00:00 AM"})),
            "alice scheduled KMS key 1234abcd-12ab-34cd-56ef-1234567890ab for deletion in 7 days",
        ),
        (built("cloudtrail.amazonaws.com", "StopLogging", json!({"name": "org-trail"}), Value::Null), "alice stopped logging of trail org-trail"),
        (Record::Real("2f8e806b-355c-49fc-9ac6-7cea7d864938"), "bert-jan started logging of trail stratus-red-team-ctlr-trail-zqfsvooxqj"),
        (Record::Real("fcec2e46-3cc3-4ac2-8144-3674f06990e4"), "bert-jan deleted trail stratus-red-team-ctes-trail-qyxyekjbtk"),
        (
            built("cloudtrail.amazonaws.com", "UpdateTrail",
                json!({"name": "org-trail", "s3BucketName": "elsewhere", "isMultiRegionTrail": false}),
                json!({"name": "org-trail", "trailARN": "arn:aws:cloudtrail:us-east-1:123456789012:trail/org-trail"})),
            "alice changed isMultiRegionTrail and s3BucketName of trail org-trail",
        ),
        (Record::Real("076e96d5-2983-473f-920a-2fc2d7e02777"), "bert-jan narrowed which events trail stratus-red-team-ctes-trail-qyxyekjbtk records"),
        (Record::Real("de58d903-38d7-4f30-a84b-b79d858e8376"), "bert-jan deleted flow logs fl-064ed3a785e4a37ef"),
        (Record::Real("1bb6c2f9-b96b-485d-92ad-380e4be8b1b1"), "bert-jan turned off termination protection of instance i-0dbc91f429e48eeed"),
        (
            built("ec2.amazonaws.com", "ModifyInstanceAttribute", json!({"instanceId": "i-0123456789abcdef0", "instanceType": {"value": "m5.large"}}), json!({"_return": true})),
            "alice changed the instance type of i-0123456789abcdef0 to m5.large",
        ),
        (Record::Real("86eac0ac-8521-4126-aa32-a22f2b74d02e"), "bert-jan launched t3.micro instance i-0dbc91f429e48eeed from ami-029eb80bc237bec6f"),
        (Record::Real("2d893b1d-e8f2-499b-a558-cb927d9b48ea"), "bert-jan terminated instance i-0dbc91f429e48eeed"),
        (Record::Real("6445452c-c6df-4ebf-a1ed-2890f5aa7107"), "bert-jan routed 0.0.0.0/0 to igw-02a84e4222d62e16b in route table rtb-0c7c2f4aff3677054"),
        (
            built("ec2.amazonaws.com", "CreateNetworkAclEntry",
                json!({"networkAclId": "acl-0123456789abcdef0", "ruleNumber": 100, "egress": false, "ruleAction": "allow",
                       "aclProtocol": "6", "portRange": {"from": 3389, "to": 3389}, "cidrBlock": "0.0.0.0/0"}),
                json!({"_return": true})),
            "alice allowed inbound tcp/3389 from 0.0.0.0/0 in network ACL acl-0123456789abcdef0 (rule 100)",
        ),
        (
            built("autoscaling.amazonaws.com", "UpdateAutoScalingGroup", json!({"autoScalingGroupName": "web", "minSize": 0, "maxSize": 0}), Value::Null),
            "alice set the size of auto scaling group web to min 0, max 0",
        ),
        (Record::Real("0ea8187c-26a8-425d-8daf-48479996e44d"), "bert-jan changed the code of function stratus-red-team-olc-func-xhfgzaowxc"),
        (
            built("lambda.amazonaws.com", "UpdateFunctionConfiguration20150331v2",
                json!({"functionName": "checkout", "environment": {"variables": "HIDDEN_DUE_TO_SECURITY_REASONS"}, "timeout": 30}), json!({})),
            "alice changed environment and timeout of function checkout",
        ),
        (Record::Real("b1f37249-bb39-4b9c-a302-e6d0f807d70c"), "bert-jan allowed anyone to call lambda:InvokeFunction on function stratus-red-team-backdoor-f-func"),
        (
            built("ecs.amazonaws.com", "UpdateService", json!({"cluster": "prod", "service": "checkout", "desiredCount": 0}), json!({})),
            "alice set the desired count of service checkout to 0",
        ),
        (built("guardduty.amazonaws.com", "DeleteDetector", json!({"detectorId": "12abc34d567e8fa901bc2d34eexample"}), Value::Null), "alice turned off GuardDuty (deleted detector 12abc34d567e8fa901bc2d34eexample)"),
        (built("config.amazonaws.com", "StopConfigurationRecorder", json!({"configurationRecorderName": "default"}), Value::Null), "alice stopped the AWS Config recorder default"),
        (built("monitoring.amazonaws.com", "DeleteAlarms", json!({"alarmNames": ["api-5xx", "api-latency"]}), Value::Null), "alice deleted alarms api-5xx and api-latency"),
        (Record::Real("dbf59de5-4d63-4aca-9fce-a657f5df89c9"), "bert-jan deleted secret stratus-red-team-retrieve-secret-7-nFvpuv at once, without recovery"),
        (
            Record::Built(json!({
                "eventVersion": "1.08", "eventTime": "2026-11-30T10:00:00Z", "eventSource": "organizations.amazonaws.com",
                "eventName": "LeaveOrganization", "awsRegion": "us-east-1",
                "userIdentity": {"type": "Root", "principalId": "123456789012", "arn": "arn:aws:iam::123456789012:root", "accountId": "123456789012"},
                "requestParameters": null, "responseElements": null, "eventID": "built-leave", "readOnly": false,
                "eventType": "AwsApiCall", "recipientAccountId": "123456789012"
            })),
            "root took account 123456789012 out of its organization",
        ),
    ]
}

#[test]
fn titles_say_what_changed() {
    let ctx = RecordContext {
        connection_id: Uuid::nil(),
        account_id: "123456789012",
        region: "us-east-1",
        fallback_time: OffsetDateTime::UNIX_EPOCH,
    };
    let shared = shared_records();
    let mut wrong = Vec::new();
    let mut events = std::collections::BTreeSet::new();
    for (record, expected) in table() {
        let record = match record {
            Record::Real(id) => {
                shared.iter().find(|r| r["eventID"] == id).unwrap_or_else(|| panic!("{id} is in the data")).clone()
            }
            Record::Built(r) => r,
        };
        let n = normalize(&record, &ctx);
        let details = n.event.details.cloudtrail().unwrap();
        events.insert(details.event_name.clone());
        let summary = details.summary.as_deref().unwrap_or_else(|| panic!("{} has a summary", details.event_name));
        assert!(n.event.title.ends_with(summary), "the title is made from the summary: {}", n.event.title);
        assert!(
            !details.changes.is_empty() || details.event_name == "CheckMfa",
            "{} says what it changed",
            details.event_name
        );
        assert!(
            n.event.resources.first().is_some_and(|r| r.primary),
            "{} names its resource first",
            details.event_name
        );
        if n.event.title != expected {
            wrong.push(format!("{}: {:?}", details.event_name, n.event.title));
        }
    }
    assert!(events.len() >= 30, "{} events have summaries", events.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
