// Package rollout executes a fleet change (new image, canary, batches,
// checks, rollback) described by a plan file, on an Auto Scaling group
// reached through a Provider. A rollout is data: the plan is compiled into
// steps against the fleet as it was when the rollout started, and the engine
// persists its position and every effect it asks for, so that a restarted
// engine neither repeats nor skips an effect.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"wsfleet/nodeapi"
)

// Plan is a parsed plan file. docs/rollout.md documents every key.
type Plan struct {
	Change string `yaml:"change" json:"change"`
	Group  string `yaml:"group" json:"group"`
	Image  Image  `yaml:"image" json:"image"`
	// TerraformChange names the outside change `image: current` follows
	// (a merge request's URL, free text): a rollback says to revert it.
	TerraformChange string    `yaml:"terraform_change" json:"terraform_change,omitempty"`
	AWS             AWSConfig `yaml:"aws" json:"aws"`
	// State is where the change's state, event log and report live:
	// s3://BUCKET/PREFIX, or empty for the local state directory.
	State    string       `yaml:"state" json:"state,omitempty"`
	Strategy Strategy     `yaml:"strategy" json:"strategy,omitempty"`
	WarmUp   Duration     `yaml:"warm_up" json:"warm_up,omitempty"`
	Healthy  Duration     `yaml:"healthy_timeout" json:"healthy_timeout,omitempty"`
	Nodes    NodeAccess   `yaml:"nodes" json:"nodes"`
	Drain    DrainSpec    `yaml:"drain" json:"drain"`
	Checks   []Check      `yaml:"checks" json:"checks,omitempty"`
	Phases   []Phase      `yaml:"phases" json:"phases"`
	Rollback RollbackSpec `yaml:"rollback" json:"rollback"`
	Notify   NotifySpec   `yaml:"notify" json:"notify,omitzero"`
	// Placement says where released clients go (placement.go).
	Placement PlacementSpec `yaml:"placement" json:"placement"`

	// lines maps a key path ("phases[1].replace") to its line in the file,
	// so that errors found after decoding still point at the file.
	lines map[string]int
}

// AWSConfig selects the region and, for the local cloud only, an endpoint.
// Credentials always come from the standard AWS chain.
type AWSConfig struct {
	Region   string `yaml:"region" json:"region,omitempty"`
	Endpoint string `yaml:"endpoint" json:"endpoint,omitempty"`
}

// NodeAccess says how to reach a node's admin API (drain, status).
type NodeAccess struct {
	// AdminPort is used with the instance's private address when the
	// instance carries no wsfleet:admin tag with a full URL.
	AdminPort int `yaml:"admin_port" json:"admin_port,omitempty"`
	// AdminTokenEnv names the environment variable holding the admin
	// bearer token; the token itself never appears in a plan.
	AdminTokenEnv string `yaml:"admin_token_env" json:"admin_token_env,omitempty"`
}

// DrainSpec paces the drain of every instance that leaves: MaxRate is a
// fleet-wide budget of reconnects per second, split between the instances
// draining at the same time.
type DrainSpec struct {
	Window   Duration `yaml:"window" json:"window"`
	MaxRate  float64  `yaml:"max_rate" json:"max_rate"`
	Deadline Duration `yaml:"deadline" json:"deadline"`
}

// RollbackSpec says what a failure does: "auto" rolls back at once,
// "manual" stops and waits for `wsfleet rollback` or `abort`.
type RollbackSpec struct {
	OnFailure string `yaml:"on_failure" json:"on_failure"`
}

// Strategy is how a batch replaces instances.
type Strategy string

const (
	// LaunchBeforeTerminate adds the replacements, waits until they are
	// healthy, then drains and terminates: capacity never under desired.
	LaunchBeforeTerminate Strategy = "launch-before-terminate"
	// TerminateThenReplace drains and terminates, and lets the group
	// launch the replacements (the seed's literal steps).
	TerminateThenReplace Strategy = "terminate-then-replace"
)

