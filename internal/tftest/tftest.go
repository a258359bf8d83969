// Package tftest is the Terraform tests' harness: the real terraform
// binary (a test fails, naming what to install, when it is missing), the
// stand-in hashicorp/aws provider of terraform/testdata/provider-aws
// built once into a cache folder, a CLI config that loads it through
// dev_overrides, and a local cloud for examples/terraform to own a group
// in.
package tftest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"wsfleet/localcloud"
)

// CheckedVersion is the Terraform release the tests were written with.
const CheckedVersion = "1.11.4"

// NeedTerraform returns the terraform binary, failing the test (not
// skipping it) when it is missing: the Terraform tests are part of the
// suite, and README's test requirements name it.
func NeedTerraform(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("terraform")
	if err != nil {
		t.Fatalf("terraform not found on PATH: install Terraform v%s (README, test requirements); these tests run the real Terraform", CheckedVersion)
	}
	return p
}

var (
	providerOnce sync.Once
	providerDir  string
	providerErr  error
)

// Root is the module's root folder (where go.mod is), found from the
// test's working folder.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module wsfleet\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("module root (go.mod of wsfleet) not found above the working folder")
		}
		dir = parent
	}
}

// standInProvider builds terraform/testdata/provider-aws (its own module) once per
// test binary into a folder keyed by its sources' hash, so a second run
// reuses the binary, and returns that folder (the dev_overrides path).
func standInProvider(t testing.TB) string {
	t.Helper()
	providerOnce.Do(func() {
		src := filepath.Join(Root(t), "terraform", "testdata", "provider-aws")
		h := sha256.New()
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			fmt.Fprintf(h, "%s\n", strings.TrimPrefix(p, src))
			_, err = io.Copy(h, f)
			return err
		})
		if err != nil {
			providerErr = fmt.Errorf("hash %s: %w", src, err)
			return
		}
		dir := filepath.Join(os.TempDir(), "wsfleet-tf-provider-"+hex.EncodeToString(h.Sum(nil))[:16])
		bin := filepath.Join(dir, "terraform-provider-aws")
		if _, err := os.Stat(bin); err == nil {
			providerDir = dir
			return
		}
		tmp := bin + ".tmp"
		cmd := exec.Command("go", "build", "-o", tmp, ".")
		cmd.Dir = src
		if out, err := cmd.CombinedOutput(); err != nil {
			providerErr = fmt.Errorf("build the stand-in provider (scripts/test-deps.sh downloads its modules): %v\n%s", err, out)
			return
		}
		if err := os.Rename(tmp, bin); err != nil {
			providerErr = err
			return
		}
		providerDir = dir
	})
	if providerErr != nil {
		t.Fatal(providerErr)
	}
	return providerDir
}

// CLIConfig writes a Terraform CLI configuration that loads the stand-in
// provider as hashicorp/aws and returns its path.
func CLIConfig(t testing.TB) string {
	t.Helper()
	dir := standInProvider(t)
	path := filepath.Join(t.TempDir(), "terraform.rc")
	conf := fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"hashicorp/aws\" = %q\n  }\n  direct {}\n}\n", dir)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Cloud is a local cloud with the seed's target group and simulated
// images ami-old and ami-new, and no group: Terraform creates it.
type Cloud struct {
	*localcloud.Cloud
	TargetGroupARN string
	Token          string
}

// StartCloud starts it; it closes when the test ends.
func StartCloud(t testing.TB, ctx context.Context) *Cloud {
	t.Helper()
	cfg := localcloud.Config{Listen: "127.0.0.1:0", S3Dir: t.TempDir()}
	// ami-bad's instances run /bin/false: they never pass a health check
	// (a failing canary).
	cfg.Images = map[string]localcloud.Image{"ami-old": {Simulated: true}, "ami-new": {Simulated: true}, "ami-bad": {Command: "/bin/false"}}
	cfg.Tick = 50 * time.Millisecond
	cfg.SimulatedBootTime = 200 * time.Millisecond
	cfg.HealthCheckInterval = 100 * time.Millisecond
	cloud, err := localcloud.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cloud.Close() })
	delay := 3
	if err := cloud.Bootstrap(ctx, &localcloud.Topology{
		TargetGroups: []localcloud.TopoTargetGroup{{Name: "gitter-ws", Port: 8080, HealthCheckPath: "/readyz",
			HealthyThresholdCount: 2, UnhealthyThresholdCount: 2, DeregistrationDelaySeconds: &delay}},
	}); err != nil {
		t.Fatal(err)
	}
	out, err := elasticloadbalancingv2.NewFromConfig(awsConfig(), func(o *elasticloadbalancingv2.Options) {
		o.BaseEndpoint = aws.String(cloud.Endpoint())
	}).DescribeTargetGroups(ctx, &elasticloadbalancingv2.DescribeTargetGroupsInput{Names: []string{"gitter-ws"}})
	if err != nil || len(out.TargetGroups) != 1 {
		t.Fatalf("describe target group: %v", err)
	}
	return &Cloud{Cloud: cloud, TargetGroupARN: aws.ToString(out.TargetGroups[0].TargetGroupArn), Token: "tf-admin-token"}
}

func awsConfig() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
}

// ASG is an Auto Scaling client on the cloud.
func (c *Cloud) ASG() *autoscaling.Client {
	return autoscaling.NewFromConfig(awsConfig(), func(o *autoscaling.Options) { o.BaseEndpoint = aws.String(c.Endpoint()) })
}

// Module copies the example module examples/terraform/<sub> into a
// temporary folder with a terraform.tfvars that points it at the cloud,
// and returns the folder.
func (c *Cloud) Module(t testing.TB, sub string) string {
	t.Helper()
	src := filepath.Join(Root(t), "examples", "terraform", sub)
	dst := t.TempDir()
	files, err := filepath.Glob(filepath.Join(src, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("example module %s: %v", src, err)
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vars := fmt.Sprintf("# the local cloud of this test\nlocal_endpoint    = %q\ntarget_group_arns = [%q]\nuser_data         = \"--admin-token=%s\\n\"\n",
		c.Endpoint(), c.TargetGroupARN, c.Token)
	if err := os.WriteFile(filepath.Join(dst, "terraform.tfvars"), []byte(vars), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Terraform runs the terraform CLI in dir with the stand-in's CLI
// config, failing the test on error, and returns its output.
func Terraform(t testing.TB, dir, rc string, args ...string) string {
	t.Helper()
	out, err := Run(dir, rc, args...)
	if err != nil {
		t.Fatalf("terraform %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Run is Terraform returning the error.
func Run(dir, rc string, args ...string) (string, error) {
	flags := []string{args[0], "-no-color"}
	if args[0] != "show" {
		flags = append(flags, "-input=false")
	}
	cmd := exec.Command("terraform", append(flags, args[1:]...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// NameInstances tags the instances ids (sorted) ws-01, ws-02, … through
// the cloud at endpoint, as the seed's operators named theirs: a group
// Terraform just made has no Name tags, and the seed's phases name them.
func NameInstances(t testing.TB, endpoint string, ids []string) {
	t.Helper()
	ids = slices.Sorted(slices.Values(ids))
	client := ec2.NewFromConfig(awsConfig(), func(o *ec2.Options) { o.BaseEndpoint = aws.String(endpoint) })
	for i, id := range ids {
		if _, err := client.CreateTags(context.Background(), &ec2.CreateTagsInput{Resources: []string{id},
			Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(fmt.Sprintf("ws-%02d", i+1))}}}); err != nil {
			t.Fatalf("name %s: %v", id, err)
		}
	}
}
