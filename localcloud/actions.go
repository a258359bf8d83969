package localcloud

// handler is one API action; it runs with c.mu held and writes its result
// into x.
type handler func(c *Cloud, req *request, x *xmlw) *apiError

// actions is every API action the cloud answers, by service and action
// name: the one place that says what the endpoint speaks. serveAPI
// dispatches through it, and unsigned requests are routed by it (an action
// name that only one service has). docs/cloud.md lists the same actions.
var actions = map[string]map[string]handler{
	svcEC2: {
		"DescribeImages":                 (*Cloud).describeImages,
		"CreateLaunchTemplate":           idempotent(128, (*Cloud).createLaunchTemplate),
		"CreateLaunchTemplateVersion":    idempotent(128, (*Cloud).createLaunchTemplateVersion),
		"DescribeLaunchTemplates":        (*Cloud).describeLaunchTemplates,
		"DescribeLaunchTemplateVersions": (*Cloud).describeLaunchTemplateVersions,
		"ModifyLaunchTemplate":           idempotent(128, (*Cloud).modifyLaunchTemplate),
		"RunInstances":                   idempotent(64, (*Cloud).runInstances),
		"DescribeInstances":              (*Cloud).describeInstances,
		"TerminateInstances":             (*Cloud).terminateInstances,
		"CreateTags":                     (*Cloud).createTags,
		"DeleteTags":                     (*Cloud).deleteTags,
		"DescribeTags":                   (*Cloud).describeTags,
	},
	svcASG: {
		// groups
		"CreateAutoScalingGroup":               (*Cloud).createGroup,
		"DescribeAutoScalingGroups":            (*Cloud).describeGroups,
		"UpdateAutoScalingGroup":               (*Cloud).updateGroup,
		"DeleteAutoScalingGroup":               (*Cloud).deleteGroup,
		"SetDesiredCapacity":                   (*Cloud).setDesiredCapacity,
		"SetInstanceProtection":                (*Cloud).setInstanceProtection,
		"TerminateInstanceInAutoScalingGroup":  (*Cloud).terminateInGroup,
		"DescribeAutoScalingInstances":         (*Cloud).describeASGInstances,
		"EnterStandby":                         (*Cloud).enterStandby,
		"ExitStandby":                          (*Cloud).exitStandby,
		"DetachInstances":                      (*Cloud).detachInstances,
		"DescribeScalingActivities":            (*Cloud).describeActivities,
		"CreateOrUpdateTags":                   (*Cloud).createOrUpdateASGTags,
		"DeleteTags":                           (*Cloud).deleteASGTags,
		"DescribeTags":                         (*Cloud).describeASGTags,
		"AttachLoadBalancerTargetGroups":       (*Cloud).attachTargetGroups,
		"DetachLoadBalancerTargetGroups":       (*Cloud).detachTargetGroups,
		"DescribeLoadBalancerTargetGroups":     (*Cloud).describeGroupTargetGroups,
		"DescribeAutoScalingNotificationTypes": (*Cloud).describeNotificationTypes,
		// launch configurations (launchconfig.go); the throttling
		// buckets (faults.go) class Describe… as non-mutating, the
		// others as mutating
		"CreateLaunchConfiguration":    (*Cloud).createLaunchConfiguration,
		"DescribeLaunchConfigurations": (*Cloud).describeLaunchConfigurations,
		"DeleteLaunchConfiguration":    (*Cloud).deleteLaunchConfiguration,
		// lifecycle hooks (lifecycle.go)
		"PutLifecycleHook":               (*Cloud).putLifecycleHook,
		"DescribeLifecycleHooks":         (*Cloud).describeLifecycleHooks,
		"DeleteLifecycleHook":            (*Cloud).deleteLifecycleHook,
		"CompleteLifecycleAction":        (*Cloud).completeLifecycleAction,
		"RecordLifecycleActionHeartbeat": (*Cloud).recordHeartbeat,
		// scaling processes and health (scaling_processes.go)
		"SuspendProcesses":            (*Cloud).suspendProcesses,
		"ResumeProcesses":             (*Cloud).resumeProcesses,
		"DescribeScalingProcessTypes": (*Cloud).describeProcessTypes,
		"SetInstanceHealth":           (*Cloud).setInstanceHealth,
	},
	svcELB: {
		"CreateLoadBalancer":            (*Cloud).createLoadBalancer,
		"DescribeLoadBalancers":         (*Cloud).describeLoadBalancers,
		"CreateListener":                (*Cloud).createListener,
		"DescribeListeners":             (*Cloud).describeListeners,
		"CreateTargetGroup":             (*Cloud).createTargetGroup,
		"DescribeTargetGroups":          (*Cloud).describeTargetGroups,
		"ModifyTargetGroup":             (*Cloud).modifyTargetGroup,
		"ModifyTargetGroupAttributes":   (*Cloud).modifyTGAttributes,
		"DescribeTargetGroupAttributes": (*Cloud).describeTGAttributes,
		"RegisterTargets":               (*Cloud).registerTargets,
		"DeregisterTargets":             (*Cloud).deregisterTargets,
		"DescribeTargetHealth":          (*Cloud).describeTargetHealth,
	},
}

// rpcActions are the actions served over Smithy RPC v2 CBOR
// (cloudwatch.go), by service name and operation, as the path names
// them: POST /service/{service}/operation/{operation}.
var rpcActions = map[string]map[string]rpcHandler{
	cwService: {
		"PutMetricAlarm": (*Cloud).putMetricAlarm,
		"DescribeAlarms": (*Cloud).describeAlarms,
		"SetAlarmState":  (*Cloud).setAlarmState,
	},
}
