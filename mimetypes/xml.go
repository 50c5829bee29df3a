// The XML representation (API.md section 1: "XML uses the same field names
// as elements; links are <Link rel=".." href=".." type=".."/> inside
// <Links>").
//
// Encoding works on the generic ordered tree of hypermedia.Tree, so that
// XML shows exactly the members JSON shows, in the same order:
//
//   - The document is the declaration <?xml version="1.0" encoding="UTF-8"?>
//     and one root element, named by XMLName, then a newline; no indentation.
//   - An object member Name: value is <Name>value</Name>; a nested object is
//     <Name> with one child element per member. A member whose name is not
//     an XML name (ASCII letter or _ then letters, digits, _ - .), such as the
//     resource-instance IDs "0", "12" of a sparse multi-instance resource, is
//     <Entry key="12">value</Entry>. When every member of an object would
//     otherwise be written with the element name of an array item (see
//     below), all its members are written as Entry elements, so that the
//     object is not read back as an array.
//   - An array is one element per item, named by the singular of the array's
//     name: "ies" becomes "y", "sses" becomes "ss", otherwise a final "s" is
//     dropped (Properties → Property, InvalidFields → InvalidField); a name
//     that does not end in a plural "s" ("Value", "Address") gives "Item".
//     Items of "Items" are named by the singular of the root: Clients →
//     Client, ResourcesCreated → ResourceCreated, API → Item.
//   - Items of a "Links" array that are links (objects holding only string
//     rel, href, type and title) are <Link rel=".." href=".." type=".."
//     title=".."/>, empty attributes left out.
//   - Scalars are text: strings escaped, numbers as their JSON text,
//     booleans true/false. nil, "", empty arrays and empty objects are an
//     empty element <Name/>. Characters XML cannot carry (invalid UTF-8,
//     most control characters) become U+FFFD.
//
// Decoding is the inverse, so that everything the server writes it reads
// back: an element with no child elements is its text (an empty element is
// ""), except a child of Links carrying rel/href/type/title attributes,
// which is a link object; an element whose children all have the item name
// of its name (or "Item") and carry no key is an array; any other element
// with children is an object whose members are named by the children, or by
// the key attribute of <Entry key="..">. Scalars come back as strings: XML
// does not tell "5" from 5, so DecodeXML converts them to the target's
// types. Attributes other than key and the link attributes, comments and
// processing instructions are ignored; DOCTYPE and other directives,
// undeclared entities, text mixed with elements, anything after the root
// element, nesting deeper than maxXMLDepth and more than maxXMLElements
// elements are errors.

package mimetypes

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/deviceserver/deviceserver/hypermedia"
)

// Limits that keep hostile XML bodies from exhausting the stack or memory.
const (
	maxXMLDepth    = 64      // element nesting, the root being 1
	maxXMLElements = 100_000 // elements in one document
)

// entryName is the element of object members whose names are not XML names.
const entryName = "Entry"

// itemFallback names array items whose array has no usable singular name.
const itemFallback = "Item"

// linkAttrs are the attributes of a <Link/>, in the order they are written.
var linkAttrs = [...]string{"rel", "href", "type", "title"}

// XMLName returns the root element name for a vendor media type or resource
// name: "application/vnd.imgtec.client-v1+xml" → "Client", "pskidentities"
// → "PSKIdentities", "application/vnd.oma.lwm2m.device" → "Device".
func XMLName(typeOrName string) string {
	name, _, _ := strings.Cut(typeOrName, ";")
	name = strings.TrimSpace(name)
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.LastIndexByte(name, '+'); i >= 0 {
		name = name[:i]
	}
	// The vendor tree (vnd.imgtec., vnd.oma.lwm2m.) ends at the last dot.
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.LastIndex(name, "-v"); i > 0 && isDigits(name[i+2:]) {
		name = name[:i]
	}
	if _, elem, ok := lookup(name); ok {
		return elem
	}
	if name == "" {
		return itemFallback
	}
	// Object definitions name their own MIME types; make any of them a
	// usable element name rather than fail the response.
	b := []byte(name)
	for i, c := range b {
		if !isNameByte(c, i == 0) {
			b[i] = '_'
		}
	}
	if 'a' <= b[0] && b[0] <= 'z' {
		b[0] -= 'a' - 'A'
	}
	return string(b)
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

// isNameByte reports whether c may appear in an element name; only ASCII
// is used, because encoding/xml's idea of non-ASCII name characters follows
// an older Unicode than package unicode, and a name it rejects could not be
// read back.
func isNameByte(c byte, first bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_':
		return true
	case '0' <= c && c <= '9', c == '-', c == '.':
		return !first
	}
	return false
}

