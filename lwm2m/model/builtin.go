package model

import (
	"cmp"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
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
// the definitions sorted by ID. Two files defining the same object are an
// error, because which one was meant cannot be told.
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
	var objs []*Object
	from := make(map[uint16]string)
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
			if prev, dup := from[o.ID]; dup {
				return nil, fmt.Errorf("%s: object %d already defined in %s", name, o.ID, prev)
			}
			from[o.ID] = name
			objs = append(objs, o)
		}
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
