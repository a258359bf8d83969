// Package nodeaws is the AWS side of a ws node: configuring it from the EC2
// instance metadata service (IMDS) and draining it when its Auto Scaling
// group terminates it. It works the same against AWS and against the local
// cloud, which serves each instance its own metadata.
package nodeaws

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go"
)

// Metadata is what a node learns about itself from IMDS.
type Metadata struct {
	InstanceID string
	LocalIPv4  string
	ImageID    string
	Region     string
	// Name is the instance's Name tag ("" without one); Group its Auto
	// Scaling group (the aws:autoscaling:groupName tag).
	Name, Group string
	// UserData is the launch template's user data, decoded.
	UserData string
}

// ReadMetadata reads the instance's metadata. Tags are optional (IMDS
// serves them only when the instance allows it), everything else is
// required.
func ReadMetadata(ctx context.Context, c *imds.Client) (Metadata, error) {
	var md Metadata
	for _, f := range []struct {
		path string
		dst  *string
	}{
		{"instance-id", &md.InstanceID},
		{"local-ipv4", &md.LocalIPv4},
		{"ami-id", &md.ImageID},
	} {
		v, err := get(ctx, c, f.path)
		if err != nil {
			return md, fmt.Errorf("read metadata %s: %w", f.path, err)
		}
		*f.dst = v
	}
	if r, err := c.GetRegion(ctx, &imds.GetRegionInput{}); err == nil {
		md.Region = r.Region
	}
	md.Name, _ = get(ctx, c, "tags/instance/Name")
	md.Group, _ = get(ctx, c, "tags/instance/aws:autoscaling:groupName")
	out, err := c.GetUserData(ctx, &imds.GetUserDataInput{})
	if err == nil {
		b, err := io.ReadAll(out.Content)
		out.Content.Close()
		if err != nil {
			return md, fmt.Errorf("read user data: %w", err)
		}
		md.UserData = string(b)
	} else if !isNotFound(err) {
		return md, fmt.Errorf("read user data: %w", err)
	}
	return md, nil
}

func get(ctx context.Context, c *imds.Client, path string) (string, error) {
	out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func isNotFound(err error) bool {
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == 404
}

// Setting is one flag from user data.
type Setting struct {
	Name, Value string
	Line        int
}

// ParseUserData reads a ws node's user data: one `wsfleet serve` flag per
// line, `--name=value` (or `--name` for a boolean), blank lines and lines
// starting with # ignored. User data that starts with "#!" or
// "#cloud-config" is a script for someone else and yields no settings.
func ParseUserData(s string) ([]Setting, error) {
	if strings.HasPrefix(s, "#!") || strings.HasPrefix(s, "#cloud-config") {
		return nil, nil
	}
	var out []Setting
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "-") {
			return nil, fmt.Errorf("user data line %d: %q is not a flag (want --name=value)", n, line)
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(line, "-"), "=")
		if name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("user data line %d: %q is not a flag (want --name=value)", n, line)
		}
		if !hasValue {
			value = "true"
		}
		out = append(out, Setting{Name: name, Value: value, Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("user data: %w", err)
	}
	return out, nil
}

// NodePort is the port a node listens on when neither the command line nor
// the user data says, the same on every instance as on EC2.
const NodePort = "8080"

// Configure sets the flags of fs that the command line did not: first from
// the user data, then --listen on the instance's private IP, --node-id from
// the Name tag (else the instance id) and --image from the AMI id. Flags
// the user data names but fs lacks are errors, so that a typo in a launch
// template fails the node instead of being ignored.
func Configure(fs *flag.FlagSet, md Metadata, log *slog.Logger) error {
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	settings, err := ParseUserData(md.UserData)
	if err != nil {
		return err
	}
	fromUserData := map[string]bool{}
	for _, s := range settings {
		if fs.Lookup(s.Name) == nil {
			return fmt.Errorf("user data line %d: unknown flag --%s", s.Line, s.Name)
		}
		if onCommandLine[s.Name] {
			continue
		}
		if err := fs.Set(s.Name, s.Value); err != nil {
			return fmt.Errorf("user data line %d: --%s: %w", s.Line, s.Name, err)
		}
		fromUserData[s.Name] = true
		log.Info("flag from user data", "flag", s.Name)
	}
	set := func(name, value string) error {
		if onCommandLine[name] || value == "" || fs.Lookup(name) == nil {
			return nil
		}
		return fs.Set(name, value)
	}
	if f := fs.Lookup("listen"); f != nil && !onCommandLine["listen"] {
		_, port, err := net.SplitHostPort(f.Value.String())
		if err != nil || port == "" || !fromUserData["listen"] {
			port = NodePort
		}
		if err := set("listen", net.JoinHostPort(md.LocalIPv4, port)); err != nil {
			return err
		}
	}
	nodeID := md.Name
	if nodeID == "" {
		nodeID = md.InstanceID
	}
	if !fromUserData["node-id"] {
		if err := set("node-id", nodeID); err != nil {
			return err
		}
	}
	if !fromUserData["image"] {
		if err := set("image", md.ImageID); err != nil {
			return err
		}
	}
	return nil
}

