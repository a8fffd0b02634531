//! What a CloudTrail change is about: its primary resource (the thing that changed) and the
//! resources related to it, read from the record's `requestParameters`, `responseElements`,
//! `additionalEventData` and `serviceEventDetails` by per-service knowledge kept as tables, and
//! from the ARNs and EC2 ids the record holds. LookupEvents' `Resources` fill in what the record
//! does not name.

use serde_json::Value;

use crate::event::Resource;

/// A kind of AWS resource: its CloudFormation type name, how an ARN of it is written (`{p}`
/// partition, `{r}` region, `{a}` account, `{id}`), and the noun event names use for it.
#[derive(Debug)]
struct Kind {
    key: &'static str,
    type_name: &'static str,
    arn: &'static str,
    /// `SecurityGroup` in `AuthorizeSecurityGroupIngress`; empty when no event names it alone.
    noun: &'static str,
}

macro_rules! kinds {
    ($(($key:literal, $type_name:literal, $arn:literal, $noun:literal)),* $(,)?) => {
        &[$(Kind { key: $key, type_name: $type_name, arn: $arn, noun: $noun }),*]
    };
}

const KINDS: &[Kind] = kinds![
    ("ec2:instance", "AWS::EC2::Instance", "arn:{p}:ec2:{r}:{a}:instance/{id}", "Instance"),
    ("ec2:security-group", "AWS::EC2::SecurityGroup", "arn:{p}:ec2:{r}:{a}:security-group/{id}", "SecurityGroup"),
    ("ec2:security-group-rule", "AWS::EC2::SecurityGroupRule", "arn:{p}:ec2:{r}:{a}:security-group-rule/{id}", ""),
    ("ec2:vpc", "AWS::EC2::VPC", "arn:{p}:ec2:{r}:{a}:vpc/{id}", "Vpc"),
    ("ec2:subnet", "AWS::EC2::Subnet", "arn:{p}:ec2:{r}:{a}:subnet/{id}", "Subnet"),
    ("ec2:route-table", "AWS::EC2::RouteTable", "arn:{p}:ec2:{r}:{a}:route-table/{id}", "RouteTable"),
    ("ec2:route-table-association", "AWS::EC2::SubnetRouteTableAssociation", "", "RouteTable"),
    (
        "ec2:internet-gateway",
        "AWS::EC2::InternetGateway",
        "arn:{p}:ec2:{r}:{a}:internet-gateway/{id}",
        "InternetGateway"
    ),
    ("ec2:nat-gateway", "AWS::EC2::NatGateway", "arn:{p}:ec2:{r}:{a}:natgateway/{id}", "NatGateway"),
    ("ec2:network-acl", "AWS::EC2::NetworkAcl", "arn:{p}:ec2:{r}:{a}:network-acl/{id}", "NetworkAcl"),
    (
        "ec2:network-interface",
        "AWS::EC2::NetworkInterface",
        "arn:{p}:ec2:{r}:{a}:network-interface/{id}",
        "NetworkInterface"
    ),
    ("ec2:network-interface-attachment", "AWS::EC2::NetworkInterfaceAttachment", "", "NetworkInterface"),
    ("ec2:volume", "AWS::EC2::Volume", "arn:{p}:ec2:{r}:{a}:volume/{id}", "Volume"),
    ("ec2:snapshot", "AWS::EC2::Snapshot", "arn:{p}:ec2:{r}::snapshot/{id}", "Snapshot"),
    ("ec2:image", "AWS::EC2::Image", "arn:{p}:ec2:{r}::image/{id}", "Image"),
    ("ec2:elastic-ip", "AWS::EC2::EIP", "arn:{p}:ec2:{r}:{a}:elastic-ip/{id}", "Address"),
    ("ec2:flow-log", "AWS::EC2::FlowLog", "arn:{p}:ec2:{r}:{a}:vpc-flow-log/{id}", "FlowLog"),
    ("ec2:launch-template", "AWS::EC2::LaunchTemplate", "arn:{p}:ec2:{r}:{a}:launch-template/{id}", "LaunchTemplate"),
    ("ec2:vpc-endpoint", "AWS::EC2::VPCEndpoint", "arn:{p}:ec2:{r}:{a}:vpc-endpoint/{id}", "VpcEndpoint"),
    ("ec2:transit-gateway", "AWS::EC2::TransitGateway", "arn:{p}:ec2:{r}:{a}:transit-gateway/{id}", "TransitGateway"),
    (
        "ec2:vpc-peering-connection",
        "AWS::EC2::VPCPeeringConnection",
        "arn:{p}:ec2:{r}:{a}:vpc-peering-connection/{id}",
        "VpcPeeringConnection"
    ),
    ("ec2:key-pair", "AWS::EC2::KeyPair", "arn:{p}:ec2:{r}:{a}:key-pair/{id}", "KeyPair"),
    ("iam:user", "AWS::IAM::User", "arn:{p}:iam::{a}:user/{id}", "User"),
    ("iam:role", "AWS::IAM::Role", "arn:{p}:iam::{a}:role/{id}", "Role"),
    ("iam:group", "AWS::IAM::Group", "arn:{p}:iam::{a}:group/{id}", "Group"),
    ("iam:policy", "AWS::IAM::ManagedPolicy", "arn:{p}:iam::{a}:policy/{id}", ""),
    ("iam:inline-policy", "AWS::IAM::Policy", "", ""),
    ("iam:instance-profile", "AWS::IAM::InstanceProfile", "arn:{p}:iam::{a}:instance-profile/{id}", "InstanceProfile"),
    ("iam:access-key", "AWS::IAM::AccessKey", "", "AccessKey"),
    ("iam:mfa-device", "AWS::IAM::MFADevice", "arn:{p}:iam::{a}:mfa/{id}", "MFADevice"),
    ("iam:assumed-role", "AWS::STS::AssumedRole", "arn:{p}:sts::{a}:assumed-role/{id}", ""),
    ("s3:bucket", "AWS::S3::Bucket", "arn:{p}:s3:::{id}", "Bucket"),
    ("kms:key", "AWS::KMS::Key", "arn:{p}:kms:{r}:{a}:key/{id}", "Key"),
    ("kms:alias", "AWS::KMS::Alias", "arn:{p}:kms:{r}:{a}:{id}", "Alias"),
    ("cloudtrail:trail", "AWS::CloudTrail::Trail", "arn:{p}:cloudtrail:{r}:{a}:trail/{id}", "Trail"),
    ("logs:log-group", "AWS::Logs::LogGroup", "arn:{p}:logs:{r}:{a}:log-group:{id}", "LogGroup"),
    ("monitoring:alarm", "AWS::CloudWatch::Alarm", "arn:{p}:cloudwatch:{r}:{a}:alarm:{id}", "Alarm"),
    ("lambda:function", "AWS::Lambda::Function", "arn:{p}:lambda:{r}:{a}:function:{id}", "Function"),
    ("ecs:cluster", "AWS::ECS::Cluster", "arn:{p}:ecs:{r}:{a}:cluster/{id}", "Cluster"),
    ("ecs:service", "AWS::ECS::Service", "arn:{p}:ecs:{r}:{a}:service/{id}", "Service"),
    ("ecs:task-definition", "AWS::ECS::TaskDefinition", "arn:{p}:ecs:{r}:{a}:task-definition/{id}", "TaskDefinition"),
    ("eks:cluster", "AWS::EKS::Cluster", "arn:{p}:eks:{r}:{a}:cluster/{id}", "Cluster"),
    ("eks:nodegroup", "AWS::EKS::Nodegroup", "arn:{p}:eks:{r}:{a}:nodegroup/{id}", "Nodegroup"),
    ("rds:db", "AWS::RDS::DBInstance", "arn:{p}:rds:{r}:{a}:db:{id}", "DBInstance"),
    ("rds:db-cluster", "AWS::RDS::DBCluster", "arn:{p}:rds:{r}:{a}:cluster:{id}", "DBCluster"),
    ("rds:db-snapshot", "AWS::RDS::DBSnapshot", "arn:{p}:rds:{r}:{a}:snapshot:{id}", "DBSnapshot"),
    (
        "rds:db-cluster-snapshot",
        "AWS::RDS::DBClusterSnapshot",
        "arn:{p}:rds:{r}:{a}:cluster-snapshot:{id}",
        "DBClusterSnapshot"
    ),
    ("rds:db-subnet-group", "AWS::RDS::DBSubnetGroup", "arn:{p}:rds:{r}:{a}:subgrp:{id}", "DBSubnetGroup"),
    (
        "elasticloadbalancing:load-balancer",
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "arn:{p}:elasticloadbalancing:{r}:{a}:loadbalancer/{id}",
        "LoadBalancer"
    ),
    (
        "elasticloadbalancing:target-group",
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        "arn:{p}:elasticloadbalancing:{r}:{a}:targetgroup/{id}",
        "TargetGroup"
    ),
    (
        "elasticloadbalancing:listener",
        "AWS::ElasticLoadBalancingV2::Listener",
        "arn:{p}:elasticloadbalancing:{r}:{a}:listener/{id}",
        "Listener"
    ),
    ("autoscaling:group", "AWS::AutoScaling::AutoScalingGroup", "", "AutoScalingGroup"),
    ("autoscaling:launch-configuration", "AWS::AutoScaling::LaunchConfiguration", "", "LaunchConfiguration"),
    ("route53:hosted-zone", "AWS::Route53::HostedZone", "arn:{p}:route53:::hostedzone/{id}", "HostedZone"),
    ("secretsmanager:secret", "AWS::SecretsManager::Secret", "arn:{p}:secretsmanager:{r}:{a}:secret:{id}", "Secret"),
    ("ssm:parameter", "AWS::SSM::Parameter", "arn:{p}:ssm:{r}:{a}:parameter/{id}", "Parameter"),
    ("ssm:document", "AWS::SSM::Document", "arn:{p}:ssm:{r}:{a}:document/{id}", "Document"),
    ("ssm:association", "AWS::SSM::Association", "arn:{p}:ssm:{r}:{a}:association/{id}", "Association"),
    ("organizations:account", "AWS::Organizations::Account", "", "Account"),
    ("organizations:policy", "AWS::Organizations::Policy", "", "Policy"),
    ("organizations:ou", "AWS::Organizations::OrganizationalUnit", "", "OrganizationalUnit"),
    (
        "rolesanywhere:trust-anchor",
        "AWS::RolesAnywhere::TrustAnchor",
        "arn:{p}:rolesanywhere:{r}:{a}:trust-anchor/{id}",
        "TrustAnchor"
    ),
    ("rolesanywhere:profile", "AWS::RolesAnywhere::Profile", "arn:{p}:rolesanywhere:{r}:{a}:profile/{id}", "Profile"),
    ("guardduty:detector", "AWS::GuardDuty::Detector", "arn:{p}:guardduty:{r}:{a}:detector/{id}", "Detector"),
    ("config:recorder", "AWS::Config::ConfigurationRecorder", "", "ConfigurationRecorder"),
];

