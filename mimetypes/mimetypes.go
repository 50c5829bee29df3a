// Package mimetypes knows the vendor media types of the REST API, picks the
// response representation from an Accept header, and checks request
// Content-Types.
package mimetypes

import (
	"errors"
	"fmt"
	"mime"
	"sort"
	"strconv"
	"strings"
)

// Format is a wire representation of a resource.
type Format int

// The representations the API can produce.
const (
	JSON Format = iota
	XML
)

// Suffix returns "+json" or "+xml".
func (f Format) Suffix() string {
	if f == XML {
		return "+xml"
	}
	return "+json"
}

// Vendor media-type prefixes.
const (
	Imgtec = "application/vnd.imgtec."
	OMA    = "application/vnd.oma.lwm2m."
)

// Newest is the newest representation version of every vendor type.
const Newest = 1

// Names of the API's resources; Type returns their media type.
const (
	API               = "api"
	OAuthToken        = "oauthtoken"
	AccessKey         = "accesskey"
	AccessKeys        = "accesskeys"
	Client            = "client"
	Clients           = "clients"
	ObjectType        = "objecttype"
	ObjectTypes       = "objecttypes"
	ObjectDefinition  = "objectdefinition"
	ObjectDefinitions = "objectdefinitions"
	Subscription      = "subscription"
	Subscriptions     = "subscriptions"
	Metric            = "metric"
	Metrics           = "metrics"
	Configuration     = "configuration"
	Bootstrap         = "bootstrap"
	Identities        = "identities"
	PSKIdentity       = "pskidentity"
	PSKIdentities     = "pskidentities"
	Certificate       = "certificate"
	Certificates      = "certificates"
	Version           = "version"
	Versions          = "versions"
	Group             = "group"
	Groups            = "groups"
	ResourceCreated   = "resourcecreated"
	ResourcesCreated  = "resourcescreated"
	BadRequest        = "badrequest"
	Notification      = "notification"
	Notifications     = "notifications"
	Error             = "error"
)

// Resource is one entry of the vendor media-type registry: a singular
// name and, for resources that come in lists, a plural one. Lower-cased,
// the names are the media-type names; as written, they are XML element names.
type Resource struct {
	Singular, Plural string
	Prefix           string // Imgtec or OMA
	Versions         []int  // representation versions served; the last is the newest
}

// registry is every vendor type of the API (object instances add their own
// from their definitions). It is a constant table.
var registry = []Resource{
	{"API", "", Imgtec, []int{1}},
	{"OAuthToken", "", Imgtec, []int{1}},
	{"AccessKey", "AccessKeys", Imgtec, []int{1}},
	{"Client", "Clients", Imgtec, []int{1}},
	{"ObjectType", "ObjectTypes", Imgtec, []int{1}},
	{"ObjectDefinition", "ObjectDefinitions", Imgtec, []int{1}},
	{"Subscription", "Subscriptions", OMA, []int{1}},
	{"Metric", "Metrics", Imgtec, []int{1}},
	{"Configuration", "", Imgtec, []int{1}},
	{"Bootstrap", "", Imgtec, []int{1}},
	{"Identities", "", Imgtec, []int{1}},
	{"PSKIdentity", "PSKIdentities", Imgtec, []int{1}},
	{"Certificate", "Certificates", Imgtec, []int{1}},
	{"Version", "Versions", Imgtec, []int{1}},
	{"Group", "Groups", Imgtec, []int{1}},
	{"ResourceCreated", "ResourcesCreated", Imgtec, []int{1}},
	{"BadRequest", "", Imgtec, []int{1}},
	{"Notification", "Notifications", Imgtec, []int{1}},
	{"Error", "", Imgtec, []int{1}},
}

// Registry returns every vendor type of the API.
func Registry() []Resource { return append([]Resource(nil), registry...) }

// lookup finds a registry entry by singular or plural name, case-insensitively.
func lookup(name string) (r Resource, elem string, ok bool) {
	for _, e := range registry {
		switch {
		case strings.EqualFold(name, e.Singular):
			return e, e.Singular, true
		case e.Plural != "" && strings.EqualFold(name, e.Plural):
			return e, e.Plural, true
		}
	}
	return Resource{}, "", false
}

// Type returns the vendor media type of a resource name, without suffixes:
// subscriptions are application/vnd.oma.lwm2m.*, everything else
// application/vnd.imgtec.*.
func Type(name string) string {
	if e, _, ok := lookup(name); ok {
		return e.Prefix + strings.ToLower(name)
	}
	return Imgtec + name
}

// Plural returns the list media type of an instance media type (the object
// definition's MIMEType plus "s").
func Plural(t string) string { return t + "s" }

// ErrNotAcceptable means no representation fits the Accept header (406).
var ErrNotAcceptable = errors.New("mimetypes: no acceptable representation")

// ErrUnsupported means a request Content-Type the route does not take (415).
var ErrUnsupported = errors.New("mimetypes: unsupported content type")

// Choice is a negotiated response representation.
type Choice struct {
	Format      Format
	ContentType string // exact type to send, e.g. application/vnd.imgtec.client-v1+json
}

// Negotiator decides representations; Formats lists what the server can
// produce, in order of preference.
type Negotiator struct {
	Formats []Format
}

// can reports whether the negotiator produces f.
func (n Negotiator) can(f Format) bool {
	for _, g := range n.Formats {
		if g == f {
			return true
		}
	}
	return false
}

