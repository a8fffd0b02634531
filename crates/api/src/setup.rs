//! The documents an admin needs to create a connection's role, rendered from the template files
//! in `crates/api/templates/` (kept as real files so they can be linted and reviewed).

use domain::Connection;
use serde_json::{json, Value};

pub const CLOUDFORMATION_TEMPLATE: &str = include_str!("../templates/cloudformation.yaml");
pub const TERRAFORM_MODULE: &str = include_str!("../templates/main.tf");
pub const EVENTBRIDGE_TEMPLATE: &str = include_str!("../templates/eventbridge.yaml");
const EVENTBRIDGE_TERRAFORM: &str = include_str!("../templates/eventbridge.tf");
const EVENTBRIDGE_TERRAFORM_FORWARD: &str = include_str!("../templates/eventbridge_forward.tf");
pub const ORGANIZATION_TEMPLATE: &str = include_str!("../templates/organization.yaml");
pub const MEMBER_TEMPLATE: &str = include_str!("../templates/member.yaml");
const ORGANIZATION_TERRAFORM: &str = include_str!("../templates/organization.tf");
const MEMBER_TEMPLATE_TOKEN: &str = "CHANGETRAIL_MEMBER_TEMPLATE_BODY";
const EXTERNAL_ID_TOKEN: &str = "CHANGETRAIL_EXTERNAL_ID_VALUE";
const PRINCIPAL_TOKEN: &str = "CHANGETRAIL_PRINCIPAL_ARN_VALUE";

/// Everything filled in for one connection.
pub struct SetupDocuments {
    pub trust_policy: Value,
    pub permissions_policy: Value,
    pub cloudformation_template: String,
    pub cloudformation_quick_create_url: Option<String>,
    pub terraform: String,
    pub aws_cli: String,
    pub eventbridge_cloudformation: String,
    pub eventbridge_terraform: String,
    /// Of an organisation connection: the member role's template, which its StackSet deploys.
    pub member_cloudformation_template: Option<String>,
}

/// An organisation connection's role: list the accounts, nothing else.
pub fn organization_permissions_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["organizations:ListAccounts", "organizations:DescribeOrganization"],
            "Resource": "*"
        }]
    })
}

/// `text` with every line but blank ones indented by `by` spaces, to sit in a YAML block scalar
/// or a heredoc.
fn indented(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|line| if line.is_empty() { String::new() } else { format!("{pad}{line}") })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The organisation documents: one stack (or Terraform configuration) in the management account
/// holds the listing role, this account's member role and the StackSet of the others.
fn organization_documents(connection: &Connection, external_id: &str, principal: &str) -> (String, String) {
    let role_name = connection.member_role_name.as_deref().unwrap_or(domain::connection::DEFAULT_MEMBER_ROLE_NAME);
    let max_session = connection.settings.session_duration_seconds.max(3600);
    let fill_org = |template: &str, body_indent: usize| {
        fill(template, external_id, principal)
            .replace("CHANGETRAIL_MEMBER_ROLE_NAME_VALUE", role_name)
            .replace(MEMBER_TEMPLATE_TOKEN, &indented(MEMBER_TEMPLATE, body_indent))
    };
    let cloudformation = fill_org(ORGANIZATION_TEMPLATE, 8)
        .replace("    Default: 3600\n    MinValue: 3600", &format!("    Default: {max_session}\n    MinValue: 3600"));
    let terraform =
        fill_org(ORGANIZATION_TERRAFORM, 4).replace("default     = 3600", &format!("default     = {max_session}"));
    (cloudformation, terraform)
}

fn fill(template: &str, external_id: &str, principal: &str) -> String {
    template.replace(EXTERNAL_ID_TOKEN, external_id).replace(PRINCIPAL_TOKEN, principal)
}

pub fn trust_policy(external_id: &str, principal: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}}
        }]
    })
}

/// Only what the import needs: every further action would have to earn its place.
pub fn permissions_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "cloudtrail:LookupEvents", "Resource": "*"}]
    })
}

/// The EventBridge push documents: the home region is the connection's first, every other
/// region forwards to it.
fn push_documents(connection: &Connection, push_url: &str) -> (String, String) {
    let regions = &connection.settings.regions;
    let home = regions.first().map(String::as_str).unwrap_or("us-east-1");
    let read_only = if connection.settings.include_read_only { "true" } else { "false" };
    let fill_push = |template: &str| {
        template
            .replace("CHANGETRAIL_HOME_REGION_VALUE", home)
            .replace("CHANGETRAIL_PUSH_URL_VALUE", push_url)
            .replace("CHANGETRAIL_INCLUDE_READ_ONLY_VALUE", read_only)
            .replace("CHANGETRAIL_HEADER_NAME_VALUE", domain::cloudtrail::eventbridge::SECRET_HEADER)
    };
    let mut terraform = fill_push(EVENTBRIDGE_TERRAFORM);
    for region in regions.iter().skip(1) {
        terraform.push_str(
            &EVENTBRIDGE_TERRAFORM_FORWARD
                .replace("CHANGETRAIL_REGION_ALIAS", &region.replace('-', "_"))
                .replace("CHANGETRAIL_REGION_VALUE", region),
        );
    }
    (fill_push(EVENTBRIDGE_TEMPLATE), terraform)
}