// isName reports whether s can be written as an element name.
func isName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i], i == 0) {
			return false
		}
	}
	return true
}

// itemName is the element name of the items of an array named name in a
// document whose root is root.
func itemName(name, root string) string {
	if name == "Items" && root != "Items" {
		name = root
	}
	var s string
	switch {
	case name == "ResourcesCreated": // the plural is not at the end
		return "ResourceCreated"
	case strings.HasSuffix(name, "ies"):
		s = strings.TrimSuffix(name, "ies") + "y"
	case strings.HasSuffix(name, "sses"):
		s = strings.TrimSuffix(name, "es")
	case strings.HasSuffix(name, "ss"): // Address is not a plural
		return itemFallback
	case strings.HasSuffix(name, "s"):
		s = strings.TrimSuffix(name, "s")
	default:
		return itemFallback
	}
	if !isName(s) {
		return itemFallback
	}
	return s
}

// EncodeXML writes tree as an XML document whose root element is root.
// tree is normally a hypermedia.Tree; map[string]any (members sorted by
// name) and any other value (through hypermedia.Tree) are accepted too.
// The rules are in the comment at the top of xml.go.
func EncodeXML(w io.Writer, root string, tree any) error {
	if !isName(root) {
		return fmt.Errorf("mimetypes: encode XML: %q is not an element name", root)
	}
	e := xmlEncoder{root: root}
	e.b.WriteString(xml.Header[:len(xml.Header)-1])
	if err := e.value(root, root, false, tree, 1); err != nil {
		return fmt.Errorf("mimetypes: encode XML: %w", err)
	}
	e.b.WriteByte('\n')
	if _, err := w.Write(e.b.Bytes()); err != nil {
		return fmt.Errorf("mimetypes: encode XML: %w", err)
	}
	return nil
}

type xmlEncoder struct {
	b    bytes.Buffer
	root string
}

func (e *xmlEncoder) text(s string) {
	_ = xml.EscapeText(&e.b, []byte(s)) // writing to a bytes.Buffer cannot fail
}

func (e *xmlEncoder) attr(name, value string) {
	e.b.WriteByte(' ')
	e.b.WriteString(name)
	e.b.WriteString(`="`)
	e.text(value)
	e.b.WriteByte('"')
}

// start writes the start tag of elem, an Entry with key name when keyed;
// selfClose makes it an empty element.
func (e *xmlEncoder) start(elem, name string, keyed, selfClose bool) {
	e.b.WriteByte('<')
	e.b.WriteString(elem)
	if keyed {
		e.attr("key", name)
	}
	if selfClose {
		e.b.WriteString("/>")
	} else {
		e.b.WriteByte('>')
	}
}

func (e *xmlEncoder) close(elem string) {
	e.b.WriteString("</")
	e.b.WriteString(elem)
	e.b.WriteByte('>')
}