/// The keys that name a resource in a service's records (compared without case, so
/// `SubnetId` and `subnetId` are one). `*` applies to every service.
const KEYS: &[(&str, &str, &str)] = &[
    ("ec2", "groupId", "ec2:security-group"),
    ("ec2", "groupName", "ec2:security-group"),
    ("ec2", "instanceId", "ec2:instance"),
    ("ec2", "vpcId", "ec2:vpc"),
    ("ec2", "subnetId", "ec2:subnet"),
    ("ec2", "volumeId", "ec2:volume"),
    ("ec2", "snapshotId", "ec2:snapshot"),
    ("ec2", "imageId", "ec2:image"),
    ("ec2", "keyName", "ec2:key-pair"),
    ("iam", "userName", "iam:user"),
    ("iam", "roleName", "iam:role"),
    ("iam", "groupName", "iam:group"),
    ("iam", "policyName", "iam:inline-policy"),
    ("iam", "instanceProfileName", "iam:instance-profile"),
    ("iam", "accessKeyId", "iam:access-key"),
    ("iam", "serialNumber", "iam:mfa-device"),
    ("iam", "virtualMFADeviceName", "iam:mfa-device"),
    ("s3", "bucketName", "s3:bucket"),
    ("s3control", "bucketName", "s3:bucket"),
    ("*", "s3BucketName", "s3:bucket"),
    ("*", "bucket", "s3:bucket"),
    ("kms", "keyId", "kms:key"),
    ("kms", "targetKeyId", "kms:key"),
    ("kms", "aliasName", "kms:alias"),
    ("cloudtrail", "name", "cloudtrail:trail"),
    ("cloudtrail", "trailName", "cloudtrail:trail"),
    ("logs", "logGroupName", "logs:log-group"),
    ("monitoring", "alarmName", "monitoring:alarm"),
    ("monitoring", "alarmNames", "monitoring:alarm"),
    ("lambda", "functionName", "lambda:function"),
    ("ecs", "cluster", "ecs:cluster"),
    ("ecs", "clusterName", "ecs:cluster"),
    ("ecs", "service", "ecs:service"),
    ("ecs", "serviceName", "ecs:service"),
    ("ecs", "taskDefinition", "ecs:task-definition"),
    ("ecs", "family", "ecs:task-definition"),
    ("eks", "name", "eks:cluster"),
    ("eks", "clusterName", "eks:cluster"),
    ("eks", "nodegroupName", "eks:nodegroup"),
    ("rds", "dBInstanceIdentifier", "rds:db"),
    ("rds", "dBClusterIdentifier", "rds:db-cluster"),
    ("rds", "dBSnapshotIdentifier", "rds:db-snapshot"),
    ("rds", "dBClusterSnapshotIdentifier", "rds:db-cluster-snapshot"),
    ("rds", "dBSubnetGroupName", "rds:db-subnet-group"),
    ("elasticloadbalancing", "loadBalancerName", "elasticloadbalancing:load-balancer"),
    ("autoscaling", "autoScalingGroupName", "autoscaling:group"),
    ("autoscaling", "launchConfigurationName", "autoscaling:launch-configuration"),
    ("route53", "hostedZoneId", "route53:hosted-zone"),
    ("route53", "id", "route53:hosted-zone"),
    ("secretsmanager", "secretId", "secretsmanager:secret"),
    ("secretsmanager", "name", "secretsmanager:secret"),
    ("ssm", "name", "ssm:parameter"),
    ("ssm", "names", "ssm:parameter"),
    ("ssm", "documentName", "ssm:document"),
    ("ssm", "associationId", "ssm:association"),
    ("organizations", "accountId", "organizations:account"),
    ("organizations", "policyId", "organizations:policy"),
    ("organizations", "organizationalUnitId", "organizations:ou"),
    ("rolesanywhere", "trustAnchorId", "rolesanywhere:trust-anchor"),
    ("rolesanywhere", "profileId", "rolesanywhere:profile"),
    ("guardduty", "detectorId", "guardduty:detector"),
    ("config", "configurationRecorderName", "config:recorder"),
];