// Phase is one window of the change: a canary or a batch of replacements.
type Phase struct {
	Name       string    `yaml:"name" json:"name"`
	Canary     int       `yaml:"canary" json:"canary,omitempty"`
	ProtectOld bool      `yaml:"protect_old" json:"protect_old,omitempty"`
	KeepCanary bool      `yaml:"keep_canary" json:"keep_canary,omitempty"`
	Replace    *Replace  `yaml:"replace" json:"replace,omitempty"`
	Strategy   Strategy  `yaml:"strategy" json:"strategy,omitempty"`
	Bake       Duration  `yaml:"bake" json:"bake,omitempty"`
	NotBefore  *Time     `yaml:"not_before" json:"not_before,omitempty"`
	Deadline   Duration  `yaml:"deadline" json:"deadline,omitempty"`
	Checks     *[]string `yaml:"checks" json:"checks,omitempty"`
	// CanaryShare is the part of the fleet's clients a canary phase's
	// canary takes before its bake (placement_plan.go); nil: auto.
	CanaryShare *Share `yaml:"canary_share" json:"canary_share,omitempty"`
}

// Replace selects the instances a phase replaces: names, a count, a
// percentage of the group's desired capacity, or the rest.
type Replace struct {
	Names   []string `json:"names,omitempty"`
	Count   int      `json:"count,omitempty"`
	Percent int      `json:"percent,omitempty"`
	Rest    bool     `json:"rest,omitempty"`
}

// UnmarshalYAML accepts a list of names, an integer, "N%" or "rest".
func (r *Replace) UnmarshalYAML(unmarshal func(any) error) error {
	var names []string
	if err := unmarshal(&names); err == nil {
		if len(names) == 0 {
			return errors.New("empty list; give names, a count, a percentage like 50% or rest")
		}
		*r = Replace{Names: names}
		return nil
	}
	var s string
	if err := unmarshal(&s); err != nil {
		return errors.New("want a list of names, a count, a percentage like 50% or rest")
	}
	s = strings.TrimSpace(s)
	switch {
	case s == "rest":
		*r = Replace{Rest: true}
	case strings.HasSuffix(s, "%"):
		n, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
		if err != nil || n <= 0 || n > 100 {
			return fmt.Errorf("%q is not a percentage between 1%% and 100%%", s)
		}
		*r = Replace{Percent: n}
	default:
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a list of names, a positive count, a percentage like 50%% or rest", s)
		}
		*r = Replace{Count: n}
	}
	return nil
}

// String renders the selection as the plan would write it.
func (r *Replace) String() string {
	switch {
	case r == nil:
		return ""
	case r.Rest:
		return "rest"
	case r.Percent > 0:
		return fmt.Sprintf("%d%%", r.Percent)
	case r.Count > 0:
		return strconv.Itoa(r.Count)
	}
	return strings.Join(r.Names, ", ")
}

// Duration is a time.Duration written as "30s", "2m" or "1h30m".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return errors.New("want a duration like 30s, 2m or 1h30m")
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration like 30s, 2m or 1h30m", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(d.D().String())), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Time is an RFC 3339 instant.
type Time struct{ time.Time }

// UnmarshalYAML parses RFC 3339.
func (t *Time) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return errors.New("want a time like 2019-08-21T06:00:00Z")
	}
	v, err := time.Parse(time.RFC3339, strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a time like 2019-08-21T06:00:00Z", s)
	}
	t.Time = v
	return nil
}

// PlanError is one problem in a plan file, located by key and line.
type PlanError struct {
	Key  string // "phases[1].replace"; empty for the whole file
	Line int    // 1-based; 0 when unknown
	Msg  string // what is wrong and what would be valid
}

func (e *PlanError) Error() string {
	switch {
	case e.Line > 0 && e.Key != "":
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Key, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	case e.Key != "":
		return fmt.Sprintf("%s: %s", e.Key, e.Msg)
	}
	return e.Msg
}

// PlanErrors is every problem found in a plan, in file order.
type PlanErrors []*PlanError

