package endpoint

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/corelink"
)

// defaultLifetime is the registration lifetime when the device sends no lt
// (LwM2M: 86400 s).
const defaultLifetime = 86400

// maxEndpointLen bounds endpoint names; a Uri-Query option cannot be longer
// than 255 bytes anyway, this only keeps garbage out of the store.
const maxEndpointLen = 255

// regParams is what a Register or Update request carries, parsed and
// validated. For Register the defaults are filled in; for Update the Has*
// fields tell which parameters were present.
type regParams struct {
	Endpoint    string
	Lifetime    uint32
	HasLifetime bool
	Version     string
	Binding     string
	HasBinding  bool
	SMS         string
	HasSMS      bool
	Queue       bool // Q parameter (1.1+) or Q in the binding (1.0)
	Links       *linkInfo
}

// linkInfo is the interpretation of a registration's link-format payload.
type linkInfo struct {
	RootPath       string // "/" unless the device announced an alternate path
	HasRoot        bool   // a </..>;rt="oma.lwm2m" link was present
	ContentFormats []lwm2m.ContentFormat
	Objects        []lwm2m.LinkedObject
}

// parseRegister parses the Uri-Query values and payload of a Register
// request and applies the LwM2M defaults. It never panics on any input; an
// error's text is the diagnostic sent back with 4.00.
func parseRegister(query []string, payload []byte) (regParams, error) {
	p, err := parseRegQuery(query, true)
	if err != nil {
		return p, err
	}
	if p.Endpoint == "" {
		return p, errors.New("missing endpoint name (ep)")
	}
	if !p.HasLifetime {
		p.Lifetime = defaultLifetime
	}
	if p.Version == "" {
		p.Version = "1.0"
	}
	if !p.HasBinding {
		p.Binding = "U"
	}
	li, err := parseLinks(payload)
	if err != nil {
		return p, err
	}
	p.Links = &li
	return p, nil
}

// parseUpdate parses an Update request. Every parameter is optional; an
// empty payload leaves the objects as they are (Links nil).
func parseUpdate(query []string, payload []byte) (regParams, error) {
	p, err := parseRegQuery(query, false)
	if err != nil {
		return p, err
	}
	if len(payload) > 0 {
		li, err := parseLinks(payload)
		if err != nil {
			return p, err
		}
		p.Links = &li
	}
	return p, nil
}

func parseRegQuery(query []string, register bool) (regParams, error) {
	var p regParams
	seen := 0 // bit set of parameters already seen, to reject duplicates
	const (
		seenEp = 1 << iota
		seenLt
		seenVer
		seenB
		seenSMS
	)
	dup := func(bit int, k string) error {
		if seen&bit != 0 {
			return fmt.Errorf("duplicate query parameter %q", k)
		}
		seen |= bit
		return nil
	}
	for _, kv := range query {
		if kv == "" {
			continue // an empty Uri-Query option carries nothing
		}
		k, v, hasValue := strings.Cut(kv, "=")
		if k == "" {
			return p, fmt.Errorf("malformed query parameter %q", truncate(kv))
		}
		switch k {
		case "ep":
			if !register {
				continue // not updatable; tolerated
			}
			if err := dup(seenEp, k); err != nil {
				return p, err
			}
			if v == "" || len(v) > maxEndpointLen || !utf8.ValidString(v) || hasControl(v) {
				return p, fmt.Errorf("invalid endpoint name %q", truncate(v))
			}
			p.Endpoint = v
		case "lt":
			if err := dup(seenLt, k); err != nil {
				return p, err
			}
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return p, fmt.Errorf("invalid lifetime lt=%q: want a positive integer", truncate(v))
			}
			p.Lifetime, p.HasLifetime = uint32(n), true
		case "lwm2m":
			if !register {
				continue
			}
			if err := dup(seenVer, k); err != nil {
				return p, err
			}
			switch v {
			case "1.0", "1.1", "1.2":
				p.Version = v
			default:
				return p, fmt.Errorf("unsupported LwM2M version lwm2m=%q: this server speaks 1.0, 1.1 and 1.2", truncate(v))
			}
		case "b":
			if err := dup(seenB, k); err != nil {
				return p, err
			}
			if err := checkBinding(v); err != nil {
				return p, err
			}
			p.Binding, p.HasBinding = v, true
			if strings.IndexByte(v, 'Q') >= 0 {
				p.Queue = true
			}
		case "sms":
			if err := dup(seenSMS, k); err != nil {
				return p, err
			}
			p.SMS, p.HasSMS = v, true
		case "Q":
			if hasValue {
				return p, errors.New("queue mode parameter Q takes no value")
			}
			p.Queue = true
		default:
			// LwM2M lets devices send parameters this server does not know
			// (apn, at, ...); they are ignored.
		}
	}
	return p, nil
}