// value writes v as element elem; name is its member name (elem, or the
// key of an Entry when keyed), which decides item names and links.
func (e *xmlEncoder) value(elem, name string, keyed bool, v any, depth int) error {
	if depth > maxXMLDepth {
		return fmt.Errorf("nesting deeper than %d elements", maxXMLDepth)
	}
	switch x := v.(type) {
	case nil:
		e.start(elem, name, keyed, true)
	case string:
		e.leaf(elem, name, keyed, x)
	case json.Number:
		e.leaf(elem, name, keyed, string(x))
	case bool:
		e.leaf(elem, name, keyed, strconv.FormatBool(x))
	case hypermedia.Object:
		if len(x) == 0 {
			e.start(elem, name, keyed, true)
			return nil
		}
		allEntries := looksLikeArray(x, name, e.root)
		e.start(elem, name, keyed, false)
		for _, f := range x {
			var err error
			if allEntries || !isName(f.Name) {
				err = e.value(entryName, f.Name, true, f.Value, depth+1)
			} else {
				err = e.value(f.Name, f.Name, false, f.Value, depth+1)
			}
			if err != nil {
				return err
			}
		}
		e.close(elem)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		obj := make(hypermedia.Object, len(keys))
		for i, k := range keys {
			obj[i] = hypermedia.Field{Name: k, Value: x[k]}
		}
		return e.value(elem, name, keyed, obj, depth)
	case []any:
		if len(x) == 0 {
			e.start(elem, name, keyed, true)
			return nil
		}
		item := itemName(name, e.root)
		e.start(elem, name, keyed, false)
		for _, it := range x {
			if name == "Links" && e.link(item, it) {
				if depth+1 > maxXMLDepth {
					return fmt.Errorf("nesting deeper than %d elements", maxXMLDepth)
				}
				continue
			}
			if err := e.value(item, item, false, it, depth+1); err != nil {
				return err
			}
		}
		e.close(elem)
	default:
		t, err := hypermedia.Tree(v)
		if err != nil {
			return err
		}
		return e.value(elem, name, keyed, t, depth)
	}
	return nil
}

func (e *xmlEncoder) leaf(elem, name string, keyed bool, s string) {
	if s == "" {
		e.start(elem, name, keyed, true)
		return
	}
	e.start(elem, name, keyed, false)
	e.text(s)
	e.close(elem)
}

// link writes v as <elem rel=".." .../> when it is a link: an object of
// strings named by linkAttrs, not all empty.
func (e *xmlEncoder) link(elem string, v any) bool {
	var vals [len(linkAttrs)]string
	var seen [len(linkAttrs)]bool
	set := func(name string, v any) bool {
		i := linkAttrIndex(name)
		s, ok := v.(string)
		if i < 0 || !ok || seen[i] {
			return false
		}
		vals[i], seen[i] = s, true
		return true
	}
	switch x := v.(type) {
	case hypermedia.Object:
		for _, f := range x {
			if !set(f.Name, f.Value) {
				return false
			}
		}
	case map[string]any:
		for k, fv := range x {
			if !set(k, fv) {
				return false
			}
		}
	default:
		return false
	}
	if vals == [len(linkAttrs)]string{} {
		return false
	}
	e.b.WriteByte('<')
	e.b.WriteString(elem)
	for i, s := range vals {
		if s != "" {
			e.attr(linkAttrs[i], s)
		}
	}
	e.b.WriteString("/>")
	return true
}

func linkAttrIndex(name string) int {
	for i, a := range linkAttrs {
		if a == name {
			return i
		}
	}
	return -1
}

// looksLikeArray reports whether an object's members, written under their
// own names inside element name, would read back as an array.
func looksLikeArray(o hypermedia.Object, name, root string) bool {
	first := o[0].Name
	if first != itemName(name, root) && first != itemFallback {
		return false
	}
	for _, f := range o {
		if f.Name != first {
			return false
		}
	}
	return true
}

// XMLFieldError names the element of an XML request body that the target
// of DecodeXML cannot take.
type XMLFieldError struct {
	Field   string // dotted path of JSON names, as encoding/json names fields: "Attributes.Pmin"
	Unknown bool   // the target has no such field; otherwise the value does not fit it
}

func (e *XMLFieldError) Error() string {
	if e.Unknown {
		return "unknown field " + e.Field
	}
	return "invalid value for field " + e.Field
}

// DecodeXML reads an XML request body into v (a pointer to a struct with
// JSON tags, to map[string]any, or to any), using the same field names as
// the JSON form. Into map[string]any and any, leaves stay strings ("5",
// "true") and arrays and objects become []any and map[string]any. Into a
// struct, leaves are converted to the field's type (numbers, booleans,
// json.Unmarshaler and encoding.TextUnmarshaler types such as time.Time get
// the text as a JSON string); an empty element is no value (JSON null) for
// anything but a string; a value that does not fit, or an element the
// struct has no field for, is a *XMLFieldError.
func DecodeXML(r io.Reader, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("mimetypes: decode XML: target must be a non-nil pointer, not %T", v)
	}
	_, tree, err := parseXML(r)
	if err != nil {
		return fmt.Errorf("mimetypes: decode XML: %w", err)
	}
	// encoding/json already knows how to fill every kind of Go value from
	// JSON, so the tree becomes JSON typed for the target, then goes through it.
	var j jsonWriter
	if err := j.value(tree, rv.Type().Elem(), "", false); err != nil {
		return fmt.Errorf("mimetypes: decode XML: %w", err)
	}
	dec := json.NewDecoder(&j.b)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("mimetypes: decode XML: %w", &XMLFieldError{Field: te.Field})
		}
		return fmt.Errorf("mimetypes: decode XML: %w", err)
	}
	return nil
}