/// EC2 ids say what they are: `sg-0abc…` is a security group wherever it appears.
const EC2_ID_PREFIXES: &[(&str, &str)] = &[
    ("i", "ec2:instance"),
    ("sg", "ec2:security-group"),
    ("sgr", "ec2:security-group-rule"),
    ("vpc", "ec2:vpc"),
    ("subnet", "ec2:subnet"),
    ("rtb", "ec2:route-table"),
    ("rtbassoc", "ec2:route-table-association"),
    ("igw", "ec2:internet-gateway"),
    ("nat", "ec2:nat-gateway"),
    ("acl", "ec2:network-acl"),
    ("eni", "ec2:network-interface"),
    ("eni-attach", "ec2:network-interface-attachment"),
    ("vol", "ec2:volume"),
    ("snap", "ec2:snapshot"),
    ("ami", "ec2:image"),
    ("eipalloc", "ec2:elastic-ip"),
    ("fl", "ec2:flow-log"),
    ("lt", "ec2:launch-template"),
    ("vpce", "ec2:vpc-endpoint"),
    ("tgw", "ec2:transit-gateway"),
    ("pcx", "ec2:vpc-peering-connection"),
    ("key", "ec2:key-pair"),
];

/// Events whose primary resource is not the one their name's noun points at: the keys to take
/// it from, in order, and its kind.
const PRIMARY: &[(&str, &str, &str, &[&str])] = &[
    ("iam", "AttachRolePolicy", "iam:role", &["roleName"]),
    ("iam", "DetachRolePolicy", "iam:role", &["roleName"]),
    ("iam", "PutRolePolicy", "iam:role", &["roleName"]),
    ("iam", "DeleteRolePolicy", "iam:role", &["roleName"]),
    ("iam", "PutRolePermissionsBoundary", "iam:role", &["roleName"]),
    ("iam", "UpdateAssumeRolePolicy", "iam:role", &["roleName"]),
    ("iam", "AttachUserPolicy", "iam:user", &["userName"]),
    ("iam", "DetachUserPolicy", "iam:user", &["userName"]),
    ("iam", "PutUserPolicy", "iam:user", &["userName"]),
    ("iam", "DeleteUserPolicy", "iam:user", &["userName"]),
    ("iam", "AttachGroupPolicy", "iam:group", &["groupName"]),
    ("iam", "DetachGroupPolicy", "iam:group", &["groupName"]),
    ("iam", "PutGroupPolicy", "iam:group", &["groupName"]),
    ("iam", "DeleteGroupPolicy", "iam:group", &["groupName"]),
    ("iam", "AddUserToGroup", "iam:group", &["groupName"]),
    ("iam", "RemoveUserFromGroup", "iam:group", &["groupName"]),
    ("iam", "AddRoleToInstanceProfile", "iam:instance-profile", &["instanceProfileName"]),
    ("iam", "RemoveRoleFromInstanceProfile", "iam:instance-profile", &["instanceProfileName"]),
    ("iam", "CreateLoginProfile", "iam:user", &["userName"]),
    ("iam", "UpdateLoginProfile", "iam:user", &["userName"]),
    ("iam", "DeleteLoginProfile", "iam:user", &["userName"]),
    ("iam", "CreatePolicy", "iam:policy", &["arn", "policyName"]),
    ("iam", "CreatePolicyVersion", "iam:policy", &["policyArn"]),
    ("iam", "DeletePolicy", "iam:policy", &["policyArn"]),
    ("iam", "EnableMFADevice", "iam:user", &["userName"]),
    ("iam", "DeactivateMFADevice", "iam:user", &["userName"]),
    ("kms", "CreateAlias", "kms:alias", &["aliasName"]),
    ("kms", "UpdateAlias", "kms:alias", &["aliasName"]),
    ("kms", "DeleteAlias", "kms:alias", &["aliasName"]),
    ("kms", "PutKeyPolicy", "kms:key", &["keyId"]),
    ("ec2", "CreateRoute", "ec2:route-table", &["routeTableId"]),
    ("ec2", "ReplaceRoute", "ec2:route-table", &["routeTableId"]),
    ("ec2", "DeleteRoute", "ec2:route-table", &["routeTableId"]),
    ("ec2", "CreateNetworkAclEntry", "ec2:network-acl", &["networkAclId"]),
    ("ec2", "ReplaceNetworkAclEntry", "ec2:network-acl", &["networkAclId"]),
    ("ec2", "DeleteNetworkAclEntry", "ec2:network-acl", &["networkAclId"]),
    ("ec2", "CreateTags", "", &["resourceId"]),
    ("ec2", "DeleteTags", "", &["resourceId"]),
    ("lambda", "AddPermission", "lambda:function", &["functionName"]),
    ("lambda", "RemovePermission", "lambda:function", &["functionName"]),
    ("rolesanywhere", "CreateTrustAnchor", "rolesanywhere:trust-anchor", &["trustAnchorArn", "trustAnchorId", "name"]),
    ("rolesanywhere", "CreateProfile", "rolesanywhere:profile", &["profileArn", "profileId", "name"]),
    ("s3", "PutBucketPublicAccessBlock", "s3:bucket", &["bucketName"]),
    ("s3", "DeleteBucketPublicAccessBlock", "s3:bucket", &["bucketName"]),
    ("sts", "AssumeRole", "iam:role", &["roleArn"]),
    ("autoscaling", "UpdateAutoScalingGroup", "autoscaling:group", &["autoScalingGroupName"]),
    ("ecs", "UpdateService", "ecs:service", &["service"]),
];

