package hypermedia

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Tree converts a representation into a generic ordered tree, the common
// form that response optimisation (X-Fields, X-Links) and every wire format
// work on: Object for JSON objects (members in order), []any for arrays,
// and json.Number, string, bool or nil for scalars. The conversion goes
// through the value's JSON form, so JSON tags name the fields everywhere.
func Tree(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("hypermedia: tree: %w", err)
	}
	return ParseTree(bytes.NewReader(b))
}

// ParseTree reads one JSON value into an ordered tree.
func ParseTree(r io.Reader) (any, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	v, err := parseValue(dec)
	if err != nil {
		return nil, fmt.Errorf("hypermedia: parse tree: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("hypermedia: parse tree: trailing data after the JSON value")
	}
	return v, nil
}

// maxDepth bounds nesting so that hostile bodies cannot exhaust the stack.
const maxDepth = 64

func parseValue(dec *json.Decoder) (any, error) { return parseAt(dec, 0) }

func parseAt(dec *json.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nesting deeper than %d", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := Object{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := parseAt(dec, depth+1)
				if err != nil {
					return nil, err
				}
				obj = append(obj, Field{Name: k, Value: v})
			}
			_, err := dec.Token() // '}'
			return obj, err
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := parseAt(dec, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := dec.Token() // ']'
			return arr, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return t, nil
	}
}

// headerSet splits a comma-separated header into a set; nil when absent.
func headerSet(h string) map[string]bool {
	if strings.TrimSpace(h) == "" {
		return nil
	}
	set := map[string]bool{}
	for _, p := range strings.Split(h, ",") {
		if p = strings.TrimSpace(p); p != "" {
			set[strings.ToLower(p)] = true
		}
	}
	return set
}

// Select applies the response optimisation headers to a tree:
// xLinks keeps only links with those rels, in every Links member at every
// level; xFields keeps only those fields of the representation — of each
// item for lists — while Links, PageInfo and Items stay (Links being
// governed by X-Links). Names are matched case-insensitively; empty
// headers change nothing.
func Select(tree any, xFields, xLinks string) any {
	fields, rels := headerSet(xFields), headerSet(xLinks)
	if rels != nil {
		tree = filterLinks(tree, rels)
	}
	if fields == nil {
		return tree
	}
	obj, ok := tree.(Object)
	if !ok {
		return tree
	}
	if items, isList := obj.Get("Items"); isList {
		if arr, ok := items.([]any); ok {
			for i, it := range arr {
				if o, ok := it.(Object); ok {
					arr[i] = keepFields(o, fields)
				}
			}
		}
		return obj
	}
	return keepFields(obj, fields)
}

// alwaysKept are the members X-Fields never removes.
var alwaysKept = map[string]bool{"links": true, "pageinfo": true, "items": true}

func keepFields(o Object, fields map[string]bool) Object {
	out := Object{}
	for _, f := range o {
		if fields[strings.ToLower(f.Name)] || alwaysKept[strings.ToLower(f.Name)] {
			out = append(out, f)
		}
	}
	return out
}

func filterLinks(v any, rels map[string]bool) any {
	switch x := v.(type) {
	case Object:
		for i, f := range x {
			if f.Name == "Links" {
				if arr, ok := f.Value.([]any); ok {
					kept := []any{}
					for _, l := range arr {
						if lo, ok := l.(Object); ok {
							if rel, _ := lo.Get("rel"); rels[strings.ToLower(fmt.Sprint(rel))] {
								kept = append(kept, lo)
							}
						}
					}
					x[i].Value = kept
					continue
				}
			}
			x[i].Value = filterLinks(f.Value, rels)
		}
		return x
	case []any:
		for i := range x {
			x[i] = filterLinks(x[i], rels)
		}
		return x
	}
	return v
}
