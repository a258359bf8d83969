package localcloud

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/smithy-go/encoding/cbor"
)

// CloudWatch alarms, as much as a rollout's cloudwatch check and a test
// that raises an alarm need: PutMetricAlarm (metric alarms, no metric
// evaluation: an alarm changes state only by SetAlarmState),
// DescribeAlarms and SetAlarmState.
//
// CloudWatch's model lists three protocols, smithy-rpc-v2-cbor first,
// then JSON and query; aws-sdk-go-v2's cloudwatch module (as pinned in
// go.mod) and the AWS CLI speak the first: POST
// /service/GraniteServiceVersion20100801/operation/{Operation} with a
// CBOR body, answered in CBOR, errors carrying `__type` (the error's
// shape id) and `message`, and, as the service is awsQueryCompatible,
// the query protocol's code in the x-amzn-query-error header
// ("ResourceNotFound;Sender").

// cwService is CloudWatch's service name in RPC v2 paths.
const cwService = "GraniteServiceVersion20100801"

// cwNamespace prefixes CloudWatch's error shape ids.
const cwNamespace = "com.amazonaws.cloudwatch#"

// rpcHandler is one RPC v2 CBOR action; it runs with c.mu held.
type rpcHandler func(c *Cloud, in cbor.Map) (cbor.Map, *rpcError)

// rpcError is an error answer: the error's shape, its query code (the
// x-amzn-query-error header) and HTTP status.
type rpcError struct {
	Status  int
	Shape   string // e.g. ResourceNotFound
	Code    string // query code, e.g. ResourceNotFound; default Shape
	Message string
}

func cwErr(status int, shape, code, format string, args ...any) *rpcError {
	return &rpcError{Status: status, Shape: shape, Code: code, Message: fmt.Sprintf(format, args...)}
}

// The errors CloudWatch's model gives these actions, and the common ones
// it answers invalid input with.
func cwMissing(name string) *rpcError {
	return cwErr(400, "MissingRequiredParameterException", "MissingParameter", "The parameter %s is required.", name)
}

func cwInvalid(format string, args ...any) *rpcError {
	return cwErr(400, "InvalidParameterValueException", "InvalidParameterValue", format, args...)
}

// alarm is a metric alarm.
type alarm struct {
	name, description                       string
	actionsEnabled                          bool
	okActions, alarmActions, insufficient   []string
	metricName, namespace, statistic, unit  string
	dimensions                              [][2]string
	period, evaluationPeriods, datapoints   int64
	threshold                               float64
	comparison, treatMissing                string
	state, reason, reasonData               string
	configUpdated, stateUpdated, transition time.Time
}

// maxAlarms bounds the alarms of the account, as the quota does
// (LimitExceeded beyond it).
const maxAlarms = 10_000

// serveRPC answers an RPC v2 CBOR request. No input may crash it.
func (c *Cloud) serveRPC(w http.ResponseWriter, r *http.Request) {
	rest, _ := strings.CutPrefix(r.URL.Path, "/service/")
	svc, op, ok := strings.Cut(rest, "/operation/")
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("api handler panicked", "service", svc, "action", op, "panic", v, "stack", string(debug.Stack()))
			writeRPCError(w, &rpcError{Status: 500, Shape: "InternalServiceFault", Code: "InternalServiceError", Message: "internal error"})
		}
	}()
	if r.Method != http.MethodPost {
		writeRPCError(w, cwErr(405, "UnknownOperationException", "", "RPC v2 requests are POSTs"))
		return
	}
	if !strings.EqualFold(r.Header.Get("Smithy-Protocol"), "rpc-v2-cbor") {
		writeRPCError(w, cwErr(400, "ValidationError", "", "missing the smithy-protocol: rpc-v2-cbor header"))
		return
	}
	h, found := rpcActions[svc][op]
	if !ok || !found {
		writeRPCError(w, cwErr(404, "UnknownOperationException", "", "the operation %s of service %s is not served", op, svc))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeRPCError(w, cwErr(400, "SerializationException", "", "read body: %v", err))
		return
	}
	in := cbor.Map{}
	if len(body) > 0 {
		v, err := cbor.Decode(body)
		m, isMap := v.(cbor.Map)
		if err != nil || !isMap {
			writeRPCError(w, cwErr(400, "SerializationException", "", "the body is not a CBOR map"))
			return
		}
		in = m
	}
	c.actionCalls.add("monitoring:" + op)
	if _, key := parseCredential(r.Header.Get("Authorization")); key != "" {
		c.mu.Lock()
		c.accessKeys[key]++
		c.mu.Unlock()
	}
	c.mu.Lock()
	out, rerr := h(c, in)
	c.mu.Unlock()
	if rerr != nil {
		c.log.Debug("api call failed", "service", svc, "action", op, "code", rerr.Shape)
		writeRPCError(w, rerr)
		return
	}
	c.log.Debug("api call", "service", svc, "action", op)
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("Content-Type", "application/cbor")
	w.Header().Set("X-Amzn-RequestId", newUUID())
	w.Write(cbor.Encode(out))
}