type acceptRange struct {
	typ   string // lower-case media type without parameters
	q     float64
	order int
}

// parseAccept splits an Accept header into ranges sorted by q, then order.
func parseAccept(h string) []acceptRange {
	var out []acceptRange
	for i, part := range strings.Split(h, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, params, err := mime.ParseMediaType(part)
		if err != nil {
			// Tolerate unparsable parameters: keep the bare type.
			typ = strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				q = f
			}
		}
		out = append(out, acceptRange{typ: typ, q: q, order: i})
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].q > out[b].q })
	return out
}

// Negotiate picks the representation of a resource of vendor type base
// (e.g. "application/vnd.imgtec.client") for an Accept header.
func (n Negotiator) Negotiate(accept, base string) (Choice, error) {
	def := Choice{Format: n.Formats[0], ContentType: base + n.Formats[0].Suffix()}
	if strings.TrimSpace(accept) == "" {
		return def, nil
	}
	ranges := parseAccept(accept)
	// A range with q=0 refuses what it names (RFC 9110 section 12.5.1):
	// neither a wildcard nor plain application/json|xml may bring it back.
	refused := map[Format]bool{}
	for _, r := range ranges {
		if r.q != 0 {
			continue
		}
		switch r.typ {
		case "application/json":
			refused[JSON] = true
		case "application/xml", "text/xml":
			refused[XML] = true
		default:
			if rest, ok := strings.CutPrefix(r.typ, base); ok {
				if c, ok := n.matchVendor(base, rest); ok {
					refused[c.Format] = true
				}
			}
		}
	}
	for _, r := range ranges {
		if r.q == 0 {
			continue
		}
		switch r.typ {
		case "*/*", "application/*":
			for _, f := range n.Formats {
				if !refused[f] {
					return Choice{f, base + f.Suffix()}, nil
				}
			}
			continue
		case "application/json":
			if n.can(JSON) && !refused[JSON] {
				return Choice{JSON, base + JSON.Suffix()}, nil
			}
			continue
		case "application/xml", "text/xml":
			if n.can(XML) && !refused[XML] {
				return Choice{XML, base + XML.Suffix()}, nil
			}
			continue
		}
		rest, ok := strings.CutPrefix(r.typ, base)
		if !ok {
			continue
		}
		if c, ok := n.matchVendor(base, rest); ok {
			return c, nil
		}
	}
	return Choice{}, ErrNotAcceptable
}

// AskedFormat returns the format that the highest ranked range of an Accept
// header names, among those the negotiator produces: a vendor type
// (application/vnd.*) of any resource with +json or +xml (without a suffix,
// JSON), application/json, application/xml or text/xml. ok is false when no range names one
// (*/*, text/html, absent). Error bodies use it, so that a caller who asked
// for XML reads the error in XML even when its Accept names another resource.
func (n Negotiator) AskedFormat(accept string) (f Format, ok bool) {
	for _, r := range parseAccept(accept) {
		if r.q == 0 {
			continue
		}
		vendor := strings.HasPrefix(r.typ, "application/vnd.")
		switch {
		case r.typ == "application/json", vendor && strings.HasSuffix(r.typ, "+json"):
			f, ok = JSON, true
		case r.typ == "application/xml", r.typ == "text/xml", vendor && strings.HasSuffix(r.typ, "+xml"):
			f, ok = XML, true
		case vendor && !strings.Contains(r.typ, "+"):
			f, ok = JSON, true
		}
		if ok && n.can(f) {
			return f, true
		}
		ok = false
	}
	return 0, false
}

// matchVendor interprets what follows the base type: "", "+json", "-v1", "-v1+xml".
func (n Negotiator) matchVendor(base, rest string) (Choice, bool) {
	version := ""
	if v, ok := strings.CutPrefix(rest, "-v"); ok {
		digits := v
		if i := strings.IndexByte(v, '+'); i >= 0 {
			digits, rest = v[:i], v[i:]
		} else {
			rest = ""
		}
		num, err := strconv.Atoi(digits)
		if err != nil || num < 1 || num > Newest {
			return Choice{}, false
		}
		version = "-v" + strconv.Itoa(num) // canonical: -v01 is answered as -v1
	}
	f := n.Formats[0]
	switch rest {
	case "":
	case "+json":
		f = JSON
	case "+xml":
		f = XML
	default:
		return Choice{}, false
	}
	if !n.can(f) {
		return Choice{}, false
	}
	return Choice{Format: f, ContentType: base + version + f.Suffix()}, true
}

// RequestFormat checks a request Content-Type against the vendor types a
// route accepts (bases) and returns the body's format. Plain
// application/json and application/xml are accepted for every route.
func (n Negotiator) RequestFormat(contentType string, bases ...string) (Format, error) {
	typ, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrUnsupported, contentType)
	}
	pick := func(f Format) (Format, error) {
		if !n.can(f) {
			return 0, fmt.Errorf("%w: %q", ErrUnsupported, contentType)
		}
		return f, nil
	}
	switch typ {
	case "application/json":
		return pick(JSON)
	case "application/xml", "text/xml":
		return pick(XML)
	}
	for _, base := range bases {
		if rest, ok := strings.CutPrefix(typ, base); ok {
			if c, ok := n.matchVendor(base, rest); ok {
				return c.Format, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrUnsupported, contentType)
}