// checkBinding accepts the binding letters of LwM2M 1.0 (U, S, Q) and 1.1+
// (U, S, T, N), each at most once.
func checkBinding(b string) error {
	if b == "" {
		return errors.New("empty binding b=")
	}
	var seen [256]bool
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch c {
		case 'U', 'S', 'Q', 'T', 'N':
		default:
			return fmt.Errorf("invalid binding b=%q: letters U, S, Q, T, N allowed", truncate(b))
		}
		if seen[c] {
			return fmt.Errorf("invalid binding b=%q: repeated %q", truncate(b), c)
		}
		seen[c] = true
	}
	return nil
}

// parseLinks interprets a registration payload: an optional root link
// (rt="oma.lwm2m", possibly an alternate path) and object / object instance
// links below it.
func parseLinks(payload []byte) (linkInfo, error) {
	li := linkInfo{RootPath: "/"}
	links, err := corelink.Parse(payload)
	if err != nil {
		return li, fmt.Errorf("malformed link payload: %w", err)
	}
	rootIdx := -1
	for i, l := range links {
		rt, ok := l.Param("rt")
		if !ok || !hasWord(rt, "oma.lwm2m") {
			continue
		}
		if rootIdx >= 0 {
			return li, errors.New("more than one link with rt=\"oma.lwm2m\"")
		}
		rootIdx = i
		root, err := cleanRoot(l.Target)
		if err != nil {
			return li, err
		}
		li.RootPath, li.HasRoot = root, true
		if ct, ok := l.Param("ct"); ok {
			cfs, err := parseCT(ct)
			if err != nil {
				return li, err
			}
			li.ContentFormats = cfs
		}
	}
	for i, l := range links {
		if i == rootIdx {
			continue
		}
		target := l.Target
		if li.RootPath != "/" {
			rest, ok := strings.CutPrefix(target, li.RootPath)
			if !ok || (rest != "" && rest[0] != '/') {
				return li, fmt.Errorf("link <%s> is outside the LwM2M root path %q", truncate(target), li.RootPath)
			}
			target = rest
		}
		if target == "" || target == "/" {
			// A bare root link without rt (some clients send </>) says nothing.
			continue
		}
		if target[0] != '/' {
			return li, fmt.Errorf("invalid object link <%s>: want an absolute path", truncate(l.Target))
		}
		p, err := lwm2m.ParsePath(target)
		if err != nil || (p.Depth != lwm2m.DepthObject && p.Depth != lwm2m.DepthInstance) {
			return li, fmt.Errorf("invalid object link <%s>: want </object> or </object/instance>", truncate(l.Target))
		}
		obj := lwm2m.LinkedObject{Path: p}
		if ver, ok := l.Param("ver"); ok {
			if !validVersion(ver) {
				return li, fmt.Errorf("invalid object version ver=%q on <%s>", truncate(ver), truncate(l.Target))
			}
			obj.Version = ver
		}
		if li.Objects == nil {
			li.Objects = make([]lwm2m.LinkedObject, 0, len(links)-i)
		}
		li.Objects = append(li.Objects, obj)
	}
	return li, nil
}

// cleanRoot validates the target of the root link and normalises it to
// "/" or "/seg[/seg...]" without a trailing slash.
func cleanRoot(target string) (string, error) {
	if target == "" || target[0] != '/' {
		return "", fmt.Errorf("invalid LwM2M root path <%s>: want an absolute path", truncate(target))
	}
	t := strings.TrimRight(target, "/")
	if t == "" {
		return "/", nil
	}
	for _, seg := range strings.Split(t[1:], "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "?#") {
			return "", fmt.Errorf("invalid LwM2M root path <%s>", truncate(target))
		}
	}
	return t, nil
}

// parseCT reads ct= of the root link: one number or a space-separated list.
func parseCT(s string) ([]lwm2m.ContentFormat, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, errors.New("empty ct= on the root link")
	}
	out := make([]lwm2m.ContentFormat, 0, len(fields))
	for _, f := range fields {
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("invalid content format %q in ct=", truncate(f))
		}
		out = append(out, lwm2m.ContentFormat(n))
	}
	return out, nil
}

// validVersion accepts "major.minor" with decimal digits, as ver= uses.
func validVersion(v string) bool {
	maj, minor, ok := strings.Cut(v, ".")
	return ok && isDigits(maj) && isDigits(minor) && len(v) <= 16
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func hasWord(list, w string) bool {
	for list != "" {
		i := strings.IndexFunc(list, unicode.IsSpace)
		if i < 0 {
			return list == w
		}
		if list[:i] == w {
			return true
		}
		_, size := utf8.DecodeRuneInString(list[i:])
		list = list[i+size:]
	}
	return false
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// truncate keeps device-supplied text in diagnostics and logs short.
func truncate(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