/// Keys whose values are never resources however they are named: tags, hosts, tokens, policy
/// texts, and the resource kinds that some records state beside an id.
const IGNORED_KEYS: &[&str] = &[
    "tagSpecificationSet",
    "TagSpecification",
    "tagSet",
    "tags",
    "tagsList",
    "Tagging",
    "tagList",
    "Host",
    "clientToken",
    "ClientToken",
    "clientRequestToken",
    "requestId",
    "policyDocument",
    "assumeRolePolicyDocument",
    "resourceType",
    "ResourceType",
    "statement",
];

/// Events a caller performs on themselves (signing in, an account leaving its organisation):
/// their resource is the caller, or the caller's account.
const SUBJECT_IS_CALLER: &[(&str, &str)] = &[
    ("signin", "*"),
    ("sts", "GetSessionToken"),
    ("sts", "GetFederationToken"),
    ("iam", "ChangePassword"),
    ("organizations", "LeaveOrganization"),
];

fn kind(key: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.key == key)
}

/// Where a record was made, for the ARNs derived from ids.
pub struct Place<'a> {
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
}

fn derived_arn(kind: &Kind, id: &str, place: &Place<'_>) -> Option<String> {
    if kind.arn.is_empty() || id.is_empty() {
        return None;
    }
    let partition = crate::aws::partition_of_region(place.region).unwrap_or("aws");
    // A parameter's name starts with `/`, which its ARN does not repeat.
    let id = if kind.key == "ssm:parameter" { id.trim_start_matches('/') } else { id };
    Some(
        kind.arn
            .replace("{p}", partition)
            .replace("{r}", place.region)
            .replace("{a}", place.account)
            .replace("{id}", id),
    )
}

