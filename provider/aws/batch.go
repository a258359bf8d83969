package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go"

	"wsfleet/rollout"
)

// Batch effects: what a batch of a thousand-instance rollout does to its
// targets in a handful of calls rather than one or more per instance.

// The APIs' documented limits on one call.
const (
	maxDetach          = 20   // DetachInstances: "You can specify up to 20 instances."
	maxDescribeASGInst = 50   // DescribeAutoScalingInstances: up to 50 instance ids
	maxTerminate       = 1000 // TerminateInstances: up to 1000 instance ids
	maxFilterValues    = 200  // EC2 filter values per filter

	tagCallsAtOnce = 8
)

var (
	_ rollout.Retirer        = (*Provider)(nil)
	_ rollout.InstanceTagger = (*Provider)(nil)
)

// RetireInstances takes drained instances out of the group and terminates
// them: DetachInstances (20 a call; decrement lowers the desired capacity
// with them, otherwise the group launches replacements), then one EC2
// TerminateInstances for all of them. It reads before it writes, so that
// a repeat after a crash or a timeout does nothing twice: an instance
// already detached, or no longer in the group, is not detached again; one
// already shutting down or terminated is not terminated again; one the
// group is terminating itself is left to the group. An instance in a
// state DetachInstances refuses (Pending, EnteringStandby) is terminated
// in the group, one call each. nil means every instance reads back as out
// of the group (or leaving it) and shutting down or terminated.
func (p *Provider) RetireInstances(ctx context.Context, group string, ids []string, decrement bool) error {
	if len(ids) == 0 {
		return nil
	}
	states, err := p.groupStates(ctx, group, ids)
	if err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	var detach, single, terminate []string
	for _, id := range ids {
		st, in := states[id]
		switch {
		case !in, strings.HasPrefix(st, "Detach"):
			terminate = append(terminate, id)
		case strings.HasPrefix(st, "Terminat"):
			// The group is terminating it (its hooks run): leave it.
		case st == string(asgtypes.LifecycleStateInService) || st == string(asgtypes.LifecycleStateStandby):
			detach = append(detach, id)
			terminate = append(terminate, id)
		default:
			single = append(single, id)
		}
	}
	for rest := detach; len(rest) > 0; {
		n := min(len(rest), maxDetach)
		left, err := p.detach(ctx, group, rest[:n], decrement)
		if err != nil {
			return fmt.Errorf("retire: %w", err)
		}
		// Those the group began terminating in the meantime are its.
		terminate = slices.DeleteFunc(terminate, func(id string) bool { return slices.Contains(left, id) })
		detach = slices.DeleteFunc(detach, func(id string) bool { return slices.Contains(left, id) })
		rest = rest[n:]
	}
	if len(detach) > 0 {
		// Read back: out of the group, or on the way out.
		if err := p.confirmInstances(ctx, fmt.Sprintf("detach of %d instances from %s", len(detach), group), detach,
			func(in asgtypes.AutoScalingInstanceDetails) bool {
				return aws.ToString(in.AutoScalingGroupName) != group || strings.HasPrefix(aws.ToString(in.LifecycleState), "Detach")
			}); err != nil {
			return fmt.Errorf("retire: %w", err)
		}
	}
	for _, id := range single {
		if err := p.Terminate(ctx, group, id, decrement); err != nil && !errors.Is(err, rollout.ErrNotFound) {
			return fmt.Errorf("retire: %w", err)
		}
	}
	if len(terminate) == 0 {
		return nil
	}
	running, err := p.notShutDown(ctx, terminate)
	if err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	for rest := running; len(rest) > 0; {
		n := min(len(rest), maxTerminate)
		if _, err := p.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: rest[:n]}); err != nil {
			return fmt.Errorf("retire: terminate %d instances: %w", n, err)
		}
		rest = rest[n:]
	}
	if len(running) == 0 {
		return nil
	}
	return p.confirm(ctx, fmt.Sprintf("termination of %d instances", len(running)), func(ctx context.Context) (bool, error) {
		left, err := p.notShutDown(ctx, running)
		return len(left) == 0, err
	})
}

// detach detaches up to 20 instances. DetachInstances refuses the whole
// call (ValidationError) when one of them left InService or Standby since
// it was read (the group began terminating it): then the states are read
// again, only those still in InService or Standby are detached, and the
// others are returned as left to the group.
func (p *Provider) detach(ctx context.Context, group string, ids []string, decrement bool) (left []string, _ error) {
	call := func(ids []string) error {
		_, err := p.asg.DetachInstances(ctx, &autoscaling.DetachInstancesInput{
			AutoScalingGroupName: aws.String(group), InstanceIds: ids, ShouldDecrementDesiredCapacity: aws.Bool(decrement),
		})
		if err != nil {
			return fmt.Errorf("detach %s from %s: %w", strings.Join(ids, ","), group, err)
		}
		return nil
	}
	err := call(ids)
	if err == nil || !isCode(err, "ValidationError") {
		return nil, err
	}
	states, rerr := p.groupStates(ctx, group, ids)
	if rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	var still []string
	for _, id := range ids {
		st, in := states[id]
		switch {
		case st == string(asgtypes.LifecycleStateInService) || st == string(asgtypes.LifecycleStateStandby):
			still = append(still, id)
		case in && strings.HasPrefix(st, "Terminat"):
			left = append(left, id)
		}
	}
	if len(still)+len(left) == len(ids) && len(left) == 0 {
		return nil, err // not a change of state: the refusal stands
	}
	p.log.Warn("detach refused; instances changed state, detaching the rest", "group", group, "err", err, "still", len(still), "terminating", len(left))
	if len(still) == 0 {
		return left, nil
	}
	return left, call(still)
}