/// `template_url` is where the operator published `cloudformation.yaml` (the console only
/// quick-creates stacks from templates in S3); without it there is no quick-create link.
pub fn render(connection: &Connection, principal: &str, template_url: Option<&str>, push_url: &str) -> SetupDocuments {
    let external_id = connection.external_id.as_str();
    let region = connection.settings.regions.first().map(String::as_str).unwrap_or("us-east-1");
    let stack = format!("changetrail-{}", connection.id.simple());
    let quick_create = template_url.map(|url| {
        let query = serde_html_form::to_string([
            ("templateURL", url),
            ("stackName", stack.as_str()),
            ("param_ExternalId", external_id),
            ("param_ServicePrincipalArn", principal),
        ])
        .unwrap_or_default();
        format!("https://console.aws.amazon.com/cloudformation/home?region={region}#/stacks/quickcreate?{query}")
    });
    let aws_cli = format!(
        "# 1. Save the template from this answer:\n\
         curl -s -H \"Authorization: Bearer $CHANGETRAIL_TOKEN\" $CHANGETRAIL_URL/v1/connections/{id}/setup \\\n  | jq -r .cloudformation_template > changetrail-role.yaml\n\
         # 2. Create the role in the account to connect:\n\
         aws cloudformation deploy --region {region} --stack-name {stack} --template-file changetrail-role.yaml \\\n  \
         --capabilities CAPABILITY_NAMED_IAM \\\n  --parameter-overrides ExternalId={external_id} ServicePrincipalArn={principal}\n\
         # 3. Read the role's ARN:\n\
         aws cloudformation describe-stacks --region {region} --stack-name {stack} \\\n  \
         --query \"Stacks[0].Outputs[?OutputKey=='RoleArn'].OutputValue\" --output text\n\
         # 4. Register it:\n\
         curl -s -X PUT -H \"Authorization: Bearer $CHANGETRAIL_TOKEN\" -H 'Content-Type: application/json' \\\n  \
         -d '{{\"role_arn\": \"ROLE_ARN_FROM_STEP_3\"}}' $CHANGETRAIL_URL/v1/connections/{id}/role\n",
        id = connection.id,
    );
    let (eventbridge_cloudformation, eventbridge_terraform) = push_documents(connection, push_url);
    if connection.kind == domain::connection::ConnectionKind::Organization {
        let (cloudformation_template, terraform) = organization_documents(connection, external_id, principal);
        let aws_cli = format!(
            "# In the organisation's management account (trusted access for StackSets enabled):\n\
             curl -s -H \"Authorization: Bearer $CHANGETRAIL_TOKEN\" $CHANGETRAIL_URL/v1/connections/{id}/setup \\\n  | jq -r .cloudformation_template > changetrail-organization.yaml\n\
             aws cloudformation deploy --region {region} --stack-name {stack} --template-file changetrail-organization.yaml \\\n  \
             --capabilities CAPABILITY_NAMED_IAM \\\n  --parameter-overrides OrganizationalUnitIds=$(aws organizations list-roots --query 'Roots[0].Id' --output text)\n\
             aws cloudformation describe-stacks --region {region} --stack-name {stack} \\\n  \
             --query \"Stacks[0].Outputs[?OutputKey=='RoleArn'].OutputValue\" --output text\n\
             curl -s -X PUT -H \"Authorization: Bearer $CHANGETRAIL_TOKEN\" -H 'Content-Type: application/json' \\\n  \
             -d '{{\"role_arn\": \"ROLE_ARN_FROM_ABOVE\"}}' $CHANGETRAIL_URL/v1/connections/{id}/role\n",
            id = connection.id,
        );
        return SetupDocuments {
            trust_policy: trust_policy(external_id, principal),
            permissions_policy: organization_permissions_policy(),
            cloudformation_template,
            cloudformation_quick_create_url: None,
            terraform,
            aws_cli,
            eventbridge_cloudformation,
            eventbridge_terraform,
            member_cloudformation_template: Some(MEMBER_TEMPLATE.to_owned()),
        };
    }
    // The role must allow sessions as long as the connection asks for (AWS's default is 3,600 s).
    let max_session = connection.settings.session_duration_seconds.max(3600);
    let cloudformation_template = fill(CLOUDFORMATION_TEMPLATE, external_id, principal)
        .replace("MaxSessionDuration: 3600", &format!("MaxSessionDuration: {max_session}"));
    let terraform = fill(TERRAFORM_MODULE, external_id, principal)
        .replace("max_session_duration = 3600", &format!("max_session_duration = {max_session}"));
    SetupDocuments {
        trust_policy: trust_policy(external_id, principal),
        permissions_policy: permissions_policy(),
        cloudformation_template,
        cloudformation_quick_create_url: quick_create,
        terraform,
        aws_cli,
        eventbridge_cloudformation,
        eventbridge_terraform,
        member_cloudformation_template: None,
    }
}