// parseXML reads a document into its root element's name and the ordered
// tree of the root (hypermedia.Object, []any, string).
func parseXML(r io.Reader) (root string, tree any, err error) {
	p := xmlParser{d: xml.NewDecoder(r)}
	seen := false
	for {
		tok, err := p.d.Token()
		if err == io.EOF {
			if !seen {
				return "", nil, errors.New("no root element")
			}
			return root, tree, nil
		}
		if err != nil {
			return "", nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if seen {
				return "", nil, errors.New("data after the root element")
			}
			seen = true
			root, p.root = t.Name.Local, t.Name.Local
			if tree, err = p.element(t, root, false, 1); err != nil {
				return "", nil, err
			}
		case xml.CharData:
			if !isSpace(t, "\ufeff") {
				if seen {
					return "", nil, errors.New("data after the root element")
				}
				return "", nil, errors.New("text before the root element")
			}
		case xml.Directive:
			return "", nil, errors.New("DOCTYPE and other directives are not allowed")
		}
	}
}

// isSpace reports whether b is XML white space (plus extra characters).
func isSpace(b []byte, extra string) bool {
	return len(bytes.Trim(b, " \t\r\n"+extra)) == 0
}

type xmlParser struct {
	d        *xml.Decoder
	root     string
	elements int
}

type xmlChild struct {
	elem, name string // element name; member name (elem or the Entry key)
	keyed      bool
	value      any
}

// element reads the content of start, whose member name is name, up to its
// end; inLinks says it is a child of a Links element.
func (p *xmlParser) element(start xml.StartElement, name string, inLinks bool, depth int) (any, error) {
	if depth > maxXMLDepth {
		return nil, fmt.Errorf("nesting deeper than %d elements", maxXMLDepth)
	}
	if p.elements++; p.elements > maxXMLElements {
		return nil, fmt.Errorf("more than %d elements", maxXMLElements)
	}
	var text []byte
	var children []xmlChild
	for {
		tok, err := p.d.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			c := xmlChild{elem: t.Name.Local, name: t.Name.Local}
			if c.elem == entryName {
				for _, a := range t.Attr {
					if a.Name.Space == "" && a.Name.Local == "key" {
						c.name, c.keyed = a.Value, true
					}
				}
			}
			if c.value, err = p.element(t, c.name, name == "Links", depth+1); err != nil {
				return nil, err
			}
			children = append(children, c)
		case xml.EndElement:
			return p.build(start, name, inLinks, text, children)
		case xml.CharData:
			text = append(text, t...)
		case xml.Directive:
			return nil, errors.New("DOCTYPE and other directives are not allowed")
		}
	}
}

// build turns an element's content into its tree value.
func (p *xmlParser) build(start xml.StartElement, name string, inLinks bool, text []byte, children []xmlChild) (any, error) {
	if len(children) == 0 {
		if inLinks && isSpace(text, "") {
			var link hypermedia.Object
			for _, a := range linkAttrs {
				for _, at := range start.Attr {
					if at.Name.Space == "" && at.Name.Local == a && at.Value != "" {
						link = append(link, hypermedia.Field{Name: a, Value: at.Value})
						break
					}
				}
			}
			if link != nil {
				return link, nil
			}
		}
		return string(text), nil
	}
	if !isSpace(text, "") {
		return nil, fmt.Errorf("element %s mixes text and elements", start.Name.Local)
	}
	if first := children[0].elem; first == itemName(name, p.root) || first == itemFallback {
		arr := make([]any, 0, len(children))
		for _, c := range children {
			if c.elem != first || c.keyed {
				arr = nil
				break
			}
			arr = append(arr, c.value)
		}
		if arr != nil {
			return arr, nil
		}
	}
	obj := make(hypermedia.Object, len(children))
	for i, c := range children {
		obj[i] = hypermedia.Field{Name: c.name, Value: c.value}
	}
	return obj, nil
}