func writeRPCError(w http.ResponseWriter, e *rpcError) {
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("Content-Type", "application/cbor")
	w.Header().Set("X-Amzn-RequestId", newUUID())
	w.Header().Set("X-Amzn-Query-Error", e.queryError())
	w.WriteHeader(e.Status)
	w.Write(cbor.Encode(cbor.Map{"__type": cbor.String(cwNamespace + e.Shape), "message": cbor.String(e.Message)}))
}

// queryError is the x-amzn-query-error header of e: the query protocol's
// code and who is at fault, "ResourceNotFound;Sender".
func (e *rpcError) queryError() string {
	code := e.Code
	if code == "" {
		code = e.Shape
	}
	if e.Status >= 500 {
		return code + ";Receiver"
	}
	return code + ";Sender"
}

// Reading a decoded input.

func cborStr(in cbor.Map, k string) (string, bool) {
	s, ok := in[k].(cbor.String)
	return string(s), ok
}

func cborStrings(in cbor.Map, k string) ([]string, *rpcError) {
	v, ok := in[k]
	if !ok {
		return nil, nil
	}
	l, ok := v.(cbor.List)
	if !ok {
		return nil, cwInvalid("%s must be a list of strings", k)
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, ok := e.(cbor.String)
		if !ok {
			return nil, cwInvalid("%s must be a list of strings", k)
		}
		out = append(out, string(s))
	}
	return out, nil
}

func cborInt(in cbor.Map, k string) (int64, bool, *rpcError) {
	switch v := in[k].(type) {
	case nil:
		return 0, false, nil
	case cbor.Uint:
		if v > math.MaxInt32 {
			return 0, true, cwInvalid("%s is out of range", k)
		}
		return int64(v), true, nil
	case cbor.NegInt:
		return -int64(v), true, nil
	}
	return 0, true, cwInvalid("%s must be an integer", k)
}

func cborFloat(in cbor.Map, k string) (float64, bool) {
	switch v := in[k].(type) {
	case cbor.Float64:
		return float64(v), true
	case cbor.Float32:
		return float64(v), true
	case cbor.Uint:
		return float64(v), true
	case cbor.NegInt:
		return -float64(v), true
	}
	return 0, false
}

func cborList(ss []string) cbor.List {
	l := cbor.List{}
	for _, s := range ss {
		l = append(l, cbor.String(s))
	}
	return l
}

func cborTime(t time.Time) cbor.Value {
	return &cbor.Tag{ID: 1, Value: cbor.Float64(float64(t.UnixMilli()) / 1000)}
}

var (
	cwStates      = []string{"OK", "ALARM", "INSUFFICIENT_DATA"}
	cwComparisons = []string{"GreaterThanOrEqualToThreshold", "GreaterThanThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold",
		"LessThanLowerOrGreaterThanUpperThreshold", "LessThanLowerThreshold", "GreaterThanUpperThreshold"}
	cwStatistics = []string{"SampleCount", "Average", "Sum", "Minimum", "Maximum"}
)

func oneOf(v string, valid []string) bool {
	for _, s := range valid {
		if v == s {
			return true
		}
	}
	return false
}

