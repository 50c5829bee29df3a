package codec

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// OMA TLV (content formats 11542 and legacy 1542, LwM2M 1.1 §7.4.3).
// A TLV's first byte holds, from the top: the kind (2 bits), whether the
// identifier is 16-bit (1 bit), the size of the length field (2 bits) and,
// when that size is 0, the length itself (3 bits).

// TLV kinds (bits 7-6 of the type byte).
const (
	tlvObjectInstance   = 0b00
	tlvResourceInstance = 0b01
	tlvMultipleResource = 0b10
	tlvResource         = 0b11
)

// tlvMaxLen is the largest value the 24-bit length field can describe.
const tlvMaxLen = 1<<24 - 1

type tlv struct {
	kind  byte
	id    uint16
	value []byte
}

func tlvKindName(k byte) string {
	switch k {
	case tlvObjectInstance:
		return "object instance"
	case tlvResourceInstance:
		return "resource instance"
	case tlvMultipleResource:
		return "multiple resource"
	}
	return "resource"
}

// parseTLVs splits b into a sequence of TLVs without descending into them.
func parseTLVs(b []byte) ([]tlv, error) {
	var out []tlv
	for off := 0; off < len(b); {
		start := off
		h := b[off]
		off++
		idLen := 1
		if h&0x20 != 0 {
			idLen = 2
		}
		lenLen := int(h>>3) & 3
		if len(b)-off < idLen+lenLen {
			return nil, fmt.Errorf("TLV at offset %d: header truncated", start)
		}
		var id uint16
		if idLen == 1 {
			id = uint16(b[off])
		} else {
			id = binary.BigEndian.Uint16(b[off:])
		}
		off += idLen
		if id == math.MaxUint16 {
			return nil, fmt.Errorf("TLV at offset %d: identifier 65535 is reserved", start)
		}
		n := int(h & 7)
		if lenLen > 0 {
			n = 0
			for _, c := range b[off : off+lenLen] {
				n = n<<8 | int(c)
			}
			off += lenLen
		}
		if len(b)-off < n {
			return nil, fmt.Errorf("TLV at offset %d: value of %d bytes overruns the payload (%d left)", start, n, len(b)-off)
		}
		out = append(out, tlv{kind: h >> 6, id: id, value: b[off : off+n]})
		off += n
	}
	return out, nil
}

type tlvDecoder struct {
	r    lwm2m.Resolver
	recs []lwm2m.Record
}

func decodeTLV(base lwm2m.Path, payload []byte, r lwm2m.Resolver) ([]lwm2m.Record, error) {
	top, err := parseTLVs(payload)
	if err != nil {
		return nil, err
	}
	d := &tlvDecoder{r: r}
	switch base.Depth {
	case lwm2m.DepthObject:
		err = d.object(base, top)
	case lwm2m.DepthInstance:
		// A Create or a Write on an instance may arrive wrapped in its Object
		// Instance TLV; unwrap it when the id matches.
		if len(top) == 1 && top[0].kind == tlvObjectInstance {
			if top[0].id != base.Instance {
				return nil, fmt.Errorf("object instance TLV %d does not match %s", top[0].id, base)
			}
			if top, err = parseTLVs(top[0].value); err != nil {
				return nil, fmt.Errorf("object instance %d: %w", base.Instance, err)
			}
		}
		err = d.instance(base, top)
	case lwm2m.DepthResource:
		err = d.resourceAt(base, top)
	case lwm2m.DepthResourceInstance:
		if len(top) != 1 || top[0].kind != tlvResourceInstance || top[0].id != base.ResourceInstance {
			return nil, fmt.Errorf("%s needs exactly one resource instance TLV with id %d", base, base.ResourceInstance)
		}
		err = d.value(base, top[0].value)
	default:
		return nil, fmt.Errorf("path %s: TLV needs an object, instance, resource or resource-instance path", base)
	}
	if err != nil {
		return nil, err
	}
	return d.recs, nil
}

