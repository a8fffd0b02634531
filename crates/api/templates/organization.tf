# changetrail for a whole AWS Organization, applied with the management account's credentials: a
# role that may list the organisation's accounts, the member role in this account, and a
# service-managed StackSet that creates the member role in every account of the given
# organisational units, and in each account that joins them later. Every role trusts only
# changetrail's principal with this connection's external ID (members: followed by a dash and
# their account id).

variable "external_id" {
  description = "The external ID changetrail generated for this organisation connection."
  type        = string
  default     = "CHANGETRAIL_EXTERNAL_ID_VALUE"
}

variable "service_principal_arn" {
  description = "changetrail's own AWS identity, which assumes these roles."
  type        = string
  default     = "CHANGETRAIL_PRINCIPAL_ARN_VALUE"
}

variable "member_role_name" {
  description = "The role created in every member account (the connection's member_role_name)."
  type        = string
  default     = "CHANGETRAIL_MEMBER_ROLE_NAME_VALUE"
}

variable "organizational_unit_ids" {
  description = "The organisational units (or the root, r-...) whose accounts changetrail imports."
  type        = list(string)
}

variable "max_session_duration" {
  description = "Seconds a session may last (the connection's session_duration, at least 3600)."
  type        = number
  default     = 3600
}

data "aws_caller_identity" "management" {}
data "aws_region" "current" {}

resource "aws_iam_role" "organization" {
  name                 = "changetrail-organization-reader"
  description          = "Lets changetrail list this organisation's accounts (nothing else)."
  max_session_duration = var.max_session_duration
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = var.service_principal_arn }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "sts:ExternalId" = var.external_id } }
    }]
  })
}

resource "aws_iam_role_policy" "list_accounts" {
  name = "changetrail-list-accounts"
  role = aws_iam_role.organization.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["organizations:ListAccounts", "organizations:DescribeOrganization"]
      Resource = "*"
    }]
  })
}

# A service-managed StackSet never deploys to the management account itself.
resource "aws_iam_role" "management_member" {
  name                 = var.member_role_name
  description          = "Lets changetrail read CloudTrail management events (LookupEvents only)."
  max_session_duration = var.max_session_duration
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = var.service_principal_arn }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "sts:ExternalId" = "${var.external_id}-${data.aws_caller_identity.management.account_id}" } }
    }]
  })
}

resource "aws_iam_role_policy" "management_member_lookup_events" {
  name = "changetrail-lookup-events"
  role = aws_iam_role.management_member.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "cloudtrail:LookupEvents", Resource = "*" }]
  })
}

resource "aws_cloudformation_stack_set" "member_roles" {
  name             = "changetrail-member-roles"
  description      = "changetrail's member role in every account of the organisational units."
  permission_model = "SERVICE_MANAGED"
  capabilities     = ["CAPABILITY_NAMED_IAM"]
  auto_deployment {
    enabled                          = true
    retain_stacks_on_account_removal = false
  }
  managed_execution {
    active = true
  }
  parameters = {
    ExternalId          = var.external_id
    ServicePrincipalArn = var.service_principal_arn
    RoleName            = var.member_role_name
    MaxSessionDuration  = var.max_session_duration
  }
  template_body = <<-TEMPLATE
CHANGETRAIL_MEMBER_TEMPLATE_BODY
  TEMPLATE
  lifecycle {
    ignore_changes = [administration_role_arn]
  }
}

resource "aws_cloudformation_stack_set_instance" "member_roles" {
  stack_set_name = aws_cloudformation_stack_set.member_roles.name
  region         = data.aws_region.current.name
  deployment_targets {
    organizational_unit_ids = var.organizational_unit_ids
  }
}

output "role_arn" {
  description = "Register this ARN with changetrail (PUT /v1/connections/{id}/role)."
  value       = aws_iam_role.organization.arn
}