// putMetricAlarm creates or updates a metric alarm. A new alarm is in
// INSUFFICIENT_DATA, as CloudWatch's are until their metric is evaluated;
// an update keeps the alarm's state.
func (c *Cloud) putMetricAlarm(in cbor.Map) (cbor.Map, *rpcError) {
	name, _ := cborStr(in, "AlarmName")
	if name == "" {
		return nil, cwMissing("AlarmName")
	}
	if len(name) > 255 {
		return nil, cwInvalid("AlarmName must be at most 255 characters")
	}
	a := c.alarms[name]
	if a == nil {
		if len(c.alarms) >= maxAlarms {
			return nil, cwErr(400, "LimitExceededFault", "LimitExceeded", "The maximum number of alarms (%d) has been reached.", maxAlarms)
		}
		a = &alarm{name: name, state: "INSUFFICIENT_DATA", reason: "Unchecked: Initial alarm creation", stateUpdated: c.now(), transition: c.now()}
	}
	next := *a
	next.description, _ = cborStr(in, "AlarmDescription")
	next.actionsEnabled = true
	if b, ok := in["ActionsEnabled"].(cbor.Bool); ok {
		next.actionsEnabled = bool(b)
	}
	var e *rpcError
	if next.okActions, e = cborStrings(in, "OKActions"); e != nil {
		return nil, e
	}
	if next.alarmActions, e = cborStrings(in, "AlarmActions"); e != nil {
		return nil, e
	}
	if next.insufficient, e = cborStrings(in, "InsufficientDataActions"); e != nil {
		return nil, e
	}
	next.metricName, _ = cborStr(in, "MetricName")
	next.namespace, _ = cborStr(in, "Namespace")
	next.statistic, _ = cborStr(in, "Statistic")
	next.unit, _ = cborStr(in, "Unit")
	if next.statistic != "" && !oneOf(next.statistic, cwStatistics) {
		return nil, cwInvalid("Statistic %q is not one of %s", next.statistic, strings.Join(cwStatistics, ", "))
	}
	next.dimensions = nil
	if l, ok := in["Dimensions"].(cbor.List); ok {
		for _, d := range l {
			m, ok := d.(cbor.Map)
			if !ok {
				return nil, cwInvalid("Dimensions must be a list of {Name, Value}")
			}
			n, _ := cborStr(m, "Name")
			v, _ := cborStr(m, "Value")
			next.dimensions = append(next.dimensions, [2]string{n, v})
		}
	}
	var set bool
	if next.period, set, e = cborInt(in, "Period"); e != nil {
		return nil, e
	} else if set && next.period < 1 {
		return nil, cwInvalid("Period must be at least 1")
	}
	if next.evaluationPeriods, set, e = cborInt(in, "EvaluationPeriods"); e != nil {
		return nil, e
	} else if set && next.evaluationPeriods < 1 {
		return nil, cwInvalid("EvaluationPeriods must be at least 1")
	}
	if next.datapoints, _, e = cborInt(in, "DatapointsToAlarm"); e != nil {
		return nil, e
	}
	next.threshold, _ = cborFloat(in, "Threshold")
	next.comparison, _ = cborStr(in, "ComparisonOperator")
	if next.comparison != "" && !oneOf(next.comparison, cwComparisons) {
		return nil, cwInvalid("ComparisonOperator %q is not one of %s", next.comparison, strings.Join(cwComparisons, ", "))
	}
	next.treatMissing, _ = cborStr(in, "TreatMissingData")
	next.configUpdated = c.now()
	if c.alarms == nil {
		c.alarms = map[string]*alarm{}
	}
	c.alarms[name] = &next
	return cbor.Map{}, nil
}

