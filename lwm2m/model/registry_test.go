package model

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/deviceserver/deviceserver/lwm2m"
)

func TestBuiltins(t *testing.T) {
	objs, err := Builtins()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id      uint16
		name    string
		version string
	}{
		{0, "LWM2M Security", "1.2"},
		{1, "LwM2M Server", "1.1"},
		{2, "LwM2M Access Control", "1.1"},
		{3, "Device", "1.2"},
		{4, "Connectivity Monitoring", "1.3"},
		{5, "Firmware Update", "1.1"},
		{6, "Location", "1.0"},
		{7, "Connectivity Statistics", "1.0"},
		{3303, "Temperature", "1.1"},
		{3304, "Humidity", "1.1"},
		{3311, "Light Control", "1.0"},
		{3316, "Voltage", "1.1"},
		{3323, "Pressure", "1.1"},
		{3336, "Location", "2.0"},
		{3342, "On/Off switch", "1.1"},
		{3347, "Push button", "1.1"},
	}
	if len(objs) != len(tests) {
		t.Fatalf("got %d built-ins, want %d", len(objs), len(tests))
	}
	for i, tc := range tests {
		o := objs[i]
		if o.ID != tc.id || o.Name != tc.name || o.Version != tc.version || len(o.Resources) == 0 {
			t.Errorf("built-in %d: got %d %q %q (%d resources), want %d %q %q", i, o.ID, o.Name, o.Version, len(o.Resources), tc.id, tc.name, tc.version)
		}
		checkObject(t, o)
	}
}

// TestBuiltinsUnmodified guards the promise in ddf/README.md that the
// shipped files are byte-for-byte the OMA ones.
func TestBuiltinsUnmodified(t *testing.T) {
	files, err := filepath.Glob("ddf/*.xml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no built-in files: %v", err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		ours, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, dir := range []string{"core", "registry"} {
			theirs, err := os.ReadFile(filepath.Join(omaModels, dir, base))
			if err == nil {
				found = true
				if string(ours) != string(theirs) {
					t.Errorf("%s differs from %s/%s", f, dir, base)
				}
			}
		}
		if !found {
			t.Errorf("%s is not in the OMA mirror", f)
		}
	}
}

func TestLoadDir(t *testing.T) {
	valid := ddfDoc("30000", item("1", "A", "R", "String"))
	tests := []struct {
		name    string
		files   map[string]string
		wantIDs []uint16
		wantErr string
	}{
		{"empty", map[string]string{}, nil, ""},
		{"sorted, non-xml ignored", map[string]string{
			"b.xml":      valid,
			"a.XML":      ddfDoc("20000"),
			"notes.txt":  "not a DDF",
			"sub/c.xml":  ddfDoc("10000"),
			"README.md":  "# models",
			"extra.xml~": "backup",
		}, []uint16{20000, 30000}, ""},
		{"bad file named", map[string]string{"good.xml": valid, "broken.xml": ddfDoc("1", item("1", "A", "R", "Double"))},
			nil, "broken.xml: parse DDF: object 1: resource 1: lwm2m: unknown data type"},
		{"same version twice", map[string]string{"a.xml": valid, "b.xml": valid},
			nil, "b.xml: object 30000 version 1.0 already defined in a.xml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tc.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			objs, err := LoadDir(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), "model: load dir ") || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []uint16
			for _, o := range objs {
				ids = append(ids, o.ID)
			}
			if !slices.Equal(ids, tc.wantIDs) {
				t.Errorf("IDs %v, want %v", ids, tc.wantIDs)
			}
		})
	}
}

func TestLoadDirMissing(t *testing.T) {
	_, err := LoadDir(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "model: load dir") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("error %v, want one naming the folder", err)
	}
}

