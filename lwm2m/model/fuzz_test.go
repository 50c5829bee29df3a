package model

import (
	"bytes"
	"testing"
)

// FuzzParseDDF checks that ParseDDF never panics and that whatever it
// accepts satisfies the invariants the registry and codecs rely on. Seeds
// live in testdata/fuzz/FuzzParseDDF.
func FuzzParseDDF(f *testing.F) {
	f.Add([]byte(ddfDoc("3", item("1", "A", "RW", "Integer"))))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := ParseDDF(bytes.NewReader(data))
		if err != nil {
			if objs != nil {
				t.Fatalf("objects returned with error %v", err)
			}
			return
		}
		if len(objs) == 0 {
			t.Fatal("no objects and no error")
		}
		for _, o := range objs {
			checkObject(t, o)
		}
	})
}
