// Package model holds LwM2M object definitions: the OMA DDF XML parser, the
// built-in definitions shipped with the server, and a per-organisation registry.
package model

import (
	"strconv"
	"strings"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// Object is an object definition (one OMA DDF <Object>).
type Object struct {
	ID                uint16      `json:"id"`
	Name              string      `json:"name"`
	Description       string      `json:"description,omitempty"`
	URN               string      `json:"urn,omitempty"`
	Version           string      `json:"version,omitempty"`      // ObjectVersion, "1.0" when absent
	LwM2MVersion      string      `json:"lwm2mVersion,omitempty"` // LWM2MVersion
	MultipleInstances bool        `json:"multipleInstances"`
	Mandatory         bool        `json:"mandatory"`
	MIMEType          string      `json:"mimeType"`          // application/vnd.oma.lwm2m.<name>
	SerialisationName string      `json:"serialisationName"` // CamelCase of Name
	Resources         []*Resource `json:"resources"`         // in definition order
}

// Resource is one resource definition of an object.
type Resource struct {
	ID                uint16         `json:"id"`
	Name              string         `json:"name"`
	Operations        string         `json:"operations"` // "", "R", "W", "RW", "E"
	Multiple          bool           `json:"multiple"`
	Mandatory         bool           `json:"mandatory"`
	Type              lwm2m.DataType `json:"type"`
	RangeEnumeration  string         `json:"rangeEnumeration,omitempty"`
	Units             string         `json:"units,omitempty"`
	Description       string         `json:"description,omitempty"`
	SerialisationName string         `json:"serialisationName"` // CamelCase of Name
}

// Resource returns the resource definition with the given ID.
func (o *Object) Resource(id uint16) (*Resource, bool) {
	for _, r := range o.Resources {
		if r.ID == id {
			return r, true
		}
	}
	return nil, false
}

// ResourceByName finds a resource by its SerialisationName, compared
// case-insensitively, or by its decimal ID.
func (o *Object) ResourceByName(serialisationNameOrID string) (*Resource, bool) {
	for _, r := range o.Resources {
		if strings.EqualFold(r.SerialisationName, serialisationNameOrID) {
			return r, true
		}
	}
	// Names are matched first; the parser never derives an all-digit name,
	// so a decimal string can only mean an ID.
	id, err := strconv.ParseUint(serialisationNameOrID, 10, 16)
	if err != nil {
		return nil, false
	}
	return o.Resource(uint16(id))
}

// Readable reports whether the resource supports Read.
func (r *Resource) Readable() bool { return strings.Contains(r.Operations, "R") }

// Writable reports whether the resource supports Write.
func (r *Resource) Writable() bool { return strings.Contains(r.Operations, "W") }

// Executable reports whether the resource supports Execute.
func (r *Resource) Executable() bool { return strings.Contains(r.Operations, "E") }

// clone returns a deep copy, so that a registry does not share resource
// slices with its caller.
func (o *Object) clone() *Object {
	c := *o
	c.Resources = make([]*Resource, 0, len(o.Resources))
	for _, r := range o.Resources {
		// A nil entry would make every later lookup panic; it carries no
		// definition, so it is dropped.
		if r != nil {
			rc := *r
			c.Resources = append(c.Resources, &rc)
		}
	}
	return &c
}

// SerialisationName derives a field name from a definition's name ("Battery Level" → "BatteryLevel").
func SerialisationName(name string) string { return camelCase(name) }

// MIMEType derives an object's instance media type from its name (Device → application/vnd.oma.lwm2m.device).
func MIMEType(name string) string {
	return "application/vnd.oma.lwm2m." + strings.ToLower(camelCase(name))
}