// jsonWriter writes a tree as JSON typed for a Go target: leaves become
// numbers or booleans where the target wants them.
type jsonWriter struct {
	b bytes.Buffer
}

func (j *jsonWriter) str(s string) {
	b, _ := json.Marshal(s) // a string always marshals
	j.b.Write(b)
}

// generic writes the tree with every leaf a string, for interface targets.
func (j *jsonWriter) generic(tree any) {
	switch x := tree.(type) {
	case hypermedia.Object:
		j.b.WriteByte('{')
		for i, f := range x {
			if i > 0 {
				j.b.WriteByte(',')
			}
			j.str(f.Name)
			j.b.WriteByte(':')
			j.generic(f.Value)
		}
		j.b.WriteByte('}')
	case []any:
		j.b.WriteByte('[')
		for i, it := range x {
			if i > 0 {
				j.b.WriteByte(',')
			}
			j.generic(it)
		}
		j.b.WriteByte(']')
	case string:
		j.str(x)
	default:
		j.b.WriteString("null")
	}
}

// unmarshals reports whether values of t decode themselves from JSON or text.
func unmarshals(t reflect.Type) bool {
	ju := reflect.TypeFor[json.Unmarshaler]()
	tu := reflect.TypeFor[encoding.TextUnmarshaler]()
	pt := reflect.PointerTo(t)
	return t.Implements(ju) || pt.Implements(ju) || t.Implements(tu) || pt.Implements(tu)
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// mismatch is the error of a value that does not fit the target at path.
func mismatch(path string, t reflect.Type) error {
	if path == "" {
		return fmt.Errorf("the root element cannot be read into %s", t)
	}
	return &XMLFieldError{Field: path}
}

// value writes tree for a target of type t at path; quoted is the ",string"
// tag option, which wants numbers and booleans inside a JSON string.
func (j *jsonWriter) value(tree any, t reflect.Type, path string, quoted bool) error {
	for t.Kind() == reflect.Pointer && !unmarshals(t) {
		t = t.Elem()
	}
	s, isText := tree.(string)
	if t.Kind() == reflect.Interface {
		j.generic(tree)
		return nil
	}
	if unmarshals(t) {
		switch {
		case !isText:
			j.generic(tree)
		case s == "":
			j.b.WriteString("null")
		default:
			// Try the text on a scratch value first: the target's own
			// errors (time.ParseError...) would not name the field.
			q, _ := json.Marshal(s)
			if json.Unmarshal(q, reflect.New(t).Interface()) != nil {
				return mismatch(path, t)
			}
			j.b.Write(q)
		}
		return nil
	}
	if isText && s == "" && t.Kind() != reflect.String {
		j.b.WriteString("null") // an empty element is no value
		return nil
	}
	scalar := func(lit string) {
		if quoted {
			j.str(lit)
		} else {
			j.b.WriteString(lit)
		}
	}
	trimmed := strings.TrimSpace(s)
	switch t.Kind() {
	case reflect.String:
		if !isText {
			return mismatch(path, t)
		}
		if quoted {
			b, _ := json.Marshal(s)
			s = string(b)
		}
		j.str(s)
	case reflect.Bool:
		switch {
		case isText && (trimmed == "true" || trimmed == "1"):
			scalar("true")
		case isText && (trimmed == "false" || trimmed == "0"):
			scalar("false")
		default:
			return mismatch(path, t)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(trimmed, 10, t.Bits())
		if !isText || err != nil {
			return mismatch(path, t)
		}
		scalar(strconv.FormatInt(n, 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n, err := strconv.ParseUint(trimmed, 10, t.Bits())
		if !isText || err != nil {
			return mismatch(path, t)
		}
		scalar(strconv.FormatUint(n, 10))
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(trimmed, t.Bits())
		if !isText || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return mismatch(path, t) // JSON has no NaN or infinities either
		}
		scalar(strconv.FormatFloat(f, 'g', -1, t.Bits()))
	case reflect.Struct:
		obj, ok := tree.(hypermedia.Object)
		if !ok {
			return mismatch(path, t)
		}
		fields := jsonFields(t)
		j.b.WriteByte('{')
		for i, m := range obj {
			f := lookupField(fields, m.Name)
			if f == nil {
				return &XMLFieldError{Field: joinPath(path, m.Name), Unknown: true}
			}
			if i > 0 {
				j.b.WriteByte(',')
			}
			j.str(f.name)
			j.b.WriteByte(':')
			if err := j.value(m.Value, f.typ, joinPath(path, f.name), f.quoted); err != nil {
				return err
			}
		}
		j.b.WriteByte('}')
	case reflect.Map:
		obj, ok := tree.(hypermedia.Object)
		if !ok {
			return mismatch(path, t)
		}
		j.b.WriteByte('{')
		for i, m := range obj {
			if i > 0 {
				j.b.WriteByte(',')
			}
			j.str(m.Name)
			j.b.WriteByte(':')
			if err := j.value(m.Value, t.Elem(), joinPath(path, m.Name), false); err != nil {
				return err
			}
		}
		j.b.WriteByte('}')
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 && !unmarshals(t.Elem()) {
			if !isText {
				return mismatch(path, t)
			}
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				return mismatch(path, t)
			}
			j.str(s) // []byte is base64 text in JSON too
			return nil
		}
		items, ok := tree.([]any)
		if obj, isObj := tree.(hypermedia.Object); isObj && sameNames(obj) {
			// Items named other than this encoder names them (or keyed
			// Entry elements) are still a list when the target is one.
			items, ok = make([]any, len(obj)), true
			for i, m := range obj {
				items[i] = m.Value
			}
		}
		if !ok {
			return mismatch(path, t)
		}
		j.b.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				j.b.WriteByte(',')
			}
			if err := j.value(it, t.Elem(), path, false); err != nil {
				return err
			}
		}
		j.b.WriteByte(']')
	default:
		return mismatch(path, t)
	}
	return nil
}