/// `arn:aws:ec2:us-east-1:1:security-group/sg-1` → the kind whose ARN form it has, and its id.
fn kind_of_arn(arn: &str) -> Option<(&'static Kind, String)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some(service), Some(_), Some(_), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let service = if service == "cloudwatch" { "monitoring" } else { service };
    let mut best: Option<(&'static Kind, String)> = None;
    for kind in KINDS.iter().filter(|k| k.key.split(':').next() == Some(service) && !k.arn.is_empty()) {
        let template = kind.arn.splitn(6, ':').nth(5).unwrap_or("");
        let prefix = template.strip_suffix("{id}").unwrap_or(template);
        if let Some(id) = resource.strip_prefix(prefix) {
            if best.as_ref().is_none_or(|(b, _)| b.arn.len() < kind.arn.len()) {
                best = Some((kind, id.to_owned()));
            }
        }
    }
    // An alias ARN's resource is `alias/name`, which the alias keeps as its name.
    best.map(|(k, id)| (k, if k.key == "kms:alias" { resource.to_owned() } else { id }))
}

fn ec2_kind_of_id(value: &str) -> Option<&'static Kind> {
    let (prefix, rest) = value.rsplit_once('-')?;
    let hex = rest.len() >= 8 && rest.len() <= 17 && rest.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return None;
    }
    EC2_ID_PREFIXES.iter().find(|(p, _)| *p == prefix).and_then(|(_, k)| kind(k))
}