// describeAlarms lists metric alarms by names, a name prefix or a state,
// sorted by name, MaxRecords (1 to 100, default 50) at a time.
func (c *Cloud) describeAlarms(in cbor.Map) (cbor.Map, *rpcError) {
	names, e := cborStrings(in, "AlarmNames")
	if e != nil {
		return nil, e
	}
	if len(names) > 100 {
		return nil, cwInvalid("AlarmNames may list at most 100 names")
	}
	prefix, hasPrefix := cborStr(in, "AlarmNamePrefix")
	if hasPrefix && len(names) > 0 {
		return nil, cwErr(400, "InvalidParameterCombinationException", "InvalidParameterCombination", "AlarmNamePrefix and AlarmNames cannot be specified together.")
	}
	state, hasState := cborStr(in, "StateValue")
	if hasState && !oneOf(state, cwStates) {
		return nil, cwInvalid("StateValue %q is not one of %s", state, strings.Join(cwStates, ", "))
	}
	types, e := cborStrings(in, "AlarmTypes")
	if e != nil {
		return nil, e
	}
	metric := len(types) == 0
	for _, t := range types {
		switch t {
		case "MetricAlarm":
			metric = true
		case "CompositeAlarm":
		default:
			return nil, cwInvalid("AlarmTypes %q is not one of CompositeAlarm, MetricAlarm", t)
		}
	}
	limit, set, e := cborInt(in, "MaxRecords")
	if e != nil {
		return nil, e
	}
	if !set {
		limit = 50
	}
	if limit < 1 || limit > 100 {
		return nil, cwInvalid("MaxRecords must be 1 to 100")
	}
	var picked []*alarm
	if metric {
		for _, a := range c.alarms {
			switch {
			case len(names) > 0 && !oneOf(a.name, names):
			case hasPrefix && !strings.HasPrefix(a.name, prefix):
			case hasState && a.state != state:
			default:
				picked = append(picked, a)
			}
		}
	}
	sort.Slice(picked, func(i, j int) bool { return picked[i].name < picked[j].name })
	start := 0
	if tok, ok := cborStr(in, "NextToken"); ok {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(raw), "alarms:"))
		if err != nil || err2 != nil || !strings.HasPrefix(string(raw), "alarms:") || n < 0 || n > len(picked) {
			return nil, cwErr(400, "InvalidNextToken", "InvalidNextToken", "The service returned an invalid next token: %s", tok)
		}
		start = n
	}
	end := min(start+int(limit), len(picked))
	list := cbor.List{}
	for _, a := range picked[start:end] {
		list = append(list, a.cbor(c.cfg.Region))
	}
	out := cbor.Map{"MetricAlarms": list, "CompositeAlarms": cbor.List{}}
	if end < len(picked) {
		out["NextToken"] = cbor.String(base64.RawURLEncoding.EncodeToString([]byte("alarms:" + strconv.Itoa(end))))
	}
	return out, nil
}

// setAlarmState sets an alarm's state until its next evaluation (which
// the local cloud never makes: it stays).
func (c *Cloud) setAlarmState(in cbor.Map) (cbor.Map, *rpcError) {
	name, _ := cborStr(in, "AlarmName")
	if name == "" {
		return nil, cwMissing("AlarmName")
	}
	state, ok := cborStr(in, "StateValue")
	if !ok {
		return nil, cwMissing("StateValue")
	}
	if !oneOf(state, cwStates) {
		return nil, cwInvalid("StateValue %q is not one of %s", state, strings.Join(cwStates, ", "))
	}
	reason, ok := cborStr(in, "StateReason")
	if !ok {
		return nil, cwMissing("StateReason")
	}
	if len(reason) > 1023 {
		return nil, cwInvalid("StateReason must be at most 1023 characters")
	}
	data, hasData := cborStr(in, "StateReasonData")
	if hasData && !json.Valid([]byte(data)) {
		return nil, cwErr(400, "InvalidFormatFault", "InvalidFormat", "StateReasonData is not valid JSON")
	}
	a := c.alarms[name]
	if a == nil {
		return nil, cwErr(404, "ResourceNotFound", "ResourceNotFound", "Alarm %s not found", name)
	}
	if a.state != state {
		a.transition = c.now()
	}
	a.state, a.reason, a.reasonData, a.stateUpdated = state, reason, data, c.now()
	return cbor.Map{}, nil
}

