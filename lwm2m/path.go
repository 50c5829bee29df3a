// Package lwm2m holds the protocol-level data model shared by the device side:
// paths, typed values, registrations, attributes and errors. It has no
// knowledge of transports, HTTP or storage.
package lwm2m

import (
	"fmt"
	"strconv"
	"strings"
)

// Path addresses a node of the LwM2M data tree: /o, /o/i, /o/i/r or /o/i/r/ri.
// Depth says how many of the four IDs are set (0 is the root "/").
// Path is comparable and may be used as a map key.
type Path struct {
	Object, Instance, Resource, ResourceInstance uint16
	Depth                                        uint8
}

// Depth values of a Path.
const (
	DepthRoot             = 0
	DepthObject           = 1
	DepthInstance         = 2
	DepthResource         = 3
	DepthResourceInstance = 4
)

// ObjectPath returns /o.
func ObjectPath(o uint16) Path { return Path{Object: o, Depth: DepthObject} }

// InstancePath returns /o/i.
func InstancePath(o, i uint16) Path { return Path{Object: o, Instance: i, Depth: DepthInstance} }

// ResourcePath returns /o/i/r.
func ResourcePath(o, i, r uint16) Path {
	return Path{Object: o, Instance: i, Resource: r, Depth: DepthResource}
}

// ResourceInstancePath returns /o/i/r/ri.
func ResourceInstancePath(o, i, r, ri uint16) Path {
	return Path{Object: o, Instance: i, Resource: r, ResourceInstance: ri, Depth: DepthResourceInstance}
}

// ParsePath parses "/3/0/1", "3/0/1", "/3" or "/". IDs must be 0..65535;
// 65535 is reserved by LwM2M and rejected.
func ParsePath(s string) (Path, error) {
	s = strings.TrimPrefix(s, "/")
	s = strings.TrimSuffix(s, "/")
	if s == "" {
		return Path{}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) > 4 {
		return Path{}, fmt.Errorf("lwm2m: parse path %q: more than 4 segments", s)
	}
	var ids [4]uint16
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 65535 || (len(p) > 1 && p[0] == '0') {
			return Path{}, fmt.Errorf("lwm2m: parse path %q: invalid id %q", s, p)
		}
		ids[i] = uint16(n)
	}
	return Path{Object: ids[0], Instance: ids[1], Resource: ids[2], ResourceInstance: ids[3], Depth: uint8(len(parts))}, nil
}

// String renders the path with a leading slash ("/" for the root).
func (p Path) String() string {
	if p.Depth == 0 {
		return "/"
	}
	ids := [4]uint16{p.Object, p.Instance, p.Resource, p.ResourceInstance}
	var b strings.Builder
	for i := 0; i < int(p.Depth); i++ {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(int(ids[i])))
	}
	return b.String()
}

// Segments returns the set IDs as strings, for building CoAP Uri-Path options.
func (p Path) Segments() []string {
	ids := [4]uint16{p.Object, p.Instance, p.Resource, p.ResourceInstance}
	out := make([]string, p.Depth)
	for i := range out {
		out[i] = strconv.Itoa(int(ids[i]))
	}
	return out
}

// Parent returns the path one level up (the root stays the root).
func (p Path) Parent() Path {
	if p.Depth == 0 {
		return p
	}
	q := p
	q.Depth--
	switch q.Depth {
	case DepthRoot:
		q.Object = 0
		fallthrough
	case DepthObject:
		q.Instance = 0
		fallthrough
	case DepthInstance:
		q.Resource = 0
		fallthrough
	case DepthResource:
		q.ResourceInstance = 0
	}
	return q
}

// Contains reports whether q is p or lies below p.
func (p Path) Contains(q Path) bool {
	if q.Depth < p.Depth {
		return false
	}
	ids := [4]uint16{p.Object, p.Instance, p.Resource, p.ResourceInstance}
	qids := [4]uint16{q.Object, q.Instance, q.Resource, q.ResourceInstance}
	for i := 0; i < int(p.Depth); i++ {
		if ids[i] != qids[i] {
			return false
		}
	}
	return true
}