/// A resource found in a record, before it is chosen primary or related.
#[derive(Debug, Clone)]
struct Found {
    kind: Option<&'static Kind>,
    key: String,
    name: String,
    arn: Option<String>,
}

impl Found {
    fn into_resource(self, primary: bool) -> Resource {
        Resource { resource_type: self.kind.map(|k| k.type_name.to_owned()), name: self.name, arn: self.arn, primary }
    }
}

fn keyed_kind(service: &str, key: &str) -> Option<&'static Kind> {
    KEYS.iter()
        .find(|(s, k, _)| (*s == service || *s == "*") && k.eq_ignore_ascii_case(key))
        .and_then(|(_, _, kind_key)| kind(kind_key))
}

/// Reads one string value: an ARN, an EC2 id, or a value under a key the service names
/// resources with.
fn found(service: &str, key: &str, value: &str, place: &Place<'_>) -> Option<Found> {
    let value = value.trim();
    if value.is_empty() || value.len() > 2048 {
        return None;
    }
    if value.starts_with("arn:") {
        let (kind, id) = match kind_of_arn(value) {
            Some((k, id)) => (Some(k), id),
            None => (None, value.rsplit([':', '/']).next().unwrap_or(value).to_owned()),
        };
        let name = if id.is_empty() { value.to_owned() } else { id };
        return Some(Found { kind, key: key.to_owned(), name, arn: Some(value.to_owned()) });
    }
    let kind = ec2_kind_of_id(value).or_else(|| keyed_kind(service, key))?;
    Some(Found { kind: Some(kind), key: key.to_owned(), name: value.to_owned(), arn: derived_arn(kind, value, place) })
}

/// The string values of a record's parts, with their keys, in document order; bounded so a
/// huge record costs little.
fn walk<'a>(value: &'a Value, key: &'a str, depth: usize, budget: &mut usize, out: &mut Vec<(&'a str, &'a str)>) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    match value {
        Value::String(s) => out.push((key, s)),
        Value::Array(items) if depth < 6 => {
            for item in items {
                walk(item, key, depth + 1, budget, out);
            }
        }
        Value::Object(map) if depth < 6 => {
            for (k, v) in map {
                if !IGNORED_KEYS.contains(&k.as_str()) {
                    walk(v, k, depth + 1, budget, out);
                }
            }
        }
        _ => {}
    }
}

/// The event name's words after its verb, without an API version suffix:
/// `UpdateFunctionCode20150331v2` → `FunctionCode`.
fn event_noun(event_name: &str) -> &str {
    let base = event_name.trim_end_matches(|c: char| c.is_ascii_digit() || c == 'v');
    let base = if base.is_empty() { event_name } else { base };
    let verb_end = base.char_indices().skip(1).find(|(_, c)| c.is_uppercase()).map_or(base.len(), |(i, _)| i);
    &base[verb_end..]
}

const MAX_RESOURCES: usize = 10;

