// Package corelink parses and formats the CoRE Link Format (RFC 6690) as
// LwM2M uses it in registration payloads and Discover responses.
package corelink

import (
	"fmt"
	"strings"
)

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

// Param returns the value of the first parameter named key (compared
// case-insensitively, as RFC 8288 makes parameter names). A bare flag
// yields "" and true.
func (l Link) Param(key string) (string, bool) {
	for _, p := range l.Params {
		if strings.EqualFold(p.Key, key) {
			return p.Value, true
		}
	}
	return "", false
}

// Parse parses a link-format payload. An empty (or all-whitespace) payload
// is zero links. Whitespace is tolerated around every separator because
// device implementations often emit "</1/0>, </3/0>" or newlines.
func Parse(b []byte) ([]Link, error) {
	p := parser{s: b}
	p.skipSpace()
	if p.eof() {
		return nil, nil
	}
	var links []Link
	for {
		l, err := p.link()
		if err != nil {
			return nil, fmt.Errorf("corelink: parse: link %d: %w", len(links)+1, err)
		}
		links = append(links, l)
		p.skipSpace()
		if p.eof() {
			return links, nil
		}
		if c := p.s[p.i]; c != ',' {
			return nil, fmt.Errorf("corelink: parse: link %d: unexpected %q at offset %d, want ',' or end", len(links), c, p.i)
		}
		p.i++
		p.skipSpace()
	}
}

type parser struct {
	s []byte
	i int
}

func (p *parser) eof() bool { return p.i >= len(p.s) }

func (p *parser) skipSpace() {
	for !p.eof() && isSpace(p.s[p.i]) {
		p.i++
	}
}

func (p *parser) link() (Link, error) {
	var l Link
	if p.eof() || p.s[p.i] != '<' {
		return l, fmt.Errorf("missing '<' at offset %d", p.i)
	}
	p.i++
	start := p.i
	for !p.eof() && p.s[p.i] != '>' {
		c := p.s[p.i]
		if c == '<' || c == '"' || isSpace(c) || c < 0x20 || c == 0x7f {
			return l, fmt.Errorf("invalid character %q in target at offset %d", c, p.i)
		}
		p.i++
	}
	if p.eof() {
		return l, fmt.Errorf("unterminated target starting at offset %d", start)
	}
	l.Target = string(p.s[start:p.i])
	p.i++
	if l.Target == "" {
		return l, fmt.Errorf("empty target at offset %d", start-1)
	}
	for {
		p.skipSpace()
		if p.eof() || p.s[p.i] != ';' {
			return l, nil
		}
		p.i++
		p.skipSpace()
		prm, err := p.param()
		if err != nil {
			return l, fmt.Errorf("target %q: %w", l.Target, err)
		}
		l.Params = append(l.Params, prm)
	}
}

func (p *parser) param() (Param, error) {
	var prm Param
	start := p.i
	for !p.eof() && isKeyChar(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		if p.eof() {
			return prm, fmt.Errorf("missing parameter name at end of input")
		}
		return prm, fmt.Errorf("invalid parameter name character %q at offset %d", p.s[p.i], p.i)
	}
	prm.Key = string(p.s[start:p.i])
	p.skipSpace()
	if p.eof() || p.s[p.i] != '=' {
		return prm, nil
	}
	p.i++
	prm.HasValue = true
	p.skipSpace()
	if !p.eof() && p.s[p.i] == '"' {
		v, err := p.quoted()
		if err != nil {
			return prm, fmt.Errorf("parameter %q: %w", prm.Key, err)
		}
		prm.Value = v
		return prm, nil
	}
	start = p.i
	for !p.eof() && isTokenChar(p.s[p.i]) {
		p.i++
	}
	prm.Value = string(p.s[start:p.i])
	if !p.eof() {
		// Anything but a separator or whitespace right after a token means
		// the value contained a character that needs quoting.
		if c := p.s[p.i]; c != ';' && c != ',' && !isSpace(c) {
			return prm, fmt.Errorf("parameter %q: invalid character %q at offset %d", prm.Key, c, p.i)
		}
	}
	return prm, nil
}

// quoted reads a quoted-string starting at the opening quote.
func (p *parser) quoted() (string, error) {
	start := p.i
	p.i++
	var b strings.Builder
	for !p.eof() {
		c := p.s[p.i]
		switch c {
		case '"':
			p.i++
			if !p.eof() {
				if c := p.s[p.i]; c != ';' && c != ',' && !isSpace(c) {
					return "", fmt.Errorf("unexpected %q after quoted value at offset %d", c, p.i)
				}
			}
			return b.String(), nil
		case '\\':
			p.i++
			if p.eof() {
				return "", fmt.Errorf("unterminated quoted value starting at offset %d", start)
			}
			c = p.s[p.i]
		}
		b.WriteByte(c)
		p.i++
	}
	return "", fmt.Errorf("unterminated quoted value starting at offset %d", start)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// isKeyChar reports whether c may appear in a parmname (RFC 5988 / 8288).
func isKeyChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~*", c) >= 0
}

// isTokenChar reports whether c may appear in an unquoted value. It is
// wider than RFC 6690's ptoken (any printable or non-ASCII byte except the
// separators, quote and backslash) because devices leave values unquoted
// that ptoken would not allow; Format quotes exactly the complement.
func isTokenChar(c byte) bool {
	return c > 0x20 && c != 0x7f && c != ';' && c != ',' && c != '"' && c != '\\'
}

// Format renders links in link format, the inverse of Parse: values of rt,
// if, anchor, title, rel and rev, empty values and values with characters
// outside a token are quoted (with '"' and '\' escaped); others, such as
// numbers and versions, are written bare.
func Format(links []Link) []byte {
	var b strings.Builder
	for i, l := range links {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('<')
		b.WriteString(l.Target)
		b.WriteByte('>')
		for _, p := range l.Params {
			b.WriteByte(';')
			b.WriteString(p.Key)
			if !p.HasValue {
				continue
			}
			b.WriteByte('=')
			if !needsQuote(p) {
				b.WriteString(p.Value)
				continue
			}
			b.WriteByte('"')
			for j := 0; j < len(p.Value); j++ {
				if c := p.Value[j]; c == '"' || c == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(p.Value[j])
			}
			b.WriteByte('"')
		}
	}
	return []byte(b.String())
}

func needsQuote(p Param) bool {
	// RFC 6690 and LwM2M write these as quoted-strings even when the value
	// would be a valid token; devices match on the quoted form.
	switch strings.ToLower(p.Key) {
	case "rt", "if", "anchor", "title", "rel", "rev":
		return true
	}
	if p.Value == "" {
		return true
	}
	for i := 0; i < len(p.Value); i++ {
		if !isTokenChar(p.Value[i]) {
			return true
		}
	}
	return false
}