// LifecycleState values of IMDS autoscaling/target-lifecycle-state. AWS
// reports the state an instance is moving to: Terminated from the moment
// the group starts terminating it, before deregistration and before any
// termination hook waits.
const (
	StateInService  = "InService"
	StateTerminated = "Terminated"
)

// Watcher drains a node when its group terminates its instance, then lets
// the group finish with CompleteLifecycleAction (CONTINUE) on each
// termination hook. Draining starts as soon as IMDS reports Terminated, so
// the clients leave during the load balancer's deregistration delay, not
// when it cuts them.
type Watcher struct {
	IMDS *imds.Client
	ASG  *autoscaling.Client
	// Interval between polls of IMDS and between completion attempts.
	Interval time.Duration
	// HeartbeatEvery is how often a drain records lifecycle heartbeats;
	// default a third of the shortest termination hook's heartbeat timeout.
	HeartbeatEvery time.Duration
	// Drain runs the node's paced drain.
	Drain func(ctx context.Context) error
	Log   *slog.Logger
}

// Run polls until the instance is leaving, drains, and completes the
// lifecycle actions. It returns when that is done or ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		state, err := get(ctx, w.IMDS, "autoscaling/target-lifecycle-state")
		switch {
		case err != nil && isNotFound(err):
			w.Log.Debug("no target lifecycle state: not in an Auto Scaling group")
		case err != nil:
			w.Log.Warn("read target lifecycle state", "err", err)
		case state == StateTerminated:
			return w.leave(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (w *Watcher) leave(ctx context.Context) error {
	md, err := ReadMetadata(ctx, w.IMDS)
	if err != nil {
		return err
	}
	log := w.Log.With("instance", md.InstanceID, "group", md.Group)
	log.Info("instance is terminating: draining")
	var hooks []string
	heartbeat := time.Duration(0)
	if md.Group == "" {
		log.Warn("no aws:autoscaling:groupName tag in IMDS: draining without completing lifecycle actions")
	} else {
		out, err := w.ASG.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(md.Group)})
		if err != nil {
			log.Warn("describe lifecycle hooks", "err", err)
		}
		if out != nil {
			for _, h := range out.LifecycleHooks {
				if aws.ToString(h.LifecycleTransition) != "autoscaling:EC2_INSTANCE_TERMINATING" {
					continue
				}
				hooks = append(hooks, aws.ToString(h.LifecycleHookName))
				if hb := time.Duration(aws.ToInt32(h.HeartbeatTimeout)) * time.Second; heartbeat == 0 || hb < heartbeat {
					heartbeat = hb
				}
			}
		}
	}
	// A drain longer than a hook's heartbeat timeout keeps the action
	// alive with heartbeats (they fail harmlessly until the hook waits).
	dctx, stopBeats := context.WithCancel(ctx)
	if len(hooks) > 0 && heartbeat > 0 {
		every := w.HeartbeatEvery
		if every <= 0 {
			every = max(heartbeat/3, w.Interval)
		}
		go w.heartbeats(dctx, md, hooks, every)
	}
	err = w.Drain(ctx)
	stopBeats()
	if err != nil {
		log.Warn("drain did not finish", "err", err)
	}
	if len(hooks) == 0 {
		log.Info("drained; no termination hook to complete")
		return nil
	}
	pending := map[string]bool{}
	for _, h := range hooks {
		pending[h] = true
	}
	// The hooks start waiting only after the deregistration delay, which
	// may outlast the drain: retry until each action is there to complete.
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		for name := range pending {
			_, err := w.ASG.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
				AutoScalingGroupName: aws.String(md.Group), LifecycleHookName: aws.String(name),
				InstanceId: aws.String(md.InstanceID), LifecycleActionResult: aws.String("CONTINUE"),
			})
			var ae smithy.APIError
			switch {
			case err == nil:
				delete(pending, name)
				log.Info("lifecycle action completed", "hook", name)
			case errors.As(err, &ae) && ae.ErrorCode() == "ValidationError":
				log.Debug("lifecycle action not ready", "hook", name, "err", ae.ErrorMessage())
			default:
				log.Warn("complete lifecycle action", "hook", name, "err", err)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// heartbeats records a heartbeat on each hook every period until ctx ends.
func (w *Watcher) heartbeats(ctx context.Context, md Metadata, hooks []string, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, h := range hooks {
			_, err := w.ASG.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
				AutoScalingGroupName: aws.String(md.Group), LifecycleHookName: aws.String(h), InstanceId: aws.String(md.InstanceID),
			})
			if err == nil {
				w.Log.Debug("lifecycle heartbeat", "hook", h)
			}
		}
	}
}
