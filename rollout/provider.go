package rollout

import (
	"context"
	"errors"
	"time"

	"wsfleet/nodeapi"
)

// Provider is every effect the engine has on the cloud. Implementations:
// provider/aws (real AWS and the local cloud), and the in-memory fleet in
// this package's tests.
//
// Every method is safe to call again with the same arguments after a crash
// or a timeout: the engine journals an intent before each call and may
// repeat it when it cannot tell whether the first one took effect.
// Errors wrap ErrNotFound when the group or instance does not exist;
// transient errors (throttling, 5xx) are retried inside the provider, and
// those that outlast the retries wrap ErrUnavailable. Every effect is read
// back before its method returns: nil means the cloud shows it.
type Provider interface {
	// Group describes the group now: capacity, launch template, tags, and
	// every instance that belongs to it, including ones still terminating.
	Group(ctx context.Context, name string) (Group, error)

	// SetImage makes a new launch template version from the group's
	// current one with image as its AMI and makes it the group's version;
	// for a group on a launch configuration, a copy of the configuration
	// with image, named after it and token, and points the group at it.
	// token identifies the request: a second call with the same token
	// finds the version (configuration) the first one made instead of
	// making another.
	SetImage(ctx context.Context, group, image, token string) (TemplateChange, error)

	// SetTemplateVersion points the group at an existing launch template
	// version or launch configuration (rollback). Idempotent.
	SetTemplateVersion(ctx context.Context, group string, tmpl TemplateRef) error

	// SetDesired sets the group's desired capacity, raising its maximum
	// size when n exceeds it. Idempotent: the value is absolute.
	SetDesired(ctx context.Context, group string, n int) error

	// SetProtection sets scale-in protection on instances. Idempotent.
	SetProtection(ctx context.Context, group string, ids []string, protected bool) error

	// Terminate terminates one instance of the group; decrement lowers the
	// desired capacity with it (otherwise the group launches a
	// replacement). An instance already terminating or gone is not
	// terminated again: Terminate returns ErrNotFound and does nothing, so
	// that a repeated call can never lower the capacity twice.
	Terminate(ctx context.Context, group, id string, decrement bool) error

	// TagInstance sets one tag on an instance. Idempotent.
	TagInstance(ctx context.Context, id, key, value string) error

	// TagGroup sets (value != "") or deletes (value == "") one tag on the
	// group. Idempotent.
	TagGroup(ctx context.Context, group, key, value string) error
}

// LoadBalancerURLer is an optional Provider capability: the URL clients
// use to reach the group through its load balancer, used by probe checks
// that give no url.
type LoadBalancerURLer interface {
	LoadBalancerURL(ctx context.Context, group string) (string, error)
}

// ProcessSuspender is an optional Provider capability: suspending the
// group's own processes for the length of a change. A draining node fails
// its readiness, so with ELB health checks the group would replace it (and
// cut its clients) once past the grace period; AZRebalance would terminate
// instances to even out zones. Deployments suspend both, as AWS's own do.
type ProcessSuspender interface {
	// SuspendProcesses suspends the named processes. Idempotent: a
	// process already suspended stays so (and keeps its first reason).
	SuspendProcesses(ctx context.Context, group string, processes []string) error
	// ResumeProcesses resumes the named processes (only those).
	// Idempotent.
	ResumeProcesses(ctx context.Context, group string, processes []string) error
	// SetInstanceHealth sets the group's health mark of an instance,
	// ignoring the grace period. Idempotent.
	SetInstanceHealth(ctx context.Context, id string, healthy bool) error
}

// TargetRegistrar is an optional Provider capability: taking instances
// out of the group's target groups before their node drains, so that the
// load balancer stops sending them new clients at once (instead of after
// its health check notices the failing readiness), and putting them back.
type TargetRegistrar interface {
	// DeregisterTargets removes the instances from every target group of
	// the group; their open connections keep working until the target
	// group's deregistration delay ends. An instance not registered is
	// not an error.
	DeregisterTargets(ctx context.Context, group string, ids []string) error
	// RegisterTargets adds the instances to every target group of the
	// group. Idempotent.
	RegisterTargets(ctx context.Context, group string, ids []string) error
	// DeregistrationDelay is the shortest deregistration delay over the
	// group's target groups (0 and false when it has none): the longest
	// a drain can last before the load balancer cuts what is left.
	DeregistrationDelay(ctx context.Context, group string) (time.Duration, bool, error)
}

// CallCounter is an optional Provider capability: how many cloud API calls
// the provider has made, by operation, for the report.
type CallCounter interface {
	APICalls() map[string]int
}

// ErrNotFound is wrapped by provider errors about a group or instance that
// does not exist (or no longer does).
var ErrNotFound = errors.New("not found")

