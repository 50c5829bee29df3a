package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"math"
	"mime"
	"strings"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// The subscription types.
const (
	TypeClientConnected         = "ClientConnected"
	TypeClientDisconnected      = "ClientDisconnected"
	TypeClientUpdated           = "ClientUpdated"
	TypeClientConnectionExpired = "ClientConnectionExpired"
	TypeObservation             = "Observation"
)

// ValidationError reports invalid subscription fields by their JSON names
// ("SubscriptionType", "Url", ...), for a 400 BadRequest.
type ValidationError struct {
	Fields []string
	Msg    string
}

// Error names the invalid fields and says why.
func (e *ValidationError) Error() string {
	return "subscriptions: invalid " + strings.Join(e.Fields, ", ") + ": " + e.Msg
}

// problems collects every invalid field at once, so that an application
// fixes its request in one go.
type problems struct {
	fields []string
	msgs   []string
}

func (p *problems) add(field, format string, args ...any) {
	found := false
	for _, f := range p.fields {
		if f == field {
			found = true
		}
	}
	if !found {
		p.fields = append(p.fields, field)
	}
	p.msgs = append(p.msgs, fmt.Sprintf(format, args...))
}

func (p *problems) err() error {
	if len(p.fields) == 0 {
		return nil
	}
	return &ValidationError{Fields: p.fields, Msg: strings.Join(p.msgs, "; ")}
}

func isLifecycle(t string) bool {
	switch t {
	case TypeClientConnected, TypeClientDisconnected, TypeClientUpdated, TypeClientConnectionExpired:
		return true
	}
	return false
}

// validate checks a subscription as it would be stored.
func (e *Engine) validate(ctx context.Context, s storage.Subscription) error {
	var p problems
	switch {
	case s.Type == TypeObservation:
		field := "Property"
		if s.ClientID == "" {
			field = "ResourcePath"
		}
		if s.Path == "" {
			p.add(field, "Observation subscriptions are made on an object instance or a resource")
		} else if path, err := lwm2m.ParsePath(s.Path); err != nil || (path.Depth != lwm2m.DepthInstance && path.Depth != lwm2m.DepthResource) {
			p.add(field, "an observation is of an object instance (/o/i) or of one of its resources (/o/i/r), not %q", s.Path)
		}
		validateAttributes(&p, s.Attributes)
	case isLifecycle(s.Type):
		if s.Path != "" {
			p.add("SubscriptionType", "%s subscriptions are made on the organisation or on a client, not on an object instance", s.Type)
		}
		if !s.Attributes.IsZero() {
			p.add("Attributes", "attributes apply to Observation subscriptions only")
		}
	default:
		p.add("SubscriptionType", "must be one of %s, %s, %s, %s, %s, not %q", TypeClientConnected, TypeClientDisconnected,
			TypeClientUpdated, TypeClientConnectionExpired, TypeObservation, s.Type)
	}
	if s.Criteria != nil {
		validateCriteria(&p, s)
	}
	if err := e.dest.checkURL(ctx, s.URL); err != nil {
		p.add("Url", "%v", err)
	}
	if _, err := notificationFormat(s.AcceptContentType); err != nil {
		p.add("AcceptContentType", "%v", err)
	}
	if s.DeletionPolicy != 0 && s.DeletionPolicy != 1 {
		p.add("DeletionPolicy", "must be 0 or 1, not %d", s.DeletionPolicy)
	}
	if err := p.err(); err != nil {
		return err
	}
	if s.OrganisationID == "" {
		return errors.New("subscription has no organisation")
	}
	return nil
}

// validateCriteria applies the pre-subscription rules: criteria belong to
// the organisation level, Model needs Make, FirmwareVersion needs Model, and
// an endpoint list excludes manufacturer data.
func validateCriteria(p *problems, s storage.Subscription) {
	c := s.Criteria
	if s.ClientID != "" {
		p.add("Criteria", "criteria select clients, so they belong to organisation-level subscriptions")
	}
	if c.Model != "" && c.Make == "" {
		p.add("Criteria", "Manufacturer.Model needs Manufacturer.Make")
	}
	if c.FirmwareVersion != "" && c.Model == "" {
		p.add("Criteria", "Manufacturer.FirmwareVersion needs Manufacturer.Model")
	}
	if len(c.Endpoints) > 0 && (c.Make != "" || c.Model != "" || c.FirmwareVersion != "") {
		p.add("Criteria", "Endpoints and Manufacturer exclude each other")
	}
	for _, ep := range c.Endpoints {
		if strings.TrimSpace(ep) == "" {
			p.add("Criteria", "Endpoints must not contain empty names")
			break
		}
	}
}

// validateAttributes applies the API's rule (Pmax < Pmin is an error) and
// the OMA LwM2M Core 5.1.2 rules on change value conditions, which a device
// would apply to the same attributes: "lt" < "gt" and "lt" + 2*"st" < "gt".
func validateAttributes(p *problems, a lwm2m.Attributes) {
	if a.Pmin != nil && a.Pmax != nil && *a.Pmax < *a.Pmin {
		p.add("Attributes", "Pmax (%d) must not be smaller than Pmin (%d)", *a.Pmax, *a.Pmin)
	}
	if a.Epmin != nil || a.Epmax != nil {
		p.add("Attributes", "Epmin and Epmax are not supported on subscriptions")
	}
	finite := func(name string, v *float64) bool {
		if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
			p.add("Attributes", "%s must be a finite number", name)
			return false
		}
		return true
	}
	okGt, okLt, okSt := finite("GreaterThan", a.Gt), finite("LessThan", a.Lt), finite("Step", a.St)
	if okSt && a.St != nil && *a.St < 0 {
		p.add("Attributes", "Step must not be negative")
		okSt = false
	}
	if okGt && okLt && a.Gt != nil && a.Lt != nil {
		if !(*a.Lt < *a.Gt) {
			p.add("Attributes", "LessThan (%g) must be smaller than GreaterThan (%g)", *a.Lt, *a.Gt)
		} else if okSt && a.St != nil && !(*a.Lt+2**a.St < *a.Gt) {
			p.add("Attributes", "LessThan + 2*Step (%g) must be smaller than GreaterThan (%g)", *a.Lt+2**a.St, *a.Gt)
		}
	}
}

// format is the encoding of a webhook body.
type format int

const (
	formatJSON format = iota
	formatXML
)

// notificationFormat maps a subscription's AcceptContentType to the body
// encoding: JSON by default, XML when asked for (application/xml, text/xml
// or a +xml vendor type).
func notificationFormat(accept string) (format, error) {
	if strings.TrimSpace(accept) == "" {
		return formatJSON, nil
	}
	mt, _, err := mime.ParseMediaType(accept)
	if err != nil {
		return formatJSON, fmt.Errorf("not a media type: %q", accept)
	}
	switch {
	case mt == "application/json" || mt == "*/*" || mt == "application/*" || strings.HasSuffix(mt, "+json"):
		return formatJSON, nil
	case mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml"):
		return formatXML, nil
	case strings.HasPrefix(mt, "application/vnd.imgtec.notifications"):
		return formatJSON, nil
	}
	return formatJSON, fmt.Errorf("notifications are sent as JSON or XML, not %q", accept)
}
