package model

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// maxID is the largest usable object or resource ID: LwM2M reserves 65535.
const maxID = 65534

// ddfRoot mirrors the DDF XML. Every value is read as a string so that
// validation (trimming, ranges, enumerations) happens in one place and yields
// errors that name the offending object and resource.
type ddfRoot struct {
	XMLName xml.Name    `xml:"LWM2M"`
	Objects []ddfObject `xml:"Object"`
}

type ddfObject struct {
	Name              string    `xml:"Name"`
	Description1      string    `xml:"Description1"`
	ObjectID          *string   `xml:"ObjectID"`
	ObjectURN         string    `xml:"ObjectURN"`
	LWM2MVersion      string    `xml:"LWM2MVersion"`
	ObjectVersion     string    `xml:"ObjectVersion"`
	MultipleInstances string    `xml:"MultipleInstances"`
	Mandatory         string    `xml:"Mandatory"`
	Items             []ddfItem `xml:"Resources>Item"`
}

type ddfItem struct {
	ID                *string `xml:"ID,attr"`
	Name              string  `xml:"Name"`
	Operations        string  `xml:"Operations"`
	MultipleInstances string  `xml:"MultipleInstances"`
	Mandatory         string  `xml:"Mandatory"`
	Type              string  `xml:"Type"`
	RangeEnumeration  string  `xml:"RangeEnumeration"`
	Units             string  `xml:"Units"`
	Description       string  `xml:"Description"`
}

// ParseDDF parses an OMA LwM2M Object Definition (DDF) XML document holding
// one or more <Object> elements.
func ParseDDF(r io.Reader) ([]*Object, error) {
	objs, err := parseDDF(r)
	if err != nil {
		return nil, fmt.Errorf("model: parse DDF: %w", err)
	}
	return objs, nil
}

func parseDDF(r io.Reader) ([]*Object, error) {
	r, err := transcodeUTF16(r)
	if err != nil {
		return nil, err
	}
	d := xml.NewDecoder(r)
	d.CharsetReader = charsetReader
	var root ddfRoot
	if err := d.Decode(&root); err != nil {
		return nil, err
	}
	if len(root.Objects) == 0 {
		return nil, errors.New("no <Object> element")
	}
	objs := make([]*Object, 0, len(root.Objects))
	seen := make(map[uint16]bool, len(root.Objects))
	for i := range root.Objects {
		o, err := convertObject(&root.Objects[i])
		if err != nil {
			return nil, err
		}
		// Two definitions of one object in a document cannot both be
		// registered, so reject the document rather than pick one silently.
		if seen[o.ID] {
			return nil, fmt.Errorf("object %d defined more than once", o.ID)
		}
		seen[o.ID] = true
		objs = append(objs, o)
	}
	return objs, nil
}

func convertObject(x *ddfObject) (*Object, error) {
	if x.ObjectID == nil {
		return nil, fmt.Errorf("object %q: missing ObjectID", clean(x.Name))
	}
	id, err := parseID(*x.ObjectID)
	if err != nil {
		return nil, fmt.Errorf("object %q: ObjectID: %w", clean(x.Name), err)
	}
	o := &Object{
		ID:           id,
		Name:         clean(x.Name),
		Description:  strings.TrimSpace(x.Description1),
		URN:          clean(x.ObjectURN),
		Version:      clean(x.ObjectVersion),
		LwM2MVersion: clean(x.LWM2MVersion),
	}
	// The OMA schema gives both version elements a default of 1.0.
	if o.Version == "" {
		o.Version = "1.0"
	}
	if o.LwM2MVersion == "" {
		o.LwM2MVersion = "1.0"
	}
	if o.MultipleInstances, err = parseMultiple(x.MultipleInstances); err != nil {
		return nil, fmt.Errorf("object %d: %w", id, err)
	}
	if o.Mandatory, err = parseMandatory(x.Mandatory); err != nil {
		return nil, fmt.Errorf("object %d: %w", id, err)
	}
	o.SerialisationName = camelCase(o.Name)
	// A name without letters or digits would leave the MIME subtype empty.
	if o.SerialisationName == "" {
		o.SerialisationName = "Object" + strconv.Itoa(int(id))
	}
	o.MIMEType = MIMEType(o.SerialisationName)

	o.Resources = make([]*Resource, 0, len(x.Items))
	ids := make(map[uint16]bool, len(x.Items))
	// Names are compared case-insensitively because ResourceByName is.
	names := make(map[string]bool, len(x.Items))
	for i := range x.Items {
		res, err := convertItem(&x.Items[i])
		if err != nil {
			return nil, fmt.Errorf("object %d: %w", id, err)
		}
		if ids[res.ID] {
			return nil, fmt.Errorf("object %d: duplicate resource ID %d", id, res.ID)
		}
		ids[res.ID] = true
		res.SerialisationName = uniqueName(camelCase(res.Name), res.ID, names)
		o.Resources = append(o.Resources, res)
	}
	return o, nil
}

func convertItem(x *ddfItem) (*Resource, error) {
	if x.ID == nil {
		return nil, fmt.Errorf("resource %q: missing ID attribute", clean(x.Name))
	}
	id, err := parseID(*x.ID)
	if err != nil {
		return nil, fmt.Errorf("resource %q: ID: %w", clean(x.Name), err)
	}
	res := &Resource{
		ID:               id,
		Name:             clean(x.Name),
		RangeEnumeration: clean(x.RangeEnumeration),
		Units:            clean(x.Units),
		Description:      strings.TrimSpace(x.Description),
	}
	if res.Operations, err = parseOperations(x.Operations); err != nil {
		return nil, fmt.Errorf("resource %d: %w", id, err)
	}
	if res.Multiple, err = parseMultiple(x.MultipleInstances); err != nil {
		return nil, fmt.Errorf("resource %d: %w", id, err)
	}
	if res.Mandatory, err = parseMandatory(x.Mandatory); err != nil {
		return nil, fmt.Errorf("resource %d: %w", id, err)
	}
	if res.Type, err = lwm2m.ParseDataType(clean(x.Type)); err != nil {
		return nil, fmt.Errorf("resource %d: %w", id, err)
	}
	return res, nil
}

