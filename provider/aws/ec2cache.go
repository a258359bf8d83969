package aws

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// ec2Refresh is how often Group reads every instance of the group from
// EC2 again; in between it reads only the instances it has not seen.
const ec2Refresh = 30 * time.Second

// ec2Cache keeps what Group reads of each instance from EC2: its image,
// address, launch time and client token never change, and its tags change
// through this provider (TagInstance, TagInstances update the cache once
// they read the tag back) or, rarely, by hand, which the periodic full read
// catches. On a group of a thousand, the full DescribeInstances answer is
// most of what an observation costs the engine to decode.
type ec2Cache struct {
	mu   sync.Mutex
	byID map[string]ec2types.Instance
	full time.Time // when every instance was last read
	now  func() time.Time
}

// instances returns the EC2 description of each of ids, reading from EC2
// the ones not cached (all of them every ec2Refresh). An instance the
// group lists may not be in EC2's answer yet (InvalidInstanceID.NotFound):
// EC2 is eventually consistent, and its documentation says to retry.
func (c *ec2Cache) instances(ctx context.Context, p *Provider, ids []string) (map[string]ec2types.Instance, error) {
	c.mu.Lock()
	if c.now == nil {
		c.now = time.Now
	}
	if c.byID == nil {
		c.byID = map[string]ec2types.Instance{}
	}
	all := c.now().Sub(c.full) >= ec2Refresh
	var read []string
	for _, id := range ids {
		// One described before it had an address is read again.
		if in, ok := c.byID[id]; all || !ok || aws.ToString(in.PrivateIpAddress) == "" {
			read = append(read, id)
		}
	}
	c.mu.Unlock()
	got := map[string]ec2types.Instance{}
	if len(read) > 0 {
		pager := ec2.NewDescribeInstancesPaginator(p.ec2, &ec2.DescribeInstancesInput{InstanceIds: read})
		for pager.HasMorePages() {
			page, err := pager.NextPage(ctx, func(o *ec2.Options) {
				o.Retryer = retry.AddWithErrorCodes(o.Retryer, "InvalidInstanceID.NotFound")
			})
			if err != nil {
				return nil, err
			}
			for _, r := range page.Reservations {
				for _, in := range r.Instances {
					got[aws.ToString(in.InstanceId)] = in
				}
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if all {
		c.full = c.now()
	}
	out := make(map[string]ec2types.Instance, len(ids))
	keep := make(map[string]ec2types.Instance, len(ids))
	for _, id := range ids {
		in, ok := got[id]
		if !ok {
			in, ok = c.byID[id]
		}
		if ok {
			out[id], keep[id] = in, in
		}
	}
	c.byID = keep // instances that left the group are forgotten
	return out, nil
}

// setTag records a tag this provider wrote and read back.
func (c *ec2Cache) setTag(id, key, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	in, ok := c.byID[id]
	if !ok {
		return
	}
	tags := make([]ec2types.Tag, 0, len(in.Tags)+1)
	for _, t := range in.Tags {
		if aws.ToString(t.Key) != key {
			tags = append(tags, t)
		}
	}
	in.Tags = append(tags, ec2types.Tag{Key: aws.String(key), Value: aws.String(value)})
	c.byID[id] = in
}