// object decodes the answer to a request on an object: a sequence of
// Object Instance TLVs. Some clients omit the wrapper for single-instance
// objects and send the resources of instance 0 directly; that form is
// accepted when no TLV of the sequence is an Object Instance.
func (d *tlvDecoder) object(base lwm2m.Path, top []tlv) error {
	if len(top) > 0 && top[0].kind != tlvObjectInstance {
		return d.instance(lwm2m.InstancePath(base.Object, 0), top)
	}
	seen := make(map[uint16]bool, len(top))
	for _, t := range top {
		if t.kind != tlvObjectInstance {
			return fmt.Errorf("%s: %s TLV %d among object instance TLVs", base, tlvKindName(t.kind), t.id)
		}
		if seen[t.id] {
			return fmt.Errorf("%s: object instance %d appears twice", base, t.id)
		}
		seen[t.id] = true
		children, err := parseTLVs(t.value)
		if err != nil {
			return fmt.Errorf("object instance %d: %w", t.id, err)
		}
		if err := d.instance(lwm2m.InstancePath(base.Object, t.id), children); err != nil {
			return err
		}
	}
	return nil
}

// instance decodes the resources of one object instance.
func (d *tlvDecoder) instance(ip lwm2m.Path, tlvs []tlv) error {
	seen := make(map[uint16]bool, len(tlvs))
	for _, t := range tlvs {
		if t.kind != tlvResource && t.kind != tlvMultipleResource {
			return fmt.Errorf("%s: unexpected %s TLV %d among resources", ip, tlvKindName(t.kind), t.id)
		}
		if seen[t.id] {
			return fmt.Errorf("%s: resource %d appears twice", ip, t.id)
		}
		seen[t.id] = true
		if err := d.resource(lwm2m.ResourcePath(ip.Object, ip.Instance, t.id), t); err != nil {
			return err
		}
	}
	return nil
}

// resourceAt decodes the answer to a request on one resource: a Resource
// TLV or a Multiple Resource TLV with that id, or (as some clients answer
// for multiple resources) the bare Resource Instance TLVs.
func (d *tlvDecoder) resourceAt(rp lwm2m.Path, top []tlv) error {
	if len(top) == 0 {
		return fmt.Errorf("%s: empty payload", rp)
	}
	if top[0].kind == tlvResourceInstance {
		return d.multiple(rp, top)
	}
	if len(top) != 1 {
		return fmt.Errorf("%s: want one resource TLV, got %d TLVs", rp, len(top))
	}
	t := top[0]
	if t.kind == tlvObjectInstance {
		return fmt.Errorf("%s: unexpected object instance TLV", rp)
	}
	if t.id != rp.Resource {
		return fmt.Errorf("%s: %s TLV has id %d", rp, tlvKindName(t.kind), t.id)
	}
	return d.resource(rp, t)
}

// resource decodes a Resource or Multiple Resource TLV at rp.
func (d *tlvDecoder) resource(rp lwm2m.Path, t tlv) error {
	if t.kind == tlvResource {
		return d.value(rp, t.value)
	}
	children, err := parseTLVs(t.value)
	if err != nil {
		return fmt.Errorf("%s: %w", rp, err)
	}
	return d.multiple(rp, children)
}

// multiple decodes the Resource Instance TLVs of a multiple resource.
func (d *tlvDecoder) multiple(rp lwm2m.Path, tlvs []tlv) error {
	if err := checkShape(lookup(d.r, rp), lwm2m.ResourceInstancePath(rp.Object, rp.Instance, rp.Resource, 0)); err != nil {
		return err
	}
	seen := make(map[uint16]bool, len(tlvs))
	for _, t := range tlvs {
		if t.kind != tlvResourceInstance {
			return fmt.Errorf("%s: unexpected %s TLV %d among resource instances", rp, tlvKindName(t.kind), t.id)
		}
		if seen[t.id] {
			return fmt.Errorf("%s: resource instance %d appears twice", rp, t.id)
		}
		seen[t.id] = true
		if err := d.value(lwm2m.ResourceInstancePath(rp.Object, rp.Instance, rp.Resource, t.id), t.value); err != nil {
			return err
		}
	}
	return nil
}

func (d *tlvDecoder) value(p lwm2m.Path, b []byte) error {
	ri := lookup(d.r, p)
	if err := checkShape(ri, p); err != nil {
		return err
	}
	v, err := tlvValue(ri, b)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	d.recs = append(d.recs, lwm2m.Record{Path: p, Value: v})
	return nil
}

