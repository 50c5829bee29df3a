// Package model holds LwM2M object definitions: the OMA DDF XML parser, the
// built-in definitions shipped with the server, and a per-organisation registry.
package model

import "github.com/deviceserver/deviceserver/lwm2m"

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
