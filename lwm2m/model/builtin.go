package model

import (
	"cmp"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// builtinFS holds the unmodified OMA DDF files the server ships with; see
// ddf/README.md for their origin and licence.
//
//go:embed ddf/*.xml
var builtinFS embed.FS

// Builtins parses the embedded built-in object definitions, sorted by ID.
func Builtins() ([]*Object, error) {
	objs, err := loadFS(builtinFS, "ddf")
	if err != nil {
		return nil, fmt.Errorf("model: builtins: %w", err)
	}
	return objs, nil
}

// LoadDir parses every *.xml file in dir (not its subfolders) and returns
// the definitions sorted by ID. When several files define the same object,
// as the OMA registry does with "3.xml" beside "3-1_0.xml", the newest
// ObjectVersion wins; two definitions of the same version are an error,
// because which one was meant cannot be told.
func LoadDir(dir string) ([]*Object, error) {
	objs, err := loadFS(os.DirFS(dir), ".")
	if err != nil {
		return nil, fmt.Errorf("model: load dir %s: %w", dir, err)
	}
	return objs, nil
}

func loadFS(fsys fs.FS, dir string) ([]*Object, error) {
	// ReadDir rather than fs.Glob, which hides a missing or unreadable dir.
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	type source struct {
		obj  *Object
		file string
	}
	byID := make(map[uint16]source)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.EqualFold(path.Ext(name), ".xml") {
			continue
		}
		parsed, err := loadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, o := range parsed {
			prev, dup := byID[o.ID]
			switch {
			case !dup || compareVersions(o.Version, prev.obj.Version) > 0:
				byID[o.ID] = source{o, name}
			case compareVersions(o.Version, prev.obj.Version) == 0:
				return nil, fmt.Errorf("%s: object %d version %s already defined in %s", name, o.ID, o.Version, prev.file)
			}
		}
	}
	objs := make([]*Object, 0, len(byID))
	for _, src := range byID {
		objs = append(objs, src.obj)
	}
	slices.SortFunc(objs, func(a, b *Object) int { return cmp.Compare(a.ID, b.ID) })
	return objs, nil
}

func loadFile(fsys fs.FS, name string) ([]*Object, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// parseDDF, not ParseDDF, so the caller's prefix is not repeated.
	objs, err := parseDDF(f)
	if err != nil {
		return nil, fmt.Errorf("parse DDF: %w", err)
	}
	return objs, nil
}

// compareVersions orders dotted versions numerically ("1.10" > "1.9").
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if c := cmp.Compare(x, y); c != 0 {
			return c
		}
	}
	return 0
}
