package localcloud

import (
	"strings"
)

// EC2 filters: Filter.N.Name and Filter.N.Value.M, with EC2's wildcards.

// filter is an EC2 filter: Name and values, with * and ? wildcards.
type filter struct {
	name   string
	values []string
}

func ec2Filters(p params) ([]filter, *apiError) {
	var fs []filter
	for _, f := range p.structs("Filter") {
		name := f.str("Name")
		if name == "" {
			return nil, errf("InvalidParameterValue", "a filter must have a Name")
		}
		fs = append(fs, filter{name: name, values: f.list("Value")})
	}
	return fs, nil
}

// match reports whether any of the filter's values matches v.
func (f filter) match(v string, present bool) bool {
	if !present {
		return false
	}
	for _, pat := range f.values {
		if wildcard(pat, v) {
			return true
		}
	}
	return false
}

// wildcard matches s against an EC2 filter pattern: * any run, ? one
// character, \ escapes.
func wildcard(pat, s string) bool {
	pr, sr := []rune(pat), []rune(s)
	// Iterative matcher with backtracking on the last star.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(sr) {
		if pi < len(pr) && pr[pi] == '\\' && pi+1 < len(pr) && pr[pi+1] == sr[si] {
			pi += 2
			si++
			continue
		}
		if pi < len(pr) && (pr[pi] == '?' || (pr[pi] == sr[si] && pr[pi] != '*' && pr[pi] != '\\')) {
			pi++
			si++
			continue
		}
		if pi < len(pr) && pr[pi] == '*' {
			star, mark = pi, si
			pi++
			continue
		}
		if star >= 0 {
			pi = star + 1
			mark++
			si = mark
			continue
		}
		return false
	}
	for pi < len(pr) && pr[pi] == '*' {
		pi++
	}
	return pi == len(pr)
}

// tagFilter handles tag:KEY and tag-key, common to every EC2 resource.
func tagFilter(f filter, tags map[string]string) (matched, handled bool) {
	if k, ok := strings.CutPrefix(f.name, "tag:"); ok {
		v, present := tags[k]
		return f.match(v, present), true
	}
	if f.name == "tag-key" {
		for k := range tags {
			if f.match(k, true) {
				return true, true
			}
		}
		return false, true
	}
	return false, false
}