// groupStates reads the lifecycle state of each instance that is in the
// group, with DescribeAutoScalingInstances (50 ids a call). An instance
// of another group is an error: it is not the rollout's to retire.
func (p *Provider) groupStates(ctx context.Context, group string, ids []string) (map[string]string, error) {
	out := map[string]string{}
	for rest := ids; len(rest) > 0; {
		n := min(len(rest), maxDescribeASGInst)
		page, err := p.asg.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: rest[:n]})
		if err != nil {
			return nil, fmt.Errorf("describe instances of %s: %w", group, err)
		}
		for _, in := range page.AutoScalingInstances {
			id, g := aws.ToString(in.InstanceId), aws.ToString(in.AutoScalingGroupName)
			if g != group {
				return nil, fmt.Errorf("instance %s belongs to group %s, not %s", id, g, group)
			}
			out[id] = aws.ToString(in.LifecycleState)
		}
		rest = rest[n:]
	}
	return out, nil
}

// notShutDown returns the instances of ids that EC2 shows neither
// shutting down nor terminated, read with an instance-id filter (200
// values a call), so that an id EC2 no longer knows is absent rather than
// an error. An instance EC2 does not show at all is taken as gone.
func (p *Provider) notShutDown(ctx context.Context, ids []string) ([]string, error) {
	var out []string
	for rest := ids; len(rest) > 0; {
		n := min(len(rest), maxFilterValues)
		pager := ec2.NewDescribeInstancesPaginator(p.ec2, &ec2.DescribeInstancesInput{
			Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: rest[:n]}}, MaxResults: aws.Int32(1000),
		})
		for pager.HasMorePages() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describe instances: %w", err)
			}
			for _, r := range page.Reservations {
				for _, in := range r.Instances {
					if in.State == nil {
						continue
					}
					switch in.State.Name {
					case ec2types.InstanceStateNameShuttingDown, ec2types.InstanceStateNameTerminated:
					default:
						out = append(out, aws.ToString(in.InstanceId))
					}
				}
			}
		}
		rest = rest[n:]
	}
	return out, nil
}

// TagInstances sets the tag key on each instance to its value: one
// CreateTags per instance (the values differ), then one DescribeTags per
// 200 instances reads them all back.
func (p *Provider) TagInstances(ctx context.Context, key string, values map[string]string) error {
	ids := make([]string, 0, len(values))
	for id := range values {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// A few at once: each is a round trip, and a hundred in a row are
	// seconds; EC2's CreateTags bucket (100, refilled 10 a second) and
	// the SDK's retries pace them.
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	slots := make(chan struct{}, tagCallsAtOnce)
	for _, id := range ids {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			_, err := p.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String(key), Value: aws.String(values[id])}}})
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("tag %s %s=%s: %w", id, key, values[id], err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	err := p.confirm(ctx, fmt.Sprintf("tag %s on %d instances", key, len(ids)), func(ctx context.Context) (bool, error) {
		for rest := ids; len(rest) > 0; {
			n := min(len(rest), maxFilterValues)
			seen := map[string]bool{}
			pager := ec2.NewDescribeTagsPaginator(p.ec2, &ec2.DescribeTagsInput{Filters: []ec2types.Filter{
				{Name: aws.String("resource-id"), Values: rest[:n]}, {Name: aws.String("key"), Values: []string{key}},
			}, MaxResults: aws.Int32(1000)})
			for pager.HasMorePages() {
				page, err := pager.NextPage(ctx)
				if err != nil {
					return false, err
				}
				for _, t := range page.Tags {
					id := aws.ToString(t.ResourceId)
					if v, ok := values[id]; ok && aws.ToString(t.Value) == v {
						seen[id] = true
					}
				}
			}
			for _, id := range rest[:n] {
				if !seen[id] {
					return false, nil
				}
			}
			rest = rest[n:]
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for id, v := range values {
		p.ec2c.setTag(id, key, v)
	}
	return nil
}

// isCode reports an AWS error with code.
func isCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}

// deregisterFrom takes the instances out of one target group in one call.
// ELBv2 refuses the whole call (InvalidTarget) when one target is not
// registered, or no longer exists; only then is each target deregistered
// by itself, so that one target already gone does not keep the others
// registered.
func (p *Provider) deregisterFrom(ctx context.Context, arn string, ids []string) error {
	_, err := p.elb.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: aws.String(arn), Targets: targetsOf(ids)})
	switch {
	case err == nil:
		return nil
	case !isCode(err, "InvalidTarget"):
		return fmt.Errorf("deregister %s from %s: %w", strings.Join(ids, ","), arn, err)
	case len(ids) == 1:
		return nil // the one target is not registered: nothing to do
	}
	for _, id := range ids {
		_, err := p.elb.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: aws.String(arn), Targets: targetsOf([]string{id})})
		if err != nil && !isCode(err, "InvalidTarget") {
			return fmt.Errorf("deregister %s from %s: %w", id, arn, err)
		}
	}
	return nil
}
