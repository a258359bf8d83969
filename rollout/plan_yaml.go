package rollout

import (
	"context"
	"fmt"

	"github.com/goccy/go-yaml/ast"
)

// maxPlanNodes bounds the YAML nodes of a plan once its aliases are
// expanded. A plan is a page of YAML: the seed's is under 150 nodes, and
// a fleet's worth of names in replace lists stays under 10 000. Without a
// bound, a few nested anchors (an alias bomb) expand a 700-byte file to
// billions of nodes in the decoder.
const maxPlanNodes = 50_000

// yamlDoc is one parsed plan document with its anchors, read in document
// order, so that an alias resolves to the anchor defined before it, as
// YAML has it.
type yamlDoc struct {
	ctx     context.Context
	anchors map[string]ast.Node
	// steps counts the nodes visited, so that ctx is polled as a walk
	// goes: the budget keeps a walk short, the poll keeps it cancellable.
	steps int
}

// anchorName and aliasName are the names an anchor defines and an alias
// refers to.
func anchorName(a *ast.AnchorNode) string {
	if a.Name == nil || a.Name.GetToken() == nil {
		return ""
	}
	return a.Name.GetToken().Value
}

func aliasName(a *ast.AliasNode) string {
	if a.Value == nil || a.Value.GetToken() == nil {
		return ""
	}
	return a.Value.GetToken().Value
}

// expandedSize counts the nodes of body as the decoder will see them, with
// every alias replaced by its anchor's value, stopping as soon as the
// count passes limit. It reports the alias where the count passed the
// limit (nil when it did not), and ctx's error if ctx ends first. Each
// anchor's size is counted once and reused, so the count itself takes
// time in the size of the text, not of the expansion.
func expandedSize(ctx context.Context, body ast.Node, limit int) (int, *ast.AliasNode, error) {
	sizes := map[string]int{}
	var over *ast.AliasNode
	steps := 0
	var size func(n ast.Node) (int, error)
	size = func(n ast.Node) (int, error) {
		if n == nil {
			return 0, nil
		}
		if steps++; steps%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		sum := func(total int, ns ...ast.Node) (int, error) {
			for _, c := range ns {
				s, err := size(c)
				if err != nil {
					return 0, err
				}
				total = min(total+s, limit+1)
			}
			return total, nil
		}
		switch n := n.(type) {
		case *ast.AliasNode:
			s, ok := sizes[aliasName(n)]
			if !ok {
				return 1, nil // undefined or recursive: the decoder refuses it
			}
			return s, nil
		case *ast.AnchorNode:
			// The anchor is undefined inside its own value: an alias
			// there is recursive, which the decoder refuses.
			s, err := size(n.Value)
			if err != nil {
				return 0, err
			}
			sizes[anchorName(n)] = s
			return min(s+1, limit+1), nil
		case *ast.MappingNode:
			ns := make([]ast.Node, len(n.Values))
			for i, v := range n.Values {
				ns[i] = v
			}
			return sum(1, ns...)
		case *ast.MappingValueNode:
			return sum(1, n.Key, n.Value)
		case *ast.MappingKeyNode:
			return sum(1, n.Value)
		case *ast.SequenceNode:
			return sum(1, n.Values...)
		case *ast.TagNode:
			return sum(1, n.Value)
		case *ast.DocumentNode:
			return sum(1, n.Body)
		}
		return 1, nil
	}
	// Find the first alias that takes the running total over the limit,
	// for the error's line: walk once more, in order, only when over.
	total, err := size(body)
	if err != nil || total <= limit {
		return total, nil, err
	}
	over = firstAliasOver(body, sizes, limit)
	return total, over, nil
}

