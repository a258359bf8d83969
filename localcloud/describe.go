package localcloud

import (
	"strconv"
)

// The Describe actions share two shapes: a list cut into pages, which each
// service spells its own way, and filters that narrow the list. Each
// handler keeps its own order of checks, so that a request with two faults
// gets the error it always got.

// paging is one API's spelling of paging.
type paging struct {
	limitKey string // the page size in the request: MaxRecords, PageSize, MaxResults
	tokenKey string // where the request says where to start: NextToken, Marker
	nextKey  string // the answer's token for the next page: NextToken, NextMarker, nextToken
	item     string // the element of each listed item: member, or EC2's item
	def      int    // the page size when the request sets none; 0 is the whole list
	// check refuses a page size the API does not take; nil takes any, and
	// a size of 0 or less is then the whole list.
	check func(v int) *apiError
	// badToken is the error for a token that is not ours; nil is
	// InvalidNextToken.
	badToken *apiError
}

// asgPaging is Auto Scaling's MaxRecords and NextToken: def records a page
// unless the request asks for 1 to max.
func asgPaging(def, max int) paging {
	return paging{limitKey: "MaxRecords", tokenKey: "NextToken", nextKey: "NextToken", item: "member", def: def, check: between("MaxRecords", max)}
}

// elbPaging is ELBv2's PageSize and Marker, 400 at most.
var elbPaging = paging{limitKey: "PageSize", tokenKey: "Marker", nextKey: "NextMarker", item: "member", def: 400,
	check: between("PageSize", 400), badToken: validationf("The marker is not valid")}

// ec2Paging is EC2's MaxResults and NextToken: the whole list unless the
// request sets a size.
var ec2Paging = paging{limitKey: "MaxResults", tokenKey: "NextToken", nextKey: "nextToken", item: "item"}

// between refuses a page size outside 1..max with Auto Scaling's and
// ELBv2's ValidationError.
func between(key string, max int) func(v int) *apiError {
	return func(v int) *apiError {
		if v < 1 || v > max {
			return validationf("%s must be between 1 and %d", key, max)
		}
		return nil
	}
}

// limit reads the request's page size.
func (pg paging) limit(p params) (int, *apiError) {
	v, set, e := p.intOpt(pg.limitKey)
	if e != nil || !set {
		return pg.def, e
	}
	if pg.check != nil {
		if e := pg.check(v); e != nil {
			return 0, e
		}
	}
	return v, nil
}

// pageOf cuts items to the page that starts at the request's token and is
// limit long (0 or less: to the end), and returns the token of the next
// page, "" after the last. The token is an offset into the list.
func pageOf[T any](p params, pg paging, limit int, items []T) ([]T, string, *apiError) {
	from, e := pageToken(p.str(pg.tokenKey), len(items))
	if e != nil {
		if pg.badToken != nil {
			return nil, "", pg.badToken
		}
		return nil, "", e
	}
	items = items[from:]
	if limit <= 0 || len(items) <= limit {
		return items, "", nil
	}
	return items[:limit], strconv.Itoa(from + limit), nil
}

// page is limit, then pageOf, for the actions that read both at once.
func page[T any](p params, pg paging, items []T) ([]T, string, *apiError) {
	limit, e := pg.limit(p)
	if e != nil {
		return nil, "", e
	}
	return pageOf(p, pg, limit, items)
}

// writePage writes the page of items the request asks for as the list
// name, each item by write, then the token of the next page.
func writePage[T any](x *xmlw, p params, pg paging, name string, items []T, write func(T)) *apiError {
	items, next, e := page(p, pg, items)
	if e != nil {
		return e
	}
	x.list(name, pg.item, len(items), func(i int) { write(items[i]) })
	x.opt(pg.nextKey, next)
	return nil
}

// pageToken turns a NextToken into an offset.
func pageToken(tok string, n int) (int, *apiError) {
	if tok == "" {
		return 0, nil
	}
	off, err := strconv.Atoi(tok)
	if err != nil || off < 0 || off > n {
		return 0, errf("InvalidNextToken", "the NextToken %q is not valid", tok)
	}
	return off, nil
}

// filterBy returns the items pred accepts; its first error ends the search.
func filterBy[T any](items []T, pred func(T) (bool, *apiError)) ([]T, *apiError) {
	var out []T
	for _, it := range items {
		ok, e := pred(it)
		if e != nil {
			return nil, e
		}
		if ok {
			out = append(out, it)
		}
	}
	return out, nil
}

// matchAll decides one item against EC2 filters: field says whether the
// item matches a filter and whether the action knows its name at all. An
// unknown name is an error even after a filter that did not match.
func matchAll(fs []filter, field func(f filter) (matched, known bool)) (bool, *apiError) {
	ok := true
	for _, f := range fs {
		m, known := field(f)
		if !known {
			return false, errf("InvalidParameterValue", "The filter '%s' is invalid", f.name)
		}
		ok = ok && m
	}
	return ok, nil
}

// asgFilters narrows items by each of Auto Scaling's Filters.member in
// turn; match decides one item against one filter's name and values.
func asgFilters[T any](p params, items []T, match func(it T, name string, values []string) (bool, *apiError)) ([]T, *apiError) {
	for _, f := range p.structs("Filters.member") {
		name, values := f.str("Name"), f.list("Values.member")
		var e *apiError
		items, e = filterBy(items, func(it T) (bool, *apiError) { return match(it, name, values) })
		if e != nil {
			return nil, e
		}
	}
	return items, nil
}

// lookup resolves the ARNs, then the names, that an ELBv2 Describe call
// lists, in the order given; notFound is the error for one it does not
// know (byName tells which kind).
func lookup[T any](byARN map[string]T, arns, names []string, nameOf func(T) string, notFound func(s string, byName bool) *apiError) ([]T, *apiError) {
	var out []T
	for _, a := range arns {
		v, ok := byARN[a]
		if !ok {
			return nil, notFound(a, false)
		}
		out = append(out, v)
	}
	for _, n := range names {
		found := false
		for _, v := range byARN {
			if nameOf(v) == n {
				out, found = append(out, v), true
				break
			}
		}
		if !found {
			return nil, notFound(n, true)
		}
	}
	return out, nil
}