// sameNames reports whether all members of o have one name.
func sameNames(o hypermedia.Object) bool {
	for _, m := range o {
		if m.Name != o[0].Name {
			return false
		}
	}
	return true
}

// jsonField is a struct field as encoding/json sees it.
type jsonField struct {
	name   string
	typ    reflect.Type
	quoted bool
}

// jsonFields lists the fields encoding/json decodes into for struct type t,
// with embedded structs' fields promoted under its rules: the shallowest
// field of a name wins, then the tagged one; otherwise the name is ambiguous
// and dropped.
func jsonFields(t reflect.Type) []jsonField {
	type candidate struct {
		jsonField
		depth  int
		tagged bool
	}
	var all []candidate
	var walk func(t reflect.Type, depth int, visiting []reflect.Type)
	walk = func(t reflect.Type, depth int, visiting []reflect.Type) {
		for _, v := range visiting {
			if v == t {
				return
			}
		}
		visiting = append(visiting, t)
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if sf.Anonymous && name == "" && ft.Kind() == reflect.Struct {
				walk(ft, depth+1, visiting)
				continue
			}
			if !sf.IsExported() {
				continue
			}
			c := candidate{jsonField: jsonField{name: name, typ: sf.Type}, depth: depth, tagged: name != ""}
			if name == "" {
				c.name = sf.Name
			}
			for _, o := range strings.Split(opts, ",") {
				if o == "string" {
					switch ft.Kind() {
					case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
						reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
						reflect.Float32, reflect.Float64:
						c.quoted = true
					}
				}
			}
			all = append(all, c)
		}
	}
	walk(t, 0, nil)
	var out []jsonField
	for _, c := range all {
		dominant, rivals := true, 0
		for _, o := range all {
			if o.name != c.name {
				continue
			}
			switch {
			case o.depth < c.depth, o.depth == c.depth && o.tagged && !c.tagged:
				dominant = false
			case o.depth == c.depth && o.tagged == c.tagged:
				rivals++
			}
		}
		if dominant && rivals == 1 {
			out = append(out, c.jsonField)
		}
	}
	return out
}

// lookupField finds a member's field as encoding/json does: the exact
// name, else one equal under case folding.
func lookupField(fields []jsonField, name string) *jsonField {
	for i := range fields {
		if fields[i].name == name {
			return &fields[i]
		}
	}
	for i := range fields {
		if strings.EqualFold(fields[i].name, name) {
			return &fields[i]
		}
	}
	return nil
}