// firstAliasOver returns the alias, in document order, whose expansion
// makes the running count of nodes pass limit.
func firstAliasOver(body ast.Node, sizes map[string]int, limit int) *ast.AliasNode {
	count := 0
	var found *ast.AliasNode
	ast.Walk(visitFunc(func(n ast.Node) bool {
		if found != nil {
			return false
		}
		count++
		if a, ok := n.(*ast.AliasNode); ok {
			count += sizes[aliasName(a)]
			if count > limit {
				found = a
			}
		}
		return found == nil
	}), body)
	return found
}

// visitFunc adapts a function to ast.Visitor.
type visitFunc func(ast.Node) bool

func (f visitFunc) Visit(n ast.Node) ast.Visitor {
	if f(n) {
		return f
	}
	return nil
}

// expand returns n with every alias replaced by its anchor's value and
// every anchor by its value, sharing the anchored subtrees: what the
// decoder would build, as a tree that a key walk and a nested decode
// (a check's kind) can read without the anchors. docCheck bounded its
// size first. An alias whose anchor is not defined before it stays, and
// the decoder reports it.
func (d *yamlDoc) expand(n ast.Node) ast.Node {
	if d.steps++; d.steps%1024 == 0 && d.ctx.Err() != nil {
		return n
	}
	switch v := n.(type) {
	case *ast.AnchorNode:
		val := d.expand(v.Value)
		d.anchors[anchorName(v)] = val
		return val
	case *ast.AliasNode:
		if target, ok := d.anchors[aliasName(v)]; ok && target != nil {
			return target
		}
		return n
	case *ast.MappingNode:
		c := *v
		c.Values = make([]*ast.MappingValueNode, len(v.Values))
		for i, mv := range v.Values {
			c.Values[i] = d.expand(mv).(*ast.MappingValueNode)
		}
		return &c
	case *ast.MappingValueNode:
		c := *v
		c.Value = d.expand(v.Value)
		return &c
	case *ast.SequenceNode:
		c := *v
		c.Values = make([]ast.Node, len(v.Values))
		for i, sv := range v.Values {
			c.Values[i] = d.expand(sv)
		}
		return &c
	case *ast.TagNode:
		c := *v
		c.Value = d.expand(v.Value)
		return &c
	}
	return n
}

// docCheck refuses what the decoder must not see: more than one document,
// and aliases that expand past maxPlanNodes.
func docCheck(ctx context.Context, docs []*ast.DocumentNode) PlanErrors {
	var bodies []*ast.DocumentNode
	for _, doc := range docs {
		if doc.Body != nil {
			bodies = append(bodies, doc)
		}
	}
	if len(bodies) > 1 {
		return PlanErrors{{Line: lineOf(bodies[1].Body), Msg: fmt.Sprintf("a plan is one YAML document; this file holds %d (a line --- starts another): put everything in one, or the rollouts in separate files", len(bodies))}}
	}
	if len(bodies) == 0 {
		return nil
	}
	total, over, err := expandedSize(ctx, bodies[0].Body, maxPlanNodes)
	if err != nil {
		return PlanErrors{{Msg: fmt.Sprintf("reading the plan stopped: %v", err)}}
	}
	if total > maxPlanNodes {
		pe := &PlanError{Msg: fmt.Sprintf("the aliases expand the plan to more than %d YAML nodes (allowed: at most %d once every alias is replaced by its anchor); a plan needs far fewer, so this is an alias bomb or a mistake", maxPlanNodes, maxPlanNodes)}
		if over != nil {
			pe.Line = lineOf(over)
			pe.Msg = fmt.Sprintf("alias *%s: %s", aliasName(over), pe.Msg)
		}
		return PlanErrors{pe}
	}
	return nil
}

// hasAlias reports whether n's subtree still holds an alias or anchor
// after expand (an alias with no anchor before it): such a value cannot
// be decoded on its own, only by the decoder with the whole document.
func hasAlias(n ast.Node) bool {
	found := false
	ast.Walk(visitFunc(func(n ast.Node) bool {
		switch n.(type) {
		case *ast.AliasNode, *ast.AnchorNode:
			found = true
		}
		return !found
	}), n)
	return found
}