func (es PlanErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// ErrInvalidPlan is matched (errors.Is) by every plan validation error.
var ErrInvalidPlan = errors.New("invalid plan")

// Is makes PlanErrors match ErrInvalidPlan.
func (es PlanErrors) Is(target error) bool { return target == ErrInvalidPlan }

// maxPlanSize bounds what ParsePlan reads; a plan is a page of YAML.
const maxPlanSize = 1 << 20

// ParsePlan decodes and validates a plan file on its own (without the
// fleet). Unknown keys, wrong types and inconsistent values come back as
// PlanErrors naming the key and line.
func ParsePlan(data []byte) (*Plan, error) { return ParsePlanContext(context.Background(), data) }

// ParsePlanContext is ParsePlan that stops when ctx ends. Every step is
// bounded (the file's size, the nodes its aliases expand to), and the
// walks over the document poll ctx as well.
func ParsePlanContext(ctx context.Context, data []byte) (p *Plan, err error) {
	// The YAML decoder has panicked on malformed input found by fuzzing
	// (a tagged scalar where a list is expected); a plan file is outside
	// input, so a panic there is one more invalid plan.
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, PlanErrors{{Msg: fmt.Sprintf("malformed YAML (%v)", r)}}
		}
	}()
	if len(data) > maxPlanSize {
		return nil, PlanErrors{{Msg: fmt.Sprintf("plan is %d bytes; at most %d are read", len(data), maxPlanSize)}}
	}
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, PlanErrors{yamlError(err)}
	}
	// Before any walk or decode that expands aliases: one document, and
	// aliases within budget.
	if errs := docCheck(ctx, file.Docs); len(errs) > 0 {
		return nil, errs
	}
	p = &Plan{lines: map[string]int{}}
	var body ast.Node
	for _, doc := range file.Docs {
		if doc.Body != nil {
			body = doc.Body // docCheck let one through at most
		}
	}
	if body == nil {
		return nil, p.validate()
	}
	d := &yamlDoc{ctx: ctx, anchors: map[string]ast.Node{}}
	body = d.expand(body)
	var errs PlanErrors
	d.walkKeys(body, reflect.TypeOf(*p), "", p.lines, &errs)
	if err := ctx.Err(); err != nil {
		return nil, PlanErrors{{Msg: fmt.Sprintf("reading the plan stopped: %v", err)}}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	if err := yaml.NodeToValue(body, p); err != nil {
		return nil, PlanErrors{p.yamlError(err)}
	}
	if errs := p.validate(); len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// yamlError turns a go-yaml error into a PlanError with its line.
func yamlError(err error) *PlanError {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		return &PlanError{Line: ye.GetToken().Position.Line, Msg: ye.GetMessage()}
	}
	return &PlanError{Msg: err.Error()}
}

// yamlError also names the key when the line is one of the plan's keys.
func (p *Plan) yamlError(err error) *PlanError {
	pe := yamlError(err)
	if pe.Line > 0 {
		best := ""
		for k, l := range p.lines {
			if l == pe.Line && len(k) > len(best) {
				best = k
			}
		}
		pe.Key = best
	}
	return pe
}