func TestLoadDirOMAFolders(t *testing.T) {
	// The mirror keeps older versions beside the newest ("3-1_0.xml" next to
	// "3.xml"): the newest ObjectVersion must win.
	for _, folder := range []string{"core", "registry"} {
		objs, err := LoadDir(filepath.Join(omaModels, folder))
		if err != nil {
			t.Fatalf("%s: %v", folder, err)
		}
		for _, o := range objs {
			if o.ID == 3 && o.Version != "1.2" {
				t.Errorf("%s: object 3 version %s, want the newest 1.2", folder, o.Version)
			}
		}
		t.Logf("%s: %d objects", folder, len(objs))
	}
	if compareVersions("1.10", "1.9") <= 0 || compareVersions("2", "1.9") <= 0 || compareVersions("1.0", "1") != 0 {
		t.Error("compareVersions is not numeric")
	}
}

// testObject is a small custom definition of id with one resource 1 of type typ.
func testObject(id uint16, name string, typ lwm2m.DataType, multiple bool) *Object {
	return &Object{ID: id, Name: name, Resources: []*Resource{
		{ID: 1, Name: "R", SerialisationName: "R", Operations: "RW", Type: typ, Multiple: multiple},
	}}
}

func newTestRegistry(t *testing.T) *Registry {
	t.Helper()
	builtins, err := Builtins()
	if err != nil {
		t.Fatal(err)
	}
	return NewRegistry(builtins)
}

func TestRegistryOrgIsolation(t *testing.T) {
	r := newTestRegistry(t)
	r.Put("acme", testObject(3, "Acme Device", lwm2m.TypeFloat, false))
	r.Put("acme", testObject(20000, "Acme Widget", lwm2m.TypeString, true))

	tests := []struct {
		org      string
		id       uint16
		wantName string
		wantOK   bool
		custom   bool
	}{
		{"acme", 3, "Acme Device", true, true},
		{"acme", 20000, "Acme Widget", true, true},
		{"acme", 4, "Connectivity Monitoring", true, false},
		{"other", 3, "Device", true, false},
		{"other", 20000, "", false, false},
		{"", 3, "Device", true, false},
		{"acme", 9999, "", false, false},
	}
	for _, tc := range tests {
		o, ok := r.Lookup(tc.org, tc.id)
		if ok != tc.wantOK || (ok && o.Name != tc.wantName) {
			t.Errorf("Lookup(%q, %d) = %v, %v; want %q, %v", tc.org, tc.id, o, ok, tc.wantName, tc.wantOK)
		}
		if got := r.Custom(tc.org, tc.id); got != tc.custom {
			t.Errorf("Custom(%q, %d) = %v, want %v", tc.org, tc.id, got, tc.custom)
		}
	}

	for _, tc := range []struct {
		id   uint16
		want bool
	}{{3, true}, {3303, true}, {20000, false}, {9999, false}} {
		if got := r.IsBuiltin(tc.id); got != tc.want {
			t.Errorf("IsBuiltin(%d) = %v, want %v", tc.id, got, tc.want)
		}
	}

	listIDs := func(org string) ([]uint16, map[uint16]string) {
		var ids []uint16
		names := map[uint16]string{}
		for _, o := range r.List(org) {
			ids = append(ids, o.ID)
			names[o.ID] = o.Name
		}
		return ids, names
	}
	acme, acmeNames := listIDs("acme")
	other, otherNames := listIDs("other")
	if !slices.IsSorted(acme) || !slices.IsSorted(other) {
		t.Errorf("List not sorted: %v / %v", acme, other)
	}
	if len(acme) != len(other)+1 || !slices.Contains(acme, 20000) || slices.Contains(other, 20000) {
		t.Errorf("List: acme %v, other %v", acme, other)
	}
	if acmeNames[3] != "Acme Device" || otherNames[3] != "Device" {
		t.Errorf("List object 3: acme %q, other %q", acmeNames[3], otherNames[3])
	}
}

func TestRegistryDelete(t *testing.T) {
	r := newTestRegistry(t)
	r.Put("acme", testObject(3, "Acme Device", lwm2m.TypeFloat, false))

	tests := []struct {
		org      string
		id       uint16
		want     bool
		thenName string // object 3 as the org sees it afterwards
	}{
		{"other", 3, false, "Acme Device"}, // another org cannot delete acme's override
		{"acme", 4, false, "Acme Device"},  // built-ins cannot be deleted
		{"acme", 3, true, "Device"},        // the built-in shows through again
		{"acme", 3, false, "Device"},       // nothing left to delete
	}
	for i, tc := range tests {
		if got := r.Delete(tc.org, tc.id); got != tc.want {
			t.Errorf("step %d: Delete(%q, %d) = %v, want %v", i, tc.org, tc.id, got, tc.want)
		}
		if o, ok := r.Lookup("acme", 3); !ok || o.Name != tc.thenName {
			t.Errorf("step %d: acme sees object 3 as %v, want %q", i, o, tc.thenName)
		}
		if !r.IsBuiltin(4) {
			t.Errorf("step %d: built-in 4 gone", i)
		}
	}
}