// ErrUnavailable is wrapped by provider errors the cloud may not give
// again: it kept throttling, answering 5xx or dropping the connection
// through the provider's bounded retries, or an effect it accepted could
// not be read back in time. The engine stops on it, keeping the change
// for resume, rather than failing the change (or its rollback) for a
// fault that is not the new image's.
var ErrUnavailable = errors.New("cloud unavailable")

// Group is a snapshot of an Auto Scaling group.
type Group struct {
	Name      string
	Desired   int
	Min, Max  int
	Template  TemplateRef // the launch template version new instances get
	Image     string      // the AMI of Template
	Tags      map[string]string
	Instances []Instance
	// Suspended lists the group's suspended Auto Scaling processes
	// (ReplaceUnhealthy, AZRebalance, …), whoever suspended them.
	Suspended []string
}

// TemplateRef names what a group (or one of its instances) launches
// from: a launch template version (ID, Name, Version), or a launch
// configuration (LaunchConfig, the others empty).
type TemplateRef struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version"`
	// LaunchConfig is the launch configuration's name, for a group on a
	// launch configuration.
	LaunchConfig string `json:"launch_configuration,omitempty"`
}

// IsLaunchConfig reports whether the reference is a launch configuration.
func (t TemplateRef) IsLaunchConfig() bool { return t.LaunchConfig != "" }

// IsZero reports whether the reference names nothing.
func (t TemplateRef) IsZero() bool { return t.ID == "" && t.LaunchConfig == "" }

// Same reports whether t and o name the same launch template version or
// launch configuration (a template's name aside: its id says which).
func (t TemplateRef) Same(o TemplateRef) bool {
	if t.IsLaunchConfig() || o.IsLaunchConfig() {
		return t.LaunchConfig == o.LaunchConfig
	}
	return t.ID == o.ID && t.Version == o.Version
}

// TemplateChange is what SetImage did: the version (or launch
// configuration) before and after. For `image: current` the change was
// made outside wsfleet: Current is set, and Previous is what most old
// instances ran.
type TemplateChange struct {
	Previous      TemplateRef `json:"previous"`
	PreviousImage string      `json:"previous_image"`
	New           TemplateRef `json:"new"`
	NewImage      string      `json:"new_image,omitempty"`
	// Current marks a change made outside wsfleet (`image: current`):
	// a rollback puts the group back on Previous, but the change that
	// set New (Terraform's) must be reverted too.
	Current bool `json:"current,omitempty"`
	// TerraformChange names that outside change (the plan's
	// terraform_change), when the plan gave it.
	TerraformChange string `json:"terraform_change,omitempty"`
	// Terraform names the change wsfleet made through Terraform (the
	// terraform image form); its rollback reverts it through Terraform.
	Terraform string `json:"terraform,omitempty"`
}

// Instance is one member of the group.
type Instance struct {
	ID        string
	Name      string // the Name tag
	Image     string
	Lifecycle string // Pending, InService, Terminating, Terminated, …
	// Health is the load balancer's view: "healthy", "unhealthy",
	// "initial", "draining", or "" when the group has no target group.
	Health string
	// HealthStatus is the group's own view: "Healthy" or "Unhealthy" (an
	// instance marked unhealthy stays in service only while
	// ReplaceUnhealthy is suspended).
	HealthStatus string
	Protected    bool
	// Launch is the launch template version or launch configuration the
	// instance was launched from (zero when the provider does not say).
	Launch      TemplateRef
	LaunchTime  time.Time
	PrivateIP   string
	Tags        map[string]string
	ClientToken string
}

// Live reports whether the instance is, or will be, serving: it is not on
// its way out.
func (i Instance) Live() bool {
	switch i.Lifecycle {
	case "Pending", "Pending:Wait", "Pending:Proceed", "InService", "Standby", "EnteringStandby":
		return true
	}
	return false
}

// Gone reports whether the instance is terminating or terminated.
func (i Instance) Gone() bool {
	switch i.Lifecycle {
	case "Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated", "Detaching", "Detached":
		return true
	}
	return false
}

// Instance returns the instance with id.
func (g Group) Instance(id string) (Instance, bool) {
	for _, in := range g.Instances {
		if in.ID == id {
			return in, true
		}
	}
	return Instance{}, false
}

// Nodes is the ws node admin API the engine drains and watches nodes
// through (server's /admin/drain and /admin/status; the wire contract is
// package nodeapi).
type Nodes interface {
	// Drain asks the node to drain with o. Idempotent: a node already
	// draining keeps draining.
	Drain(ctx context.Context, in Instance, o DrainOptions) error
	// Status reads the node's state and connection count.
	Status(ctx context.Context, in Instance) (NodeStatus, error)
}

// DrainOptions is the body of a node's admin drain request.
type DrainOptions struct {
	Window   time.Duration
	MaxRate  float64
	Deadline time.Duration
}

// NodeStatus is what a node reports about itself: its admin API status,
// with the API version it speaks.
type NodeStatus = nodeapi.Status
