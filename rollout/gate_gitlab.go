package rollout

import (
	"context"
	"fmt"
	"strings"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// gitlabDeploymentsKind is the gitlab_deployments check: no deployment
// running in the named projects and environments, through GitLab's Go
// client. It is a pre-check: the rollout refuses to begin while one
// runs (and `wsfleet plan` says so); in the phases that list it, a
// deployment that starts meanwhile fails the phase.
var gitlabDeploymentsKind = GateKind{Key: "gitlab_deployments", Spec: func() GateSpec { return &GitLabDeploymentsCheck{} }}

// GitLabDeploymentsCheck passes while no deployment of Projects to
// Environments has the status running.
type GitLabDeploymentsCheck struct {
	// URL is the GitLab instance; default https://gitlab.com.
	URL          string   `yaml:"url" json:"url,omitempty"`
	TokenEnv     string   `yaml:"token_env" json:"token_env"`
	Projects     []string `yaml:"projects" json:"projects"`
	Environments []string `yaml:"environments" json:"environments"`
}

// Validate wants the token's variable set, projects and environments.
func (c *GitLabDeploymentsCheck) Validate(at func(key, format string, args ...any)) {
	serviceKeys(at, &c.URL, gitlabURL, "token_env", c.TokenEnv)
	if len(c.Projects) == 0 {
		at("projects", "missing; list the projects (id or path, e.g. gitlab-com/gl-infra/gitter-infrastructure) whose deployments conflict")
	}
	if len(c.Environments) == 0 {
		at("environments", "missing; list the environments, e.g. [production, staging]")
	}
}

const gitlabURL = "https://gitlab.com"

// Describe says what the check asks.
func (c *GitLabDeploymentsCheck) Describe() string {
	return fmt.Sprintf("no GitLab deployment running in %s to %s (before any change, and through the phases)", strings.Join(c.Projects, ", "), strings.Join(c.Environments, ", "))
}

// Gate returns the check's gate: stateless.
func (c *GitLabDeploymentsCheck) Gate() Gate { return gitlabDeploymentsGate{c} }

type gitlabDeploymentsGate struct{ *GitLabDeploymentsCheck }

func (gitlabDeploymentsGate) Begin(context.Context, PhaseEnv) error     { return nil }
func (gitlabDeploymentsGate) End(context.Context, PhaseEnv) *GateResult { return nil }

func (g gitlabDeploymentsGate) Evaluate(ctx context.Context, env PhaseEnv) GateResult {
	return g.running(ctx, env.Checker)
}

// PreCheck is the same judgement before any change.
func (g gitlabDeploymentsGate) PreCheck(ctx context.Context, env PhaseEnv) GateResult {
	return g.running(ctx, env.Checker)
}

// gitlabPerPage is how many deployments a page of the list asks for.
const gitlabPerPage = 100

func (g gitlabDeploymentsGate) running(ctx context.Context, c *Checker) GateResult {
	token := secret(g.TokenEnv)
	cl, err := gitlabClient(g.URL, token, c)
	if err != nil {
		return GateResult{Detail: unreachable("GitLab (deployments)", err, token)}
	}
	var running []string
	for _, p := range g.Projects {
		for _, envName := range g.Environments {
			opts := &gitlab.ListProjectDeploymentsOptions{
				ListOptions: gitlab.ListOptions{PerPage: gitlabPerPage, Page: 1},
				Environment: gitlab.Ptr(envName),
				Status:      gitlab.Ptr("running"),
			}
			for pages := 0; pages < 100; pages++ {
				ds, resp, err := cl.Deployments.ListProjectDeployments(p, opts, gitlab.WithContext(ctx))
				if err != nil {
					return GateResult{Detail: unreachable("GitLab (deployments of "+p+")", err, token)}
				}
				for _, d := range ds {
					if d.Status != "running" {
						continue // the filter is the server's; trust but verify
					}
					running = append(running, fmt.Sprintf("%s: deployment %d of %s to %s", p, d.IID, d.Ref, envName))
				}
				if resp == nil || resp.NextPage == 0 {
					break
				}
				opts.Page = resp.NextPage
			}
		}
	}
	if len(running) > 0 {
		return GateResult{Detail: fmt.Sprintf("%d GitLab deployments running (none allowed): %s", len(running), strings.Join(running, "; "))}
	}
	return GateResult{Pass: true, Detail: fmt.Sprintf("no deployment running in %d projects x %d environments", len(g.Projects), len(g.Environments))}
}

// gitlabClient is GitLab's client on url with the checker's retrying
// HTTP client (the client's own retries are off: ours honour
// Retry-After the same way for every service).
func gitlabClient(url, token string, c *Checker) (*gitlab.Client, error) {
	return gitlab.NewClient(token,
		gitlab.WithBaseURL(strings.TrimSuffix(url, "/")+"/api/v4"),
		gitlab.WithHTTPClient(c.vendorClient()),
		gitlab.WithoutRetries())
}