/// The primary resource first (marked `primary`), then the related ones; LookupEvents'
/// `Resources` (`listed`) are kept too, and are the primary when the record names nothing.
pub fn resources_of(record: &Value, event_name: &str, place: &Place<'_>, listed: &[Resource]) -> Vec<Resource> {
    let service = place.service;
    let mut pairs = Vec::new();
    let mut budget = 2000;
    // What a call creates is in its response: read that first, so the new thing comes before
    // the things it was made from.
    let creates = ["Create", "Run", "Allocate", "Register", "Copy", "Import"].iter().any(|v| event_name.starts_with(v));
    let parts: &[&str] = if creates {
        &["responseElements", "requestParameters", "additionalEventData", "serviceEventDetails"]
    } else {
        &["requestParameters", "responseElements", "additionalEventData", "serviceEventDetails"]
    };
    for part in parts {
        if let Some(v) = record.get(*part) {
            walk(v, part, 0, &mut budget, &mut pairs);
        }
    }
    let mut found_all: Vec<Found> = Vec::new();
    for (key, value) in pairs {
        if let Some(f) = found(service, key, value, place) {
            let duplicate = found_all.iter().any(|g| {
                g.name == f.name
                    && (g.kind.map(|k| k.key) == f.kind.map(|k| k.key) || g.arn.is_some() && g.arn == f.arn)
            });
            if !duplicate {
                found_all.push(f);
            }
        }
    }

    let primary_at = choose_primary(record, service, event_name, &mut found_all, place);
    let mut out = Vec::with_capacity(found_all.len().min(MAX_RESOURCES) + listed.len());
    if let Some(at) = primary_at {
        out.push(found_all.remove(at).into_resource(true));
    }
    out.extend(found_all.into_iter().map(|f| f.into_resource(false)));
    for r in listed.iter().filter(|r| !r.name.is_empty()) {
        let known = out.iter().any(|o| o.name == r.name || o.arn.as_deref() == Some(r.name.as_str()));
        if !known {
            out.push(listed_resource(r));
        }
    }
    if out.is_empty() {
        // Nothing the tables know: the request's keys that look like names, as before.
        out = super::resources_from_request(record);
    }
    if !out.iter().any(|r| r.primary) {
        if let Some(first) = out.first_mut() {
            first.primary = true;
        }
    }
    out.truncate(MAX_RESOURCES);
    out
}

/// A resource LookupEvents listed (or a record's `resources[]`): an ARN gets its kind and
/// short name; anything else is kept as it came.
fn listed_resource(r: &Resource) -> Resource {
    if r.name.starts_with("arn:") {
        if let Some((kind, id)) = kind_of_arn(&r.name) {
            return Resource {
                resource_type: Some(kind.type_name.to_owned()),
                name: if id.is_empty() { r.name.clone() } else { id },
                arn: Some(r.name.clone()),
                primary: false,
            };
        }
        return Resource { arn: Some(r.name.clone()), primary: false, ..r.clone() };
    }
    Resource { primary: false, ..r.clone() }
}

/// Which of the found resources the event is about: the table's keys for the event, else the
/// caller for events done to oneself, else the one whose kind the event's name names (the
/// longest such noun wins: `DBClusterSnapshot` over `DBCluster`), else the first found.
fn choose_primary(
    record: &Value,
    service: &str,
    event_name: &str,
    found_all: &mut Vec<Found>,
    place: &Place<'_>,
) -> Option<usize> {
    let base = event_name.trim_end_matches(|c: char| c.is_ascii_digit() || c == 'v');
    if let Some((_, _, kind_key, keys)) = PRIMARY.iter().find(|(s, e, _, _)| *s == service && *e == base) {
        for key in *keys {
            if let Some(at) = found_all.iter().position(|f| f.key.eq_ignore_ascii_case(key)) {
                return Some(at);
            }
            // A key the tables do not type (a trail's or a trust anchor's `name`) is read here.
            if let (Some(kind), Some(value)) = (kind(kind_key), first_value(record, key)) {
                let f = found(service, key, value, place).unwrap_or(Found {
                    kind: Some(kind),
                    key: (*key).to_owned(),
                    name: value.to_owned(),
                    arn: derived_arn(kind, value, place),
                });
                let f = Found { kind: f.kind.or(Some(kind)), ..f };
                found_all.insert(0, f);
                return Some(0);
            }
        }
    }
    let is_caller_event = SUBJECT_IS_CALLER.iter().any(|(s, e)| *s == service && (*e == "*" || *e == base));
    if is_caller_event {
        if let Some(f) = caller(record, place) {
            found_all.insert(0, f);
            return Some(0);
        }
    }
    let noun = event_noun(event_name);
    let by_noun = found_all
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let n = f.kind?.noun;
            (!n.is_empty() && noun.contains(n)).then_some((i, n.len()))
        })
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
    match by_noun {
        Some((i, _)) => Some(i),
        None if !found_all.is_empty() => Some(0),
        None => None,
    }
}

fn first_value<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    let mut pairs = Vec::new();
    let mut budget = 500;
    for part in ["responseElements", "requestParameters"] {
        if let Some(v) = record.get(part) {
            walk(v, part, 0, &mut budget, &mut pairs);
        }
    }
    pairs.into_iter().find(|(k, v)| k.eq_ignore_ascii_case(key) && !v.trim().is_empty()).map(|(_, v)| v)
}