// cbor is the alarm as DescribeAlarms' MetricAlarm shape.
func (a *alarm) cbor(region string) cbor.Map {
	m := cbor.Map{
		"AlarmName":                          cbor.String(a.name),
		"AlarmArn":                           cbor.String(fmt.Sprintf("arn:aws:cloudwatch:%s:%s:alarm:%s", region, accountID, a.name)),
		"AlarmConfigurationUpdatedTimestamp": cborTime(a.configUpdated),
		"ActionsEnabled":                     cbor.Bool(a.actionsEnabled),
		"OKActions":                          cborList(a.okActions),
		"AlarmActions":                       cborList(a.alarmActions),
		"InsufficientDataActions":            cborList(a.insufficient),
		"StateValue":                         cbor.String(a.state),
		"StateReason":                        cbor.String(a.reason),
		"StateUpdatedTimestamp":              cborTime(a.stateUpdated),
		"StateTransitionedTimestamp":         cborTime(a.transition),
		"Threshold":                          cbor.Float64(a.threshold),
	}
	opt := func(k, v string) {
		if v != "" {
			m[k] = cbor.String(v)
		}
	}
	opt("AlarmDescription", a.description)
	opt("StateReasonData", a.reasonData)
	opt("MetricName", a.metricName)
	opt("Namespace", a.namespace)
	opt("Statistic", a.statistic)
	opt("Unit", a.unit)
	opt("ComparisonOperator", a.comparison)
	opt("TreatMissingData", a.treatMissing)
	dims := cbor.List{}
	for _, d := range a.dimensions {
		dims = append(dims, cbor.Map{"Name": cbor.String(d[0]), "Value": cbor.String(d[1])})
	}
	m["Dimensions"] = dims
	for k, v := range map[string]int64{"Period": a.period, "EvaluationPeriods": a.evaluationPeriods, "DatapointsToAlarm": a.datapoints} {
		if v > 0 {
			m[k] = cbor.Uint(v)
		}
	}
	return m
}

// serveJSON answers CloudWatch's JSON protocol (awsJson1_0: POST with
// X-Amz-Target: GraniteServiceVersion20100801.{Operation}), which AWS CLI
// versions without RPC v2 CBOR speak. The same handlers answer: the JSON
// body is read into the CBOR values they take, and their answer written
// back as JSON (timestamps as epoch seconds).
func (c *Cloud) serveJSON(w http.ResponseWriter, r *http.Request, target string) {
	svc, op, _ := strings.Cut(target, ".")
	writeErr := func(e *rpcError) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amzn-Query-Error", e.queryError())
		w.WriteHeader(e.Status)
		json.NewEncoder(w).Encode(map[string]string{"__type": cwNamespace + e.Shape, "message": e.Message})
	}
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("api handler panicked", "service", svc, "action", op, "panic", v, "stack", string(debug.Stack()))
			writeErr(&rpcError{Status: 500, Shape: "InternalServiceFault", Code: "InternalServiceError", Message: "internal error"})
		}
	}()
	h, ok := rpcActions[svc][op]
	if !ok {
		writeErr(cwErr(400, "UnknownOperationException", "", "the operation %s is not served", target))
		return
	}
	var body any
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil && err != io.EOF {
		writeErr(cwErr(400, "SerializationException", "", "the body is not JSON: %v", err))
		return
	}
	in, ok := jsonToCBOR(body).(cbor.Map)
	if !ok {
		in = cbor.Map{}
	}
	c.actionCalls.add("monitoring:" + op)
	c.mu.Lock()
	out, rerr := h(c, in)
	c.mu.Unlock()
	if rerr != nil {
		writeErr(rerr)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-RequestId", newUUID())
	json.NewEncoder(w).Encode(cborToJSON(out))
}

func jsonToCBOR(v any) cbor.Value {
	switch x := v.(type) {
	case map[string]any:
		m := cbor.Map{}
		for k, e := range x {
			m[k] = jsonToCBOR(e)
		}
		return m
	case []any:
		l := cbor.List{}
		for _, e := range x {
			l = append(l, jsonToCBOR(e))
		}
		return l
	case string:
		return cbor.String(x)
	case bool:
		return cbor.Bool(x)
	case json.Number:
		if n, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return cbor.Uint(n)
		}
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil && n < 0 {
			return cbor.NegInt(uint64(-n))
		}
		f, _ := x.Float64()
		return cbor.Float64(f)
	}
	return &cbor.Nil{}
}

func cborToJSON(v cbor.Value) any {
	switch x := v.(type) {
	case cbor.Map:
		m := map[string]any{}
		for k, e := range x {
			m[k] = cborToJSON(e)
		}
		return m
	case cbor.List:
		l := []any{}
		for _, e := range x {
			l = append(l, cborToJSON(e))
		}
		return l
	case cbor.String:
		return string(x)
	case cbor.Bool:
		return bool(x)
	case cbor.Uint:
		return uint64(x)
	case cbor.NegInt:
		return -int64(x)
	case cbor.Float64:
		return float64(x)
	case cbor.Float32:
		return float64(x)
	case *cbor.Tag:
		return cborToJSON(x.Value) // tag 1: epoch seconds
	}
	return nil
}