func tlvValue(ri resInfo, b []byte) (any, error) {
	if !ri.known {
		return cloneBytes(b), nil
	}
	switch ri.typ {
	case lwm2m.TypeString, lwm2m.TypeCoreLink:
		return string(b), nil
	case lwm2m.TypeOpaque:
		return cloneBytes(b), nil
	case lwm2m.TypeInteger:
		return tlvInt(b)
	case lwm2m.TypeTime:
		n, err := tlvInt(b)
		if err != nil {
			return nil, err
		}
		return time.Unix(n, 0).UTC(), nil
	case lwm2m.TypeUnsignedInteger:
		switch len(b) {
		case 1:
			return uint64(b[0]), nil
		case 2:
			return uint64(binary.BigEndian.Uint16(b)), nil
		case 4:
			return uint64(binary.BigEndian.Uint32(b)), nil
		case 8:
			return binary.BigEndian.Uint64(b), nil
		}
		return nil, fmt.Errorf("unsigned integer of %d bytes, want 1, 2, 4 or 8", len(b))
	case lwm2m.TypeFloat:
		switch len(b) {
		case 4:
			return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
		case 8:
			return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
		}
		return nil, fmt.Errorf("float of %d bytes, want 4 or 8", len(b))
	case lwm2m.TypeBoolean:
		if len(b) != 1 || b[0] > 1 {
			return nil, fmt.Errorf("boolean % x, want one byte 0 or 1", b)
		}
		return b[0] == 1, nil
	case lwm2m.TypeObjectLink:
		if len(b) != 4 {
			return nil, fmt.Errorf("object link of %d bytes, want 4", len(b))
		}
		return lwm2m.ObjectLink{Object: binary.BigEndian.Uint16(b), Instance: binary.BigEndian.Uint16(b[2:])}, nil
	}
	return nil, fmt.Errorf("resource of type %s carries no value", ri.typ)
}

func tlvInt(b []byte) (int64, error) {
	switch len(b) {
	case 1:
		return int64(int8(b[0])), nil
	case 2:
		return int64(int16(binary.BigEndian.Uint16(b))), nil
	case 4:
		return int64(int32(binary.BigEndian.Uint32(b))), nil
	case 8:
		return int64(binary.BigEndian.Uint64(b)), nil
	}
	return 0, fmt.Errorf("integer of %d bytes, want 1, 2, 4 or 8", len(b))
}

func cloneBytes(b []byte) []byte { return append([]byte{}, b...) }

func encodeTLV(base lwm2m.Path, recs []lwm2m.Record, r lwm2m.Resolver) ([]byte, error) {
	if base.Depth < lwm2m.DepthObject {
		return nil, fmt.Errorf("path %s: TLV needs an object, instance, resource or resource-instance path", base)
	}
	recs, err := prepareRecords(base, recs, r)
	if err != nil {
		return nil, err
	}
	// TLV nests resource instances in their resource and resources in their
	// instance, so records are grouped; sorting gives a canonical output.
	sortRecords(recs)
	for i := 1; i < len(recs); i++ {
		a, b := recs[i-1].Path, recs[i].Path
		if a == b {
			return nil, fmt.Errorf("record %s appears twice", b)
		}
		if a.Depth == lwm2m.DepthResource && b.Depth == lwm2m.DepthResourceInstance && a == b.Parent() {
			return nil, fmt.Errorf("resource %s has both a value and resource instances", a)
		}
	}
	switch base.Depth {
	case lwm2m.DepthObject:
		var out []byte
		for len(recs) > 0 {
			n := 1
			for n < len(recs) && recs[n].Path.Instance == recs[0].Path.Instance {
				n++
			}
			body, err := appendResources(nil, recs[:n])
			if err != nil {
				return nil, err
			}
			if out, err = appendTLV(out, tlvObjectInstance, recs[0].Path.Instance, body); err != nil {
				return nil, fmt.Errorf("object instance %d: %w", recs[0].Path.Instance, err)
			}
			recs = recs[n:]
		}
		return out, nil
	case lwm2m.DepthInstance:
		return appendResources(nil, recs)
	case lwm2m.DepthResource:
		if len(recs) == 0 {
			// No instances: only a Multiple Resource TLV can say "empty".
			if ri := lookup(r, base); ri.known && !ri.multiple {
				return nil, fmt.Errorf("no record for single resource %s", base)
			}
			return appendTLV(nil, tlvMultipleResource, base.Resource, nil)
		}
		return appendResources(nil, recs)
	default:
		if len(recs) != 1 {
			return nil, fmt.Errorf("need exactly one record at %s, got %d", base, len(recs))
		}
		return appendValueTLV(nil, tlvResourceInstance, base.ResourceInstance, recs[0])
	}
}

