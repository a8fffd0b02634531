# A read-only role that lets changetrail import this account's CloudTrail management events with
# cloudtrail:LookupEvents. It trusts only changetrail's principal, and only with the external ID
# changetrail generated for this connection.

variable "external_id" {
  description = "The external ID changetrail generated for this connection."
  type        = string
  default     = "CHANGETRAIL_EXTERNAL_ID_VALUE"
}

variable "service_principal_arn" {
  description = "changetrail's own AWS identity, which assumes this role."
  type        = string
  default     = "CHANGETRAIL_PRINCIPAL_ARN_VALUE"
}

variable "role_name" {
  description = "The name of the role to create."
  type        = string
  default     = "changetrail-cloudtrail-reader"
}

resource "aws_iam_role" "changetrail" {
  name                 = var.role_name
  description          = "Lets changetrail read CloudTrail management events (LookupEvents only)."
  max_session_duration = 3600
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

resource "aws_iam_role_policy" "lookup_events" {
  name = "changetrail-lookup-events"
  role = aws_iam_role.changetrail.id
  # LookupEvents has no resource-level permissions: "*" is the only resource it takes.
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "cloudtrail:LookupEvents", Resource = "*" }]
  })
}

output "role_arn" {
  description = "Register this ARN with changetrail (PUT /v1/connections/{id}/role)."
  value       = aws_iam_role.changetrail.arn
}