/// The identity that made the call (a user, a role), or, for an account-wide act such as
/// leaving the organisation, the account.
fn caller(record: &Value, place: &Place<'_>) -> Option<Found> {
    if place.service == "organizations" {
        let account = record.get("recipientAccountId").and_then(Value::as_str).unwrap_or(place.account);
        return (!account.is_empty()).then(|| Found {
            kind: kind("organizations:account"),
            key: "recipientAccountId".into(),
            name: account.to_owned(),
            arn: None,
        });
    }
    let identity = record.get("userIdentity")?;
    let arn = identity.get("arn").and_then(Value::as_str).filter(|a| a.starts_with("arn:"));
    match arn {
        Some(arn) => {
            let (kind, id) = kind_of_arn(arn).map_or((None, arn.to_owned()), |(k, id)| (Some(k), id));
            Some(Found { kind, key: "userIdentity.arn".into(), name: id, arn: Some(arn.to_owned()) })
        }
        None => {
            let name = identity.get("userName").and_then(Value::as_str).filter(|n| !n.is_empty())?;
            let kind = kind("iam:user")?;
            Some(Found {
                kind: Some(kind),
                key: "userIdentity.userName".into(),
                name: name.to_owned(),
                arn: derived_arn(kind, name, place),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn place(service: &str) -> Place<'_> {
        Place { service, region: "us-east-1", account: "123456789012" }
    }

    fn primary(record: Value, service: &str) -> Resource {
        let name = record["eventName"].as_str().unwrap().to_owned();
        resources_of(&record, &name, &place(service), &[]).into_iter().find(|r| r.primary).expect("a primary")
    }

    #[test]
    fn the_thing_changed_not_the_first_thing_named() {
        let r = primary(
            json!({"eventName": "UpdateTrail", "requestParameters": {
                "name": "org-trail", "cloudWatchLogsLogGroupArn": "arn:aws:logs:us-east-1:123456789012:log-group:ct:*",
                "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}}),
            "cloudtrail",
        );
        assert_eq!(r.name, "org-trail");
        assert_eq!(r.resource_type.as_deref(), Some("AWS::CloudTrail::Trail"));
        assert_eq!(r.arn.as_deref(), Some("arn:aws:cloudtrail:us-east-1:123456789012:trail/org-trail"));

        let r = primary(
            json!({"eventName": "CreateAlias", "requestParameters": {"aliasName": "alias/app", "targetKeyId": "1234abcd"}}),
            "kms",
        );
        assert_eq!((r.name.as_str(), r.resource_type.as_deref()), ("alias/app", Some("AWS::KMS::Alias")));

        let r = primary(
            json!({"eventName": "ModifyDBSnapshotAttribute", "requestParameters": {
                "dBSnapshotIdentifier": "exfiltration", "attributeName": "restore", "valuesToAdd": ["193672423079"]}}),
            "rds",
        );
        assert_eq!(r.name, "exfiltration");
        assert_eq!(r.arn.as_deref(), Some("arn:aws:rds:us-east-1:123456789012:snapshot:exfiltration"));
    }

    #[test]
    fn what_a_call_creates_is_read_from_its_response() {
        let r = primary(
            json!({"eventName": "RunInstances", "requestParameters": {"instancesSet": {"items": [{"imageId": "ami-029eb80bc237bec6f"}]}},
                   "responseElements": {"instancesSet": {"items": [{"instanceId": "i-0dbc91f429e48eeed"}]}}}),
            "ec2",
        );
        assert_eq!((r.name.as_str(), r.resource_type.as_deref()), ("i-0dbc91f429e48eeed", Some("AWS::EC2::Instance")));
        let r = primary(
            json!({"eventName": "CreateSecret", "requestParameters": {"name": "db-password"},
                   "responseElements": {"arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-password-xehWok"}}),
            "secretsmanager",
        );
        assert_eq!(r.name, "db-password-xehWok");
        assert_eq!(r.resource_type.as_deref(), Some("AWS::SecretsManager::Secret"));
    }

    #[test]
    fn related_resources_are_kept_and_sign_ins_name_the_caller() {
        let record = json!({"eventName": "AttachRolePolicy", "requestParameters": {
            "roleName": "deployer", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}});
        let all = resources_of(&record, "AttachRolePolicy", &place("iam"), &[]);
        assert_eq!(all[0].name, "deployer");
        assert!(all[0].primary);
        assert_eq!(all[1].name, "AdministratorAccess");
        assert_eq!(all[1].arn.as_deref(), Some("arn:aws:iam::aws:policy/AdministratorAccess"));

        let r = primary(
            json!({"eventName": "ConsoleLogin", "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/alice"}}),
            "signin",
        );
        assert_eq!((r.name.as_str(), r.resource_type.as_deref()), ("alice", Some("AWS::IAM::User")));
    }
}