// appendResources writes sorted records of one instance as Resource and
// Multiple Resource TLVs.
func appendResources(out []byte, recs []lwm2m.Record) ([]byte, error) {
	var err error
	for len(recs) > 0 {
		p := recs[0].Path
		if p.Depth == lwm2m.DepthResource {
			if out, err = appendValueTLV(out, tlvResource, p.Resource, recs[0]); err != nil {
				return nil, err
			}
			recs = recs[1:]
			continue
		}
		n := 1
		for n < len(recs) && recs[n].Path.Resource == p.Resource {
			n++
		}
		var body []byte
		for _, rec := range recs[:n] {
			if body, err = appendValueTLV(body, tlvResourceInstance, rec.Path.ResourceInstance, rec); err != nil {
				return nil, err
			}
		}
		if out, err = appendTLV(out, tlvMultipleResource, p.Resource, body); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Parent(), err)
		}
		recs = recs[n:]
	}
	return out, nil
}

func appendValueTLV(out []byte, kind byte, id uint16, rec lwm2m.Record) ([]byte, error) {
	v, err := tlvBytes(rec.Value)
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", rec.Path, err)
	}
	if out, err = appendTLV(out, kind, id, v); err != nil {
		return nil, fmt.Errorf("record %s: %w", rec.Path, err)
	}
	return out, nil
}

func appendTLV(out []byte, kind byte, id uint16, v []byte) ([]byte, error) {
	n := len(v)
	if n > tlvMaxLen {
		return nil, fmt.Errorf("value of %d bytes exceeds the TLV maximum of %d", n, tlvMaxLen)
	}
	h := kind << 6
	if id > math.MaxUint8 {
		h |= 0x20
	}
	var lenBytes []byte
	switch {
	case n < 8:
		h |= byte(n)
	case n <= math.MaxUint8:
		h |= 1 << 3
		lenBytes = []byte{byte(n)}
	case n <= math.MaxUint16:
		h |= 2 << 3
		lenBytes = []byte{byte(n >> 8), byte(n)}
	default:
		h |= 3 << 3
		lenBytes = []byte{byte(n >> 16), byte(n >> 8), byte(n)}
	}
	out = append(out, h)
	if id > math.MaxUint8 {
		out = append(out, byte(id>>8))
	}
	out = append(out, byte(id))
	out = append(out, lenBytes...)
	return append(out, v...), nil
}

// tlvBytes encodes a normalised value; integers take the smallest of the
// 1, 2, 4 and 8 byte widths, floats 4 bytes when that is lossless.
func tlvBytes(v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return []byte(x), nil
	case []byte:
		return x, nil
	case int64:
		return intBytes(x), nil
	case time.Time:
		return intBytes(x.Unix()), nil
	case uint64:
		switch {
		case x <= math.MaxUint8:
			return []byte{byte(x)}, nil
		case x <= math.MaxUint16:
			return binary.BigEndian.AppendUint16(nil, uint16(x)), nil
		case x <= math.MaxUint32:
			return binary.BigEndian.AppendUint32(nil, uint32(x)), nil
		}
		return binary.BigEndian.AppendUint64(nil, x), nil
	case float64:
		if f := float32(x); float64(f) == x {
			return binary.BigEndian.AppendUint32(nil, math.Float32bits(f)), nil
		}
		return binary.BigEndian.AppendUint64(nil, math.Float64bits(x)), nil
	case bool:
		if x {
			return []byte{1}, nil
		}
		return []byte{0}, nil
	case lwm2m.ObjectLink:
		return []byte{byte(x.Object >> 8), byte(x.Object), byte(x.Instance >> 8), byte(x.Instance)}, nil
	}
	return nil, fmt.Errorf("value of Go type %T has no TLV form", v)
}

func intBytes(x int64) []byte {
	switch {
	case x >= math.MinInt8 && x <= math.MaxInt8:
		return []byte{byte(x)}
	case x >= math.MinInt16 && x <= math.MaxInt16:
		return binary.BigEndian.AppendUint16(nil, uint16(x))
	case x >= math.MinInt32 && x <= math.MaxInt32:
		return binary.BigEndian.AppendUint32(nil, uint32(x))
	}
	return binary.BigEndian.AppendUint64(nil, uint64(x))
}