// walkKeys checks every mapping key against the yaml tags of t, records
// each key's line under its path, reports unknown keys with the keys that
// would be valid there, and decodes every leaf value on its own, so that
// every wrong type in the file is reported at once, each at its line (the
// decoder stops at the first). Aliases are followed to their anchors
// (docCheck bounded what they expand to).
func (d *yamlDoc) walkKeys(n ast.Node, t reflect.Type, path string, lines map[string]int, errs *PlanErrors) {
	if d.steps++; d.steps%256 == 0 && d.ctx.Err() != nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	at := n
	if tag, ok := n.(*ast.TagNode); ok {
		n = tag.Value
	}
	if _, alias := n.(*ast.AliasNode); alias {
		return // no anchor before it: the decoder reports it
	}
	if reflect.PointerTo(t).Implements(reflect.TypeOf((*interface {
		UnmarshalYAML(func(any) error) error
	})(nil)).Elem()) {
		// A leaf with its own syntax: decode it here, where its line is
		// known, since the decoder reports these errors without one.
		d.decodeLeaf(n, at, t, path, false, errs)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		values, ok := mappingValues(n)
		if !ok {
			if _, null := n.(*ast.NullNode); !null {
				*errs = append(*errs, &PlanError{Key: path, Line: lineOf(at), Msg: "want a mapping (key: value lines or {key: value})"})
			}
			return
		}
		fields, valid := yamlFields(t)
		for _, v := range values {
			key := v.Key.String()
			kp := key
			if path != "" {
				kp = path + "." + key
			}
			line := lineOf(v.Key)
			if v.Key.IsMergeKey() {
				*errs = append(*errs, &PlanError{Key: kp, Line: line, Msg: "merge keys (<<) are not supported in a plan; write the keys, or alias a whole value (key: *anchor)"})
				continue
			}
			ft, ok := fields[key]
			if !ok {
				hint := "valid keys here: " + strings.Join(valid, ", ")
				if s := closest(key, valid); s != "" {
					hint = fmt.Sprintf("did you mean %q? %s", s, hint)
				}
				*errs = append(*errs, &PlanError{Key: kp, Line: line, Msg: "unknown key; " + hint})
				continue
			}
			lines[kp] = line
			d.walkKeys(v.Value, ft, kp, lines, errs)
		}
	case reflect.Map:
		values, ok := mappingValues(n)
		if !ok {
			if _, null := n.(*ast.NullNode); !null {
				*errs = append(*errs, &PlanError{Key: path, Line: lineOf(at), Msg: "want a mapping (key: value lines or {key: value})"})
			}
			return
		}
		for _, v := range values {
			kp := path + "." + v.Key.String()
			if v.Key.IsMergeKey() {
				*errs = append(*errs, &PlanError{Key: kp, Line: lineOf(v.Key), Msg: "merge keys (<<) are not supported in a plan; write the keys, or alias a whole value (key: *anchor)"})
				continue
			}
			lines[kp] = lineOf(v.Key)
			d.walkKeys(v.Value, t.Elem(), kp, lines, errs)
		}
	case reflect.Slice:
		s, ok := n.(*ast.SequenceNode)
		if !ok {
			if _, null := n.(*ast.NullNode); !null {
				*errs = append(*errs, &PlanError{Key: path, Line: lineOf(at), Msg: "want a list (- item lines or [a, b])"})
			}
			return
		}
		for i, v := range s.Values {
			ip := fmt.Sprintf("%s[%d]", path, i)
			lines[ip] = lineOf(v)
			d.walkKeys(v, t.Elem(), ip, lines, errs)
		}
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		switch n.(type) {
		case *ast.MappingNode, *ast.MappingValueNode, *ast.SequenceNode:
			*errs = append(*errs, &PlanError{Key: path, Line: lineOf(at), Msg: "want " + kindName(t.Kind())})
			return
		}
		d.decodeLeaf(n, at, t, path, true, errs)
	}
}

// decodeLeaf decodes one value into a new t and reports its error at
// the value's line. A value still holding an alias (one without an
// anchor before it) is left to the decoder, which reports it.
// A plain value's message says what kind of value is wanted; a leaf with
// its own syntax says so itself.
func (d *yamlDoc) decodeLeaf(n, at ast.Node, t reflect.Type, path string, plain bool, errs *PlanErrors) {
	if hasAlias(n) {
		return
	}
	if err := yaml.NodeToValue(n, reflect.New(t).Interface()); err != nil {
		msg := err.Error()
		var ye yaml.Error
		if errors.As(err, &ye) {
			msg = ye.GetMessage()
		}
		if plain {
			msg = fmt.Sprintf("want %s (%s)", kindName(t.Kind()), msg)
		}
		*errs = append(*errs, &PlanError{Key: path, Line: lineOf(at), Msg: msg})
	}
}

// kindName names a value kind as a plan's author would.
func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	}
	return "a value"
}

// mappingValues returns the key: value pairs of a mapping node (a tag
// aside), and false when n is no mapping.
func mappingValues(n ast.Node) ([]*ast.MappingValueNode, bool) {
	if t, ok := n.(*ast.TagNode); ok {
		n = t.Value
	}
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}, true
	}
	return nil, false
}

