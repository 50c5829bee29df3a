package subscriptions

import (
	"bytes"
	"math"
	"slices"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// verdict is what the filter decides for one notification.
type verdict int

const (
	skip       verdict = iota // does not qualify
	deliverNow                // deliver at once
	hold                      // qualifies within pmin: deliver when the quiet period ends
)

// filter applies one subscription's attributes on the server side.
// It is not safe for concurrent use (the client's lock guards it).
type filter struct {
	attrs   lwm2m.Attributes
	last    map[lwm2m.Path]any // values last delivered, or the baseline
	lastAt  time.Time          // when last delivered or baselined; zero: never
	pending bool               // a change qualified within the quiet period
}

// baseline makes recs the reference for later notifications without
// delivering them.
func (f *filter) baseline(recs []lwm2m.Record, now time.Time) { f.delivered(recs, now) }

// delivered records recs as the values the application last saw.
func (f *filter) delivered(recs []lwm2m.Record, now time.Time) {
	if f.last == nil {
		f.last = make(map[lwm2m.Path]any, len(recs))
	}
	for _, r := range recs {
		f.last[r.Path] = r.Value
	}
	f.lastAt = now
	f.pending = false
}

// offer decides on a notification of recs at now. For hold, due is when the
// quiet period ends.
func (f *filter) offer(recs []lwm2m.Record, now time.Time) (v verdict, due time.Time) {
	if f.lastAt.IsZero() {
		return deliverNow, time.Time{}
	}
	since := now.Sub(f.lastAt)
	pmaxDue := f.attrs.Pmax != nil && *f.attrs.Pmax > 0 && since >= seconds(*f.attrs.Pmax)
	if !pmaxDue && !f.pending && !f.changed(recs) {
		return skip, time.Time{}
	}
	if !pmaxDue && f.attrs.Pmin != nil && since < seconds(*f.attrs.Pmin) {
		f.pending = true
		return hold, f.lastAt.Add(seconds(*f.attrs.Pmin))
	}
	return deliverNow, time.Time{}
}

func seconds(s uint32) time.Duration { return time.Duration(s) * time.Second }

// changed reports whether recs meet the change value conditions relative to
// the values last delivered.
func (f *filter) changed(recs []lwm2m.Record) bool {
	a := f.attrs
	conditions := a.Gt != nil || a.Lt != nil || a.St != nil
	for _, r := range recs {
		prev, ok := f.last[r.Path]
		if !ok {
			return true
		}
		v, vnum := lwm2m.Numeric(r.Value)
		pv, pnum := lwm2m.Numeric(prev)
		if !conditions || !vnum || !pnum {
			if !sameValue(prev, r.Value) {
				return true
			}
			continue
		}
		if a.St != nil {
			if *a.St > 0 && math.Abs(v-pv) >= *a.St || *a.St == 0 && v != pv {
				return true
			}
		}
		if a.Gt != nil && (pv > *a.Gt) != (v > *a.Gt) {
			return true
		}
		if a.Lt != nil && (pv < *a.Lt) != (v < *a.Lt) {
			return true
		}
	}
	return false
}

func sameValue(a, b any) bool {
	switch x := a.(type) {
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	}
	if _, ok := b.([]byte); ok {
		return false
	}
	return a == b
}

// mergeRecords overlays newer records on older ones by path, keeping the
// result in path order, so that a held notification carries the current
// state of every resource that changed during the quiet period.
func mergeRecords(older, newer []lwm2m.Record) []lwm2m.Record {
	out := slices.Clone(older)
	for _, r := range newer {
		if i := slices.IndexFunc(out, func(o lwm2m.Record) bool { return o.Path == r.Path }); i >= 0 {
			out[i] = r
		} else {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b lwm2m.Record) int { return comparePaths(a.Path, b.Path) })
	return out
}

func comparePaths(a, b lwm2m.Path) int {
	ids := func(p lwm2m.Path) [5]int {
		return [5]int{int(p.Object), int(p.Instance), int(p.Resource), int(p.ResourceInstance), int(p.Depth)}
	}
	x, y := ids(a), ids(b)
	for i := range x {
		if x[i] != y[i] {
			return x[i] - y[i]
		}
	}
	return 0
}

// under returns the records at or below p.
func under(recs []lwm2m.Record, p lwm2m.Path) []lwm2m.Record {
	var out []lwm2m.Record
	for _, r := range recs {
		if p.Contains(r.Path) {
			out = append(out, r)
		}
	}
	return out
}

// combine chooses the attributes written to the device for the
// subscriptions sharing one observation (see the package documentation).
func combine(all []lwm2m.Attributes) lwm2m.Attributes {
	var c lwm2m.Attributes
	if len(all) == 0 {
		return c
	}
	everyPmin := true
	for _, a := range all {
		if a.Pmin == nil {
			everyPmin = false
		} else if c.Pmin == nil || *a.Pmin < *c.Pmin {
			c.Pmin = ptr(*a.Pmin)
		}
		if a.Pmax != nil && *a.Pmax > 0 && (c.Pmax == nil || *a.Pmax < *c.Pmax) {
			c.Pmax = ptr(*a.Pmax)
		}
	}
	if !everyPmin {
		c.Pmin = nil
	}

	// The device ORs its change conditions; they must let through every
	// change any subscription wants, or the server cannot filter for it.
	var gt, lt, st *float64
	for _, a := range all {
		if a.Gt == nil && a.Lt == nil && a.St == nil {
			return c // this subscription wants every change
		}
		if a.Gt != nil {
			if gt != nil && *gt != *a.Gt {
				return c
			}
			gt = a.Gt
		}
		if a.Lt != nil {
			if lt != nil && *lt != *a.Lt {
				return c
			}
			lt = a.Lt
		}
		if a.St != nil && (st == nil || *a.St < *st) {
			st = a.St
		}
	}
	if gt != nil && lt != nil {
		if !(*lt < *gt) || st != nil && !(*lt+2**st < *gt) {
			return c // the device would reject the combination
		}
	}
	if gt != nil {
		c.Gt = ptr(*gt)
	}
	if lt != nil {
		c.Lt = ptr(*lt)
	}
	if st != nil {
		c.St = ptr(*st)
	}
	return c
}

// toDevice returns the attributes to write so that a device that currently
// has written ends up honouring want, and whether a write is needed at all.
// Attributes cannot be removed through lwm2m.Attributes, so lost ones are
// neutralised instead (see the package documentation).
func toDevice(want, written lwm2m.Attributes) (lwm2m.Attributes, bool) {
	w := want
	if written.Pmin != nil && w.Pmin == nil {
		w.Pmin = ptr(uint32(0))
	}
	if w.St == nil && (written.St != nil || written.Gt != nil && w.Gt == nil || written.Lt != nil && w.Lt == nil) {
		w.St = ptr(0.0)
	}
	return w, !sameAttributes(written.Overlay(w), written)
}

func sameAttributes(a, b lwm2m.Attributes) bool {
	return samePtr(a.Pmin, b.Pmin) && samePtr(a.Pmax, b.Pmax) && samePtr(a.Epmin, b.Epmin) && samePtr(a.Epmax, b.Epmax) &&
		samePtr(a.Gt, b.Gt) && samePtr(a.Lt, b.Lt) && samePtr(a.St, b.St)
}

func samePtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func ptr[T any](v T) *T { return &v }
