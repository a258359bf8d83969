package rollout

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Connection placement's plan keys: a canary phase's canary_share and the
// top-level placement section (placement.go has the mechanism).

// Share is a canary phase's canary_share: the part of the fleet's clients
// the canary takes from the old nodes before its bake. Absent or "auto"
// is the canary's fair share, canaries/(old nodes + canaries); "N%" a
// fixed part; 0 none (the canary bakes with whatever reaches it).
type Share struct {
	Auto    bool    `json:"auto,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

// Bounds of canary_share and placement.balance.
const (
	maxSharePercent   = 50.0
	maxBalancePercent = 100.0
	// defaultBalance is placement.balance when absent: the fleet's end
	// balance the engine aims for, ±15 % of the mean.
	defaultBalance = 15.0
)

// UnmarshalYAML accepts auto, N% (up to 50%) and 0.
func (s *Share) UnmarshalYAML(unmarshal func(any) error) error {
	var n float64
	if err := unmarshal(&n); err == nil {
		if n != 0 {
			return fmt.Errorf("%g: give auto, a percentage like 10%% (up to %g%%) or 0 (off)", n, maxSharePercent)
		}
		*s = Share{}
		return nil
	}
	var v string
	if err := unmarshal(&v); err != nil {
		return fmt.Errorf("want auto, a percentage like 10%% (up to %g%%) or 0 (off)", maxSharePercent)
	}
	v = strings.TrimSpace(v)
	if v == "auto" {
		*s = Share{Auto: true}
		return nil
	}
	p, err := parsePercent(v, maxSharePercent, true)
	if err != nil {
		return fmt.Errorf("%q: %w; or auto, or 0 (off)", v, err)
	}
	*s = Share{Percent: p}
	return nil
}

// String renders the share as a plan would write it.
func (s Share) String() string {
	switch {
	case s.Auto:
		return "auto"
	case s.Percent > 0:
		return strconv.FormatFloat(s.Percent, 'g', -1, 64) + "%"
	}
	return "0"
}

// parsePercent reads "N%" with 0 <= N <= max (0 only when zero is set).
func parsePercent(v string, max float64, zero bool) (float64, error) {
	num, ok := strings.CutSuffix(strings.TrimSpace(v), "%")
	p, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	lo := "0%"
	if !zero {
		lo = "1%"
	}
	if !ok || err != nil || math.IsNaN(p) || p < 0 || p > max || (p == 0 && !zero) {
		return 0, fmt.Errorf("not a percentage from %s to %g%%", lo, max)
	}
	return p, nil
}

// PlacementSpec is the plan's placement section: where released clients
// go. Off turns the whole mechanism off (the rollout runs as without it);
// MoveOnce cordons every old node before a batch drains so that released
// clients land on new instances only; Balance is the end balance aimed
// for, in percent of the mean (0: no end balancing).
type PlacementSpec struct {
	Off      bool    `json:"off,omitempty"`
	MoveOnce bool    `json:"move_once"`
	Balance  float64 `json:"balance"`
	set      bool    // read from the file (else the defaults apply)
}

// UnmarshalYAML accepts false or off (placement off), true or on (the
// defaults), or a mapping {move_once: bool, balance: N% | off}.
func (p *PlacementSpec) UnmarshalYAML(unmarshal func(any) error) error {
	*p = PlacementSpec{MoveOnce: true, Balance: defaultBalance, set: true}
	var b bool
	if err := unmarshal(&b); err == nil {
		p.Off = !b
		return nil
	}
	var m map[string]any
	if err := unmarshal(&m); err != nil {
		var v string
		if err := unmarshal(&v); err == nil {
			switch strings.TrimSpace(v) {
			case "off":
				p.Off = true
				return nil
			case "on":
				return nil
			}
		}
		return errors.New("want off, on, or {move_once: true|false, balance: N% | off}")
	}
	var errs []error
	for k, v := range m {
		switch k {
		case "move_once":
			b, ok := v.(bool)
			if !ok {
				errs = append(errs, fmt.Errorf("move_once: %v: want true or false", v))
			}
			p.MoveOnce = b
		case "balance":
			switch x := v.(type) {
			case bool:
				if x {
					errs = append(errs, errors.New("balance: true: give a percentage like 15% (1% to 100%), or off"))
				}
				p.Balance = 0
			case string:
				if x == "off" {
					p.Balance = 0
					continue
				}
				f, err := parsePercent(x, maxBalancePercent, false)
				if err != nil {
					errs = append(errs, fmt.Errorf("balance: %q: %w, or off", x, err))
				}
				p.Balance = f
			default:
				errs = append(errs, fmt.Errorf("balance: %v: give a percentage like 15%% (1%% to %g%%), or off", v, maxBalancePercent))
			}
		default:
			errs = append(errs, fmt.Errorf("unknown key %s; valid keys here: move_once, balance", k))
		}
	}
	return errors.Join(errs...)
}

// placement is the plan's placement section with its defaults.
func (p *Plan) placement() PlacementSpec {
	if !p.Placement.set {
		return PlacementSpec{MoveOnce: true, Balance: defaultBalance}
	}
	return p.Placement
}

// canaryShare is phase i's canary share of the fleet's clients (0 to 1)
// for canaries new instances beside old ones; 0: none.
func (p *Plan) canaryShare(i, old, canaries int) float64 {
	ph := p.Phases[i]
	if p.placement().Off || ph.Canary == 0 || old+canaries == 0 {
		return 0
	}
	switch s := ph.CanaryShare; {
	case s == nil || s.Auto:
		return float64(canaries) / float64(old+canaries)
	default:
		return s.Percent / 100
	}
}

// validatePlacement checks the placement keys that depend on others.
func (p *Plan) validatePlacement(add func(*PlanError)) {
	for i, ph := range p.Phases {
		if ph.CanaryShare != nil && ph.Canary == 0 {
			add(p.errAt(fmt.Sprintf("phases[%d].canary_share", i), "only applies to a canary phase (canary: N)"))
		}
	}
}
