
# CHANGETRAIL_REGION_VALUE: its CloudTrail events, forwarded to the home region's bus.
provider "aws" {
  alias  = "CHANGETRAIL_REGION_ALIAS"
  region = "CHANGETRAIL_REGION_VALUE"
}

resource "aws_cloudwatch_event_rule" "changetrail_CHANGETRAIL_REGION_ALIAS" {
  provider       = aws.CHANGETRAIL_REGION_ALIAS
  name           = "changetrail-push-forward"
  description    = "This region's CloudTrail management events, to the home region's bus and on to changetrail."
  event_bus_name = "default"
  state          = local.changetrail_rule_state
  event_pattern  = jsonencode({ "detail-type" = local.changetrail_detail_types })
}

resource "aws_cloudwatch_event_target" "changetrail_CHANGETRAIL_REGION_ALIAS" {
  provider  = aws.CHANGETRAIL_REGION_ALIAS
  rule      = aws_cloudwatch_event_rule.changetrail_CHANGETRAIL_REGION_ALIAS.name
  target_id = "home-region-bus"
  arn       = local.changetrail_home_bus
  role_arn  = aws_iam_role.changetrail_forward.arn
}