func TestRegistryResolver(t *testing.T) {
	r := newTestRegistry(t)
	r.Put("acme", testObject(3, "Acme Device", lwm2m.TypeFloat, true))
	acme, other := r.Resolver("acme"), r.Resolver("other")

	tests := []struct {
		name         string
		res          lwm2m.Resolver
		object, id   uint16
		wantType     lwm2m.DataType
		wantMultiple bool
		wantOK       bool
	}{
		{"built-in integer", other, 3, 9, lwm2m.TypeInteger, false, true},
		{"built-in multiple", other, 3, 11, lwm2m.TypeInteger, true, true},
		{"built-in time", other, 3, 13, lwm2m.TypeTime, false, true},
		{"built-in objlnk", other, 3, 22, lwm2m.TypeObjectLink, true, true},
		{"built-in execute", other, 3, 4, lwm2m.TypeNone, false, true},
		{"built-in float", other, 3303, 5700, lwm2m.TypeFloat, false, true},
		{"built-in string", other, 1, 7, lwm2m.TypeString, false, true},
		{"built-in unsigned", acme, 0, 13, lwm2m.TypeUnsignedInteger, false, true},
		{"override", acme, 3, 1, lwm2m.TypeFloat, true, true},
		{"override hides built-in resources", acme, 3, 9, lwm2m.TypeNone, false, false},
		{"unknown resource", other, 3, 9999, lwm2m.TypeNone, false, false},
		{"unknown object", other, 9999, 0, lwm2m.TypeNone, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			typ, multiple, ok := tc.res.ResourceType(tc.object, tc.id)
			if typ != tc.wantType || multiple != tc.wantMultiple || ok != tc.wantOK {
				t.Errorf("ResourceType(%d, %d) = %v, %v, %v; want %v, %v, %v", tc.object, tc.id, typ, multiple, ok, tc.wantType, tc.wantMultiple, tc.wantOK)
			}
		})
	}

	// The resolver follows later changes to the registry.
	r.Delete("acme", 3)
	if typ, _, ok := acme.ResourceType(3, 9); !ok || typ != lwm2m.TypeInteger {
		t.Errorf("after Delete: %v, %v; want Integer", typ, ok)
	}
}

func TestRegistryPutCopies(t *testing.T) {
	r := NewRegistry(nil)
	o := testObject(20000, "Widget", lwm2m.TypeString, false)
	r.Put("acme", o)
	o.Name = "changed"
	o.Resources[0].Type = lwm2m.TypeBoolean
	got, ok := r.Lookup("acme", 20000)
	if !ok || got.Name != "Widget" || got.Resources[0].Type != lwm2m.TypeString {
		t.Errorf("registry shares the caller's object: %+v", got)
	}
	r.Put("acme", nil) // ignored rather than stored as a nil definition
	if len(r.List("acme")) != 1 {
		t.Errorf("List after Put(nil): %v", r.List("acme"))
	}
}

// TestRegistryConcurrent exercises the locking; it is most useful under -race.
func TestRegistryConcurrent(t *testing.T) {
	r := newTestRegistry(t)
	var wg sync.WaitGroup
	for g := range 8 {
		org := fmt.Sprintf("org%d", g%2)
		wg.Go(func() {
			res := r.Resolver(org)
			for i := range 200 {
				id := uint16(20000 + i%5)
				r.Put(org, testObject(id, "X", lwm2m.TypeInteger, false))
				r.Lookup(org, id)
				r.List(org)
				res.ResourceType(id, 1)
				r.Custom(org, id)
				r.Delete(org, id)
			}
		})
	}
	wg.Wait()
}
