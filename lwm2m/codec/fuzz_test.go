package codec

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/deviceserver/deviceserver/lwm2m"
)

const maxFuzzPayload = 512

// fuzzBases are the request paths the fuzzers decode at; the fuzzer picks
// one by index, so the order is part of the seed corpus and must not change.
func fuzzBases() []lwm2m.Path {
	return []lwm2m.Path{
		lwm2m.ObjectPath(3),         // 0
		lwm2m.InstancePath(3, 0),    // 1
		rp(3, 0, 6),                 // 2 multiple Integer
		rip(3, 0, 6, 1),             // 3
		rp(3, 0, 9),                 // 4 Integer
		rp(3, 0, 13),                // 5 Time
		lwm2m.ObjectPath(9000),      // 6 every type
		lwm2m.InstancePath(9000, 0), // 7
		rp(3303, 0, 5700),           // 8 Float
		{},                          // 9 root
		lwm2m.ObjectPath(66),        // 10
		rp(5, 0, 0),                 // 11 Opaque
		rp(1, 0, 6),                 // 12 Boolean
		rp(9000, 0, 2),              // 13 UnsignedInteger
		rp(66, 0, 2),                // 14 ObjectLink
		rp(3, 0, 0),                 // 15 String
	}
}

// fuzzDecode checks that decoding never panics, fails with a prefixed
// error, and that whatever decodes re-encodes to a payload decoding to the
// same records (TLV output is canonically sorted, so order is ignored).
func fuzzDecode(t *testing.T, f lwm2m.ContentFormat, r lwm2m.Resolver, payload []byte, sel uint8, typed bool) {
	// Long inputs reach no code short ones do not, but Go's minimizer needs
	// quadratic time on them (a 1.5 kB TLV took 23 s), stalling short runs.
	if len(payload) > maxFuzzPayload {
		return
	}
	bases := fuzzBases()
	base := bases[int(sel)%len(bases)]
	if !typed {
		r = nil
	}
	recs, err := Decode(f, base, payload, r)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "codec: decode ") {
			t.Fatalf("error without operation prefix: %v", err)
		}
		return
	}
	for _, rec := range recs {
		if !base.Contains(rec.Path) || rec.Path.Depth < lwm2m.DepthResource {
			t.Fatalf("Decode at %s returned record %s", base, rec.Path)
		}
	}
	b, err := Encode(f, base, recs, r)
	if err != nil {
		t.Fatalf("Decode(%q) at %s gave%s\nbut Encode failed: %v", payload, base, dumpRecords(recs), err)
	}
	again, err := Decode(f, base, b, r)
	if err != nil {
		t.Fatalf("Decode(Encode) of %q at %s failed: %v (re-encoded %q)", payload, base, err, b)
	}
	recs, again = slices.Clone(recs), slices.Clone(again)
	sortRecords(recs)
	sortRecords(again)
	if !recordsEqual(recs, again) {
		t.Fatalf("round trip of %q at %s (re-encoded %q)\n got:%s\nwant:%s", payload, base, b, dumpRecords(again), dumpRecords(recs))
	}
}

func addGoldenSeeds(f *testing.F, name string, sel uint8, hexFile bool) {
	f.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		f.Fatal(err)
	}
	if hexFile {
		if raw, err = parseHexText(string(raw)); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(raw, sel, true)
	f.Add(raw, sel, false)
}

func FuzzDecodeTLV(f *testing.F) {
	addGoldenSeeds(f, "testdata/tlv/device_3_0.hex", 1, true)
	addGoldenSeeds(f, "testdata/tlv/device_3.hex", 0, true)
	addGoldenSeeds(f, "testdata/tlv/objlnk_66.hex", 10, true)
	f.Add([]byte{0xC1, 0x09, 0x64}, uint8(4), true)
	f.Add([]byte{0x86, 0x06, 0x41, 0x00, 0x01, 0x41, 0x01, 0x05}, uint8(2), true)
	f.Add([]byte{0x41, 0x01, 0x05}, uint8(3), true)
	f.Add([]byte{0xE4, 0x16, 0x44, 0x41, 0xB4, 0x00, 0x00}, uint8(8), true)
	r := testResolver()
	f.Fuzz(func(t *testing.T, payload []byte, sel uint8, typed bool) {
		fuzzDecode(t, lwm2m.FormatTLV, r, payload, sel, typed)
	})
}

func FuzzDecodeSenMLJSON(f *testing.F) {
	addGoldenSeeds(f, "testdata/senml/device_3_0.json", 1, false)
	addGoldenSeeds(f, "testdata/senml/objlnk_66.json", 10, false)
	f.Add([]byte(`[{"bn":"/3303/0/5700","bt":1367491215,"v":22.4},{"t":5,"v":22.9}]`), uint8(8), true)
	f.Add([]byte(`[{"bn":"/9000/0/","n":"5","vd":"AQI"},{"n":"6","v":-1},{"n":"7","vlo":"1:2"},{"n":"4","vb":true},{"n":"2","v":1e3}]`), uint8(7), true)
	f.Add([]byte(`[{"bn":"/3/0/","bv":5,"n":"9","v":1},{"n":"13","v":1.5e9}]`), uint8(9), true)
	r := testResolver()
	f.Fuzz(func(t *testing.T, payload []byte, sel uint8, typed bool) {
		fuzzDecode(t, lwm2m.FormatSenMLJSON, r, payload, sel, typed)
	})
}

func FuzzDecodeText(f *testing.F) {
	for sel, s := range map[uint8]string{4: "100", 5: "1367491215", 8: "-22.5e3", 11: "AQID", 12: "1", 13: "18446744073709551615", 14: "67:0", 15: "Open Mobile Alliance", 3: "5"} {
		f.Add([]byte(s), sel, true)
		f.Add([]byte(s), sel, false)
	}
	r := testResolver()
	f.Fuzz(func(t *testing.T, payload []byte, sel uint8, typed bool) {
		fuzzDecode(t, lwm2m.FormatText, r, payload, sel, typed)
	})
}

func FuzzDecodeOpaque(f *testing.F) {
	f.Add([]byte{0, 1, 2}, uint8(11), true)
	f.Add([]byte{}, uint8(4), false)
	r := testResolver()
	f.Fuzz(func(t *testing.T, payload []byte, sel uint8, typed bool) {
		fuzzDecode(t, lwm2m.FormatOpaque, r, payload, sel, typed)
	})
}