// clean trims a one-line value; hand-edited DDFs often wrap or indent them.
func clean(s string) string { return strings.Join(strings.Fields(s), " ") }

func parseID(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty")
	}
	// ParseUint alone would accept "+1" or "0x1" with base 0; base 10 plus
	// the bit size keep it to plain decimals.
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > maxID {
		return 0, fmt.Errorf("%q is not an ID in 0..%d", s, maxID)
	}
	return uint16(n), nil
}

func parseMultiple(s string) (bool, error) {
	switch strings.ToLower(clean(s)) {
	case "multiple":
		return true, nil
	case "single", "":
		return false, nil
	}
	return false, fmt.Errorf("MultipleInstances %q is neither Single nor Multiple", clean(s))
}

func parseMandatory(s string) (bool, error) {
	switch strings.ToLower(clean(s)) {
	case "mandatory":
		return true, nil
	case "optional", "":
		return false, nil
	}
	return false, fmt.Errorf("element Mandatory %q is neither Mandatory nor Optional", clean(s))
}

// parseOperations normalises the operations to one of "", "R", "W", "RW"
// or "E", the set the rest of the server switches on.
func parseOperations(s string) (string, error) {
	var r, w, e bool
	for _, c := range strings.ToUpper(strings.TrimSpace(s)) {
		switch c {
		case 'R':
			r = true
		case 'W':
			w = true
		case 'E':
			e = true
		default:
			return "", fmt.Errorf("element Operations %q: unknown operation %q", clean(s), c)
		}
	}
	if e && (r || w) {
		return "", fmt.Errorf("element Operations %q: executable resources cannot be read or written", clean(s))
	}
	switch {
	case e:
		return "E", nil
	case r && w:
		return "RW", nil
	case r:
		return "R", nil
	case w:
		return "W", nil
	}
	return "", nil
}

// camelCase turns a DDF name into an identifier usable as a JSON key or
// MIME subtype: words split at any character that is not an ASCII letter or
// digit, each word's first letter upper-cased and the rest kept as written
// (so "LwM2M Server" stays "LwM2MServer").
func camelCase(name string) string {
	var b strings.Builder
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z':
			if upper {
				c -= 'a' - 'A'
			}
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		default:
			upper = true
			continue
		}
		upper = false
		b.WriteByte(c)
	}
	return b.String()
}

// uniqueName makes name unique among the case-folded names in taken by
// appending the resource ID. A name that is empty or all digits gets a
// "Resource" prefix so that it can never be mistaken for a resource ID by
// ResourceByName.
func uniqueName(name string, id uint16, taken map[string]bool) string {
	if strings.TrimLeft(name, "0123456789") == "" {
		name = "Resource" + name
	}
	suffix := strconv.Itoa(int(id))
	for taken[strings.ToLower(name)] {
		name += suffix
	}
	taken[strings.ToLower(name)] = true
	return name
}

// charsetReader handles the encodings DDF files declare other than UTF-8,
// which encoding/xml handles itself.
func charsetReader(label string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "utf-8", "utf8", "us-ascii", "ascii", "iso646-us", "ansi_x3.4-1968":
		// ASCII is a subset of UTF-8; encoding/xml rejects bytes that are not UTF-8.
		return input, nil
	case "utf-16", "utf-16le", "utf-16be", "utf16":
		// Only reachable after transcodeUTF16 has already converted the
		// document, as the declaration cannot be read in UTF-16 otherwise.
		return input, nil
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "iso-ir-100", "cp819", "ibm819":
		return &latin1Reader{r: bufio.NewReader(input)}, nil
	}
	return nil, fmt.Errorf("unsupported encoding %q", label)
}

// latin1Reader converts ISO-8859-1 to UTF-8: each byte is the code point.
type latin1Reader struct {
	r       *bufio.Reader
	pending []byte
}

func (l *latin1Reader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(l.pending) > 0 {
			c := copy(p[n:], l.pending)
			l.pending = l.pending[c:]
			n += c
			continue
		}
		b, err := l.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if b < utf8.RuneSelf {
			p[n] = b
			n++
			continue
		}
		l.pending = utf8.AppendRune(l.pending[:0], rune(b))
	}
	return n, nil
}

// transcodeUTF16 converts a document that starts with a UTF-16 byte order
// mark to UTF-8, because encoding/xml needs to read the XML declaration as
// ASCII before any CharsetReader is consulted. Other documents pass through.
func transcodeUTF16(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	bom, _ := br.Peek(2)
	var le bool
	switch {
	case bytes.Equal(bom, []byte{0xFF, 0xFE}):
		le = true
	case bytes.Equal(bom, []byte{0xFE, 0xFF}):
	default:
		return br, nil
	}
	raw, err := io.ReadAll(br)
	if err != nil {
		return nil, err
	}
	raw = raw[2:]
	if len(raw)%2 != 0 {
		return nil, errors.New("UTF-16 document has an odd number of bytes")
	}
	units := make([]uint16, len(raw)/2)
	for i := range units {
		if le {
			units[i] = uint16(raw[2*i]) | uint16(raw[2*i+1])<<8
		} else {
			units[i] = uint16(raw[2*i])<<8 | uint16(raw[2*i+1])
		}
	}
	return strings.NewReader(string(utf16.Decode(units))), nil
}
