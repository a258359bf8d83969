package rollout

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// commandKind is the command check: a program that exits 0.
var commandKind = GateKind{Key: "command", Spec: func() GateSpec { return &CommandCheck{} }}

// CommandCheck runs a program; exit status 0 passes.
type CommandCheck struct {
	Run     []string `yaml:"run" json:"run"`
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// Validate wants a program and a timeout within maxCommandTimeout.
func (cc *CommandCheck) Validate(at func(key, format string, args ...any)) {
	if len(cc.Run) == 0 {
		at("run", "missing; give the program and its arguments as a list")
	}
	if cc.Timeout.D() > maxCommandTimeout {
		outOfRange(at, "timeout", cc.Timeout.D(), "1ms to "+maxCommandTimeout.String()+" (0 or absent: 30s)")
	}
}

// maxCommandTimeout bounds a command check's run: it runs on every round
// of checks, and a round must end for the phase to go on.
const maxCommandTimeout = time.Hour

// Describe says what the check runs.
func (cc *CommandCheck) Describe() string {
	return fmt.Sprintf("`%s` exits 0", strings.Join(cc.Run, " "))
}

// Gate returns the check's gate: stateless.
func (cc *CommandCheck) Gate() Gate { return commandGate{cc} }

type commandGate struct{ *CommandCheck }

func (commandGate) Begin(context.Context, PhaseEnv) error     { return nil }
func (commandGate) End(context.Context, PhaseEnv) *GateResult { return nil }
func (g commandGate) Evaluate(ctx context.Context, _ PhaseEnv) GateResult {
	return verdict(g.run(ctx))
}

func (cc *CommandCheck) run(ctx context.Context) (string, error) {
	to := cc.Timeout.D()
	if to == 0 {
		to = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	cmd := exec.CommandContext(ctx, cc.Run[0], cc.Run[1:]...)
	out, err := cmd.CombinedOutput()
	tail := strings.TrimSpace(string(out))
	if len(tail) > 200 {
		tail = "…" + tail[len(tail)-200:]
	}
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", strings.Join(cc.Run, " "), err, tail)
	}
	return "exit 0", nil
}
