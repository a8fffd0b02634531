# Pushes this account's CloudTrail management events to changetrail within seconds, through an
# EventBridge API destination in the home region (CHANGETRAIL_HOME_REGION_VALUE). Every other
# region of the connection forwards the same events to the home region's default bus (the blocks
# after this part, one per region). Apply with credentials for the connected account.

variable "push_secret" {
  description = "The push secret changetrail answered to POST /v1/connections/{id}/push."
  type        = string
  sensitive   = true
}

variable "invocation_rate_limit_per_second" {
  description = "The most requests per second EventBridge sends; more wait and are retried for up to 24 hours."
  type        = number
  default     = 100
}

provider "aws" {
  alias  = "home"
  region = "CHANGETRAIL_HOME_REGION_VALUE"
}

data "aws_caller_identity" "current" {
  provider = aws.home
}

data "aws_partition" "current" {
  provider = aws.home
}

locals {
  changetrail_detail_types = ["AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail"]
  # A plain enabled rule sees changes only; read-only events need the CloudTrail state.
  changetrail_rule_state = CHANGETRAIL_INCLUDE_READ_ONLY_VALUE ? "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS" : "ENABLED"
  # EventBridge of this account only may use the roles below.
  changetrail_events_trust = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id } }
    }]
  })
  changetrail_home_bus   = "arn:${data.aws_partition.current.partition}:events:CHANGETRAIL_HOME_REGION_VALUE:${data.aws_caller_identity.current.account_id}:event-bus/default"
}

resource "aws_cloudwatch_event_connection" "changetrail" {
  provider           = aws.home
  name               = "changetrail-push"
  description        = "changetrail's push secret, sent in a header with every event."
  authorization_type = "API_KEY"
  auth_parameters {
    api_key {
      key   = "CHANGETRAIL_HEADER_NAME_VALUE"
      value = var.push_secret
    }
  }
}

resource "aws_cloudwatch_event_api_destination" "changetrail" {
  provider                         = aws.home
  name                             = "changetrail-push"
  description                      = "changetrail's push endpoint for this connection."
  invocation_endpoint              = "CHANGETRAIL_PUSH_URL_VALUE"
  http_method                      = "POST"
  invocation_rate_limit_per_second = var.invocation_rate_limit_per_second
  connection_arn                   = aws_cloudwatch_event_connection.changetrail.arn
}

resource "aws_iam_role" "changetrail_invoke" {
  provider           = aws.home
  name               = "changetrail-push-invoke"
  description        = "Lets EventBridge call changetrail's API destination, and nothing else."
  assume_role_policy = local.changetrail_events_trust
}

resource "aws_iam_role_policy" "changetrail_invoke" {
  provider = aws.home
  name     = "invoke-changetrail"
  role     = aws_iam_role.changetrail_invoke.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "events:InvokeApiDestination", Resource = aws_cloudwatch_event_api_destination.changetrail.arn }]
  })
}

# Events EventBridge could not deliver within 24 hours wait here for 14 days; the poll imports
# them meanwhile, so this queue is for finding out why, not for replay.
resource "aws_sqs_queue" "changetrail_dead_letters" {
  provider                  = aws.home
  name                      = "changetrail-push-dead-letters"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue_policy" "changetrail_dead_letters" {
  provider  = aws.home
  queue_url = aws_sqs_queue.changetrail_dead_letters.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.changetrail_dead_letters.arn
      Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.changetrail.arn } }
    }]
  })
}

resource "aws_cloudwatch_event_rule" "changetrail" {
  provider       = aws.home
  name           = "changetrail-push"
  description    = "CloudTrail management events of this account, to changetrail."
  event_bus_name = "default"
  state          = local.changetrail_rule_state
  event_pattern  = jsonencode({ "detail-type" = local.changetrail_detail_types })
}

resource "aws_cloudwatch_event_target" "changetrail" {
  provider  = aws.home
  rule      = aws_cloudwatch_event_rule.changetrail.name
  target_id = "changetrail"
  arn       = aws_cloudwatch_event_api_destination.changetrail.arn
  role_arn  = aws_iam_role.changetrail_invoke.arn
  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }
  dead_letter_config {
    arn = aws_sqs_queue.changetrail_dead_letters.arn
  }
}

resource "aws_iam_role" "changetrail_forward" {
  provider           = aws.home
  name               = "changetrail-push-forward"
  description        = "Lets EventBridge forward other regions' CloudTrail events to the home region's bus."
  assume_role_policy = local.changetrail_events_trust
}

resource "aws_iam_role_policy" "changetrail_forward" {
  provider = aws.home
  name     = "forward-to-home-region"
  role     = aws_iam_role.changetrail_forward.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "events:PutEvents", Resource = local.changetrail_home_bus }]
  })
}

output "dead_letter_queue_url" {
  description = "Events EventBridge could not deliver to changetrail within 24 hours."
  value       = aws_sqs_queue.changetrail_dead_letters.id
}