// yamlFields returns the keys of a struct type with the type of each, in
// order. A check's keys are its own and each registered kind's, whose
// spec type holds that kind's keys.
func yamlFields(t reflect.Type) (map[string]reflect.Type, []string) {
	fields := map[string]reflect.Type{}
	var valid []string
	if t == reflect.TypeFor[Check]() {
		fields["name"], fields["interval"] = reflect.TypeFor[string](), reflect.TypeFor[Duration]()
		valid = append(valid, checkKeys...)
		for _, k := range gateKeys() {
			kind, _ := gateKind(k)
			fields[k] = reflect.TypeOf(kind.Spec())
			valid = append(valid, k)
		}
		return fields, valid
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = f.Type
		valid = append(valid, name)
	}
	return fields, valid
}

// lineOf is the line a node starts on, 0 when unknown.
func lineOf(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

// closest returns the valid key nearest to key when it is a likely typo.
func closest(key string, valid []string) string {
	best, bestD := "", 3
	for _, v := range valid {
		if d := editDistance(key, v); d < bestD {
			best, bestD = v, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Line returns the line of a key path in the plan file, or 0.
func (p *Plan) Line(key string) int { return p.lines[key] }

func (p *Plan) errAt(key, format string, args ...any) *PlanError {
	return &PlanError{Key: key, Line: p.lines[key], Msg: fmt.Sprintf(format, args...)}
}

var changeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Defaults applied by validate when a key is absent.
const (
	defaultWarmUp         = 10 * time.Second
	defaultHealthyTimeout = 10 * time.Minute
	defaultCheckInterval  = 10 * time.Second
)

// DefaultDrainMaxRate is drain.max_rate when a plan leaves it out (or sets
// 0): the fleet-wide reconnect budget, in clients per second, that one
// receiving node of one core absorbs with a quarter of its core. It is
// bench.ReconnectBudget(perCore, 1, 1, bench.TakeoverShare) of the
// take-over benchmark's figure (`wsfleet bench takeover`, docs/bench.md,
// "Take-overs per second": 1,021 take-overs/s per core, the lowest of
// four runs on a loaded machine; a quarter is 255, rounded down). Before
// it a plan without max_rate left each draining node at its own default
// (200/s each, so k nodes draining at once released k×200/s whatever
// received them); a budget that a single small receiving node can take
// keeps the default safe for any fleet, and a plan for a larger fleet
// raises it by docs/rollout.md's formula.
const DefaultDrainMaxRate = 250

// Bounds of a plan's numbers: what each can mean, so that a value past
// them is a mistake reported at plan time, not a loop, an overflow or a
// refusal in the middle of a rollout. README's plan tables list them.
const (
	// maxInstances bounds a canary and a replace count before the group
	// is read: no group the engine is built and measured for (1,000
	// instances) comes near it. Against the group, a canary is bounded by
	// its max size.
	maxInstances = 10_000
	// maxPhases bounds the phases: each is at least a batch and a check.
	maxPhases = 1_000
	// maxWait bounds the waits of a phase (bake, deadline): a week; a
	// rollout holds the group's lock and suspends its processes the while.
	maxWait = 7 * 24 * time.Hour
	// maxWarmUp and maxHealthy bound how long a replacement may take to
	// come up and stay up before it counts as healthy.
	maxWarmUp  = time.Hour
	maxHealthy = 24 * time.Hour
)

// errRange reports a number outside its allowed range at key.
func (p *Plan) errRange(key string, v any, allowed string) *PlanError {
	return p.errAt(key, "%v is out of range; allowed: %s", v, allowed)
}

// validate checks what can be checked without the fleet and fills
// defaults.
func (p *Plan) validate() PlanErrors {
	var errs PlanErrors
	add := func(e *PlanError) { errs = append(errs, e) }
	if p.Change == "" {
		add(p.errAt("change", "missing; give the change an id such as gitter-ws-new-ami (the lock and the state are keyed by it)"))
	} else if !changeID.MatchString(p.Change) {
		add(p.errAt("change", "%q: use letters, digits, '.', '_' and '-' (at most 64)", p.Change))
	}
	if p.State != "" {
		if u, err := ParseStateURL(p.State); err != nil {
			add(p.errAt("state", "%v", err))
		} else if !u.S3() {
			add(p.errAt("state", "%q: give s3://BUCKET/PREFIX (leave state out for the local state directory, or use --state-dir)", p.State))
		}
	}
	if p.Group == "" {
		add(p.errAt("group", "missing; name the Auto Scaling group, e.g. group: gitter-ws"))
	}
	if p.Image.IsZero() {
		add(p.errAt("image", "missing; give the new image id, e.g. image: ami-0123456789abcdef0 (or current, or {terraform: {...}})"))
	}
	if p.Strategy == "" {
		p.Strategy = LaunchBeforeTerminate
	} else if !validStrategy(p.Strategy) {
		add(p.errAt("strategy", "%q; valid: %s, %s", p.Strategy, LaunchBeforeTerminate, TerminateThenReplace))
	}
	if p.WarmUp.D() > maxWarmUp {
		add(p.errRange("warm_up", p.WarmUp.D(), "0 to "+maxWarmUp.String()))
	}
	// Absent means the default; an explicit 0s means no warm-up (the
	// documented range starts at 0), so presence is read from the file.
	if p.WarmUp == 0 && p.lines["warm_up"] == 0 {
		p.WarmUp = Duration(defaultWarmUp)
	}
	if p.Healthy.D() > maxHealthy {
		add(p.errRange("healthy_timeout", p.Healthy.D(), "1s to "+maxHealthy.String()+" (0 or absent: 10m)"))
	}
	if p.Healthy == 0 {
		p.Healthy = Duration(defaultHealthyTimeout)
	}
	if p.Nodes.AdminPort < 0 || p.Nodes.AdminPort > 65535 {
		add(p.errAt("nodes.admin_port", "%d is not a port (1-65535)", p.Nodes.AdminPort))
	}
	if p.Nodes.AdminTokenEnv == "" {
		p.Nodes.AdminTokenEnv = "WSFLEET_ADMIN_TOKEN"
	}
	// A node refuses a drain past these (nodeapi's bounds): caught here,
	// not by every node in the middle of the rollout.
	if !(p.Drain.MaxRate >= 0 && p.Drain.MaxRate <= nodeapi.MaxDrainRate) {
		add(p.errRange("drain.max_rate", p.Drain.MaxRate, fmt.Sprintf("0 to %g reconnects per second (the node admin API's maximum; 0 or left out: the default budget, %g)", float64(nodeapi.MaxDrainRate), float64(DefaultDrainMaxRate))))
	}
	if p.Drain.MaxRate == 0 {
		p.Drain.MaxRate = DefaultDrainMaxRate
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"drain.window", p.Drain.Window}, {"drain.deadline", p.Drain.Deadline}} {
		if d.v.D() > nodeapi.MaxDrainDuration {
			add(p.errRange(d.key, d.v.D(), "0 to "+nodeapi.MaxDrainDuration.String()+" (the node admin API's maximum drain)"))
		}
	}
	if p.Drain.Deadline == 0 {
		p.Drain.Deadline = Duration(5 * time.Minute)
	}
	if p.Drain.Deadline < p.Drain.Window {
		add(p.errAt("drain.deadline", "%s is shorter than drain.window %s; the deadline must leave the window time to run", p.Drain.Deadline.D(), p.Drain.Window.D()))
	}
	switch p.Rollback.OnFailure {
	case "":
		p.Rollback.OnFailure = "auto"
	case "auto", "manual":
	default:
		add(p.errAt("rollback.on_failure", "%q; valid: auto (roll back at once), manual (stop and wait for wsfleet rollback)", p.Rollback.OnFailure))
	}
	p.Notify.validate(func(k, format string, args ...any) { add(p.errAt("notify."+k, format, args...)) })
	checkNames := map[string]bool{}
	for i, c := range p.Checks {
		key := fmt.Sprintf("checks[%d]", i)
		if c.Name == "" {
			add(p.errAt(key, "check has no name; add name: ..."))
		} else if checkNames[c.Name] {
			add(p.errAt(key+".name", "%q is used by another check; names must be unique", c.Name))
		}
		checkNames[c.Name] = true
		p.Checks[i].validate(func(k, format string, args ...any) {
			if k != "" {
				k = key + "." + k
			} else {
				k = key
			}
			add(p.errAt(k, format, args...))
		})
	}
	if len(p.Phases) == 0 {
		add(p.errAt("phases", "no phases; add at least one, e.g. - {name: all, replace: rest}"))
	}
	if len(p.Phases) > maxPhases {
		add(p.errRange("phases", fmt.Sprintf("%d phases", len(p.Phases)), fmt.Sprintf("1 to %d phases", maxPhases)))
	}
	phaseNames := map[string]bool{}
	named := map[string]int{}
	restAt := -1
	for i := range p.Phases {
		ph := &p.Phases[i]
		key := fmt.Sprintf("phases[%d]", i)
		if ph.Name == "" {
			ph.Name = fmt.Sprintf("phase %d", i+1)
		}
		if phaseNames[ph.Name] {
			add(p.errAt(key+".name", "%q is used by another phase; names must be unique", ph.Name))
		}
		phaseNames[ph.Name] = true
		if ph.Canary < 0 || ph.Canary > maxInstances {
			add(p.errRange(key+".canary", ph.Canary, fmt.Sprintf("1 to %d instances, and at most the group's max size", maxInstances)))
		}
		if r := ph.Replace; r != nil && r.Count > maxInstances {
			add(p.errRange(key+".replace", r.Count, fmt.Sprintf("a count of 1 to %d instances (or names, a percentage, rest)", maxInstances)))
		}
		if ph.Bake.D() > maxWait {
			add(p.errRange(key+".bake", ph.Bake.D(), "0 to "+maxWait.String()))
		}
		if ph.Deadline.D() > maxWait {
			add(p.errRange(key+".deadline", ph.Deadline.D(), "drain.deadline to "+maxWait.String()+" (0 or absent: none)"))
		}
		if (ph.Canary > 0) == (ph.Replace != nil) {
			add(p.errAt(key, "a phase has exactly one of canary: N or replace: (names, a count, a percentage or rest)"))
		}
		if ph.Canary == 0 && (ph.ProtectOld || ph.KeepCanary) {
			add(p.errAt(key, "protect_old and keep_canary only apply to a canary phase"))
		}
		if ph.Strategy == "" {
			ph.Strategy = p.Strategy
		} else if !validStrategy(ph.Strategy) {
			add(p.errAt(key+".strategy", "%q; valid: %s, %s", ph.Strategy, LaunchBeforeTerminate, TerminateThenReplace))
		}
		if restAt >= 0 && ph.Replace != nil {
			add(p.errAt(key+".replace", "phase %q already replaces the rest; nothing is left for this phase", p.Phases[restAt].Name))
		}
		if ph.Replace != nil {
			if ph.Replace.Rest {
				restAt = i
			}
			for _, n := range ph.Replace.Names {
				if j, dup := named[n]; dup {
					add(p.errAt(key+".replace", "%s is already replaced by phase %q; phases must not overlap", n, p.Phases[j].Name))
				}
				named[n] = i
			}
		}
		if ph.Deadline > 0 && ph.Deadline < p.Drain.Deadline {
			add(p.errAt(key+".deadline", "%s is shorter than drain.deadline %s: a drain could not finish inside the phase; raise it to at least %s or lower drain.deadline", ph.Deadline.D(), p.Drain.Deadline.D(), p.Drain.Deadline.D()))
		}
		if ph.Checks != nil {
			for _, c := range *ph.Checks {
				if !checkNames[c] {
					add(p.errAt(key+".checks", "no check named %q; defined: %s", c, strings.Join(sortedKeys(checkNames), ", ")))
				}
			}
		}
	}
	p.validatePlacement(add)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return errs
}

func validStrategy(s Strategy) bool { return s == LaunchBeforeTerminate || s == TerminateThenReplace }

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// PhaseChecks returns the checks that gate phase i: the phase's own list
// when it names one, else every check.
func (p *Plan) PhaseChecks(i int) []Check {
	ph := p.Phases[i]
	if ph.Checks == nil {
		return p.Checks
	}
	var out []Check
	for _, c := range p.Checks {
		for _, n := range *ph.Checks {
			if c.Name == n {
				out = append(out, c)
			}
		}
	}
	return out
}
