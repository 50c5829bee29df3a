package codec

import (
	"bytes"
	"fmt"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// Opaque (content format 42) is the raw bytes of one Opaque resource, as
// used for firmware images and certificates.

func decodeOpaque(base lwm2m.Path, payload []byte, r lwm2m.Resolver) ([]lwm2m.Record, error) {
	if err := needValuePath(base); err != nil {
		return nil, err
	}
	ri := lookup(r, base)
	if err := checkShape(ri, base); err != nil {
		return nil, err
	}
	if ri.known && ri.typ != lwm2m.TypeOpaque {
		return nil, fmt.Errorf("%s is a %s resource, the opaque format carries only Opaque", base, ri.typ)
	}
	return []lwm2m.Record{{Path: base, Value: cloneBytes(payload)}}, nil
}

func encodeOpaque(base lwm2m.Path, recs []lwm2m.Record, r lwm2m.Resolver) ([]byte, error) {
	rec, _, err := singleRecord(base, recs, r)
	if err != nil {
		return nil, err
	}
	b, ok := rec.Value.([]byte)
	if !ok {
		return nil, fmt.Errorf("%s: value of Go type %T is not Opaque", base, rec.Value)
	}
	return bytes.Clone(b), nil
}
