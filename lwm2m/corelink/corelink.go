// Package corelink parses and formats the CoRE Link Format (RFC 6690) as
// LwM2M uses it in registration payloads and Discover responses.
package corelink

// Link is one link-value: a target URI reference and its parameters in order.
type Link struct {
	Target string  // between < and >, e.g. "/3/0"
	Params []Param // in the order they appeared
}

// Param is one link parameter. Value is unquoted; a parameter without
// "=value" (such as the bare "Q" flag) has HasValue false.
type Param struct {
	Key      string
	Value    string
	HasValue bool
}
