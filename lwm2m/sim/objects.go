package sim

import (
	"fmt"
	"slices"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// Object IDs the simulator implements.
const (
	objServer      = 1
	objDevice      = 3
	objTemperature = 3303
)

// Resource IDs with behaviour beyond storing a value.
const (
	resServerLifetime      = 1
	resServerDefaultPmin   = 2
	resServerDefaultPmax   = 3
	resServerBinding       = 7
	resServerUpdateTrigger = 8
	resDeviceCurrentTime   = 13
	resSensorValue         = 5700
	resMinMeasured         = 5601
	resMaxMeasured         = 5602
	resMinRange            = 5603
	resMaxRange            = 5604
	resResetMinMax         = 5605
)

// op is the set of operations a resource allows.
type op uint8

const (
	opR op = 1 << iota
	opW
	opE
)

// resDef is one row of the simulator's type table.
type resDef struct {
	typ   lwm2m.DataType
	multi bool
	ops   op
}

// resourceDef is the type table of the objects the simulator holds. It is a
// switch rather than a map so that the package has no mutable globals, and
// so the simulator needs no object-model package.
func resourceDef(object, resource uint16) (resDef, bool) {
	s := func(t lwm2m.DataType, o op) (resDef, bool) { return resDef{typ: t, ops: o}, true }
	m := func(t lwm2m.DataType, o op) (resDef, bool) { return resDef{typ: t, multi: true, ops: o}, true }
	switch object {
	case objServer:
		switch resource {
		case 0:
			return s(lwm2m.TypeInteger, opR)
		case 1, 2, 3:
			return s(lwm2m.TypeInteger, opR|opW)
		case 6:
			return s(lwm2m.TypeBoolean, opR|opW)
		case 7:
			return s(lwm2m.TypeString, opR|opW)
		case 8:
			return s(lwm2m.TypeNone, opE)
		}
	case objDevice:
		switch resource {
		case 0, 1, 2, 3, 16, 17, 18, 19:
			return s(lwm2m.TypeString, opR)
		case 4, 5:
			return s(lwm2m.TypeNone, opE)
		case 6, 7, 11:
			return m(lwm2m.TypeInteger, opR)
		case 9, 10:
			return s(lwm2m.TypeInteger, opR)
		case 13:
			return s(lwm2m.TypeTime, opR|opW)
		case 14, 15:
			return s(lwm2m.TypeString, opR|opW)
		}
	case objTemperature:
		switch resource {
		case 5700, 5601, 5602, 5603, 5604:
			return s(lwm2m.TypeFloat, opR)
		case 5701:
			return s(lwm2m.TypeString, opR)
		case 5605:
			return s(lwm2m.TypeNone, opE)
		case 5750:
			return s(lwm2m.TypeString, opR|opW)
		}
	}
	return resDef{}, false
}

// objectResources lists the resources of an object in ID order, for Discover.
func objectResources(object uint16) []uint16 {
	switch object {
	case objServer:
		return []uint16{0, 1, 2, 3, 6, 7, 8}
	case objDevice:
		return []uint16{0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19}
	case objTemperature:
		return []uint16{5601, 5602, 5603, 5604, 5605, 5700, 5701, 5750}
	}
	return nil
}

// knownObject reports whether the simulator implements the object at all.
func knownObject(object uint16) bool {
	return object == objServer || object == objDevice || object == objTemperature
}

// Resolver returns the simulator's type table as an lwm2m.Resolver, for
// codecs and for callers that decode what the simulator sends.
func Resolver() lwm2m.Resolver {
	return lwm2m.ResolverFunc(func(object, resource uint16) (lwm2m.DataType, bool, bool) {
		d, ok := resourceDef(object, resource)
		return d.typ, d.multi, ok
	})
}

// store holds the data tree. values has single resources at depth 3 and
// resource instances at depth 4; instances records which object instances
// exist, since an instance may exist without readable resources.
type store struct {
	values    map[lwm2m.Path]any
	instances map[lwm2m.Path]bool
	// timeOffset is what a Write to Current Time shifted the device clock by;
	// the resource is computed on read so that it ticks.
	timeOffset time.Duration
}

func newStore(cfg Config) *store {
	s := &store{values: map[lwm2m.Path]any{}, instances: map[lwm2m.Path]bool{}}
	s.instances[lwm2m.InstancePath(objServer, 0)] = true
	set := func(o, i, r uint16, v any) { s.values[lwm2m.ResourcePath(o, i, r)] = v }
	setMulti := func(o, i, r uint16, vs ...any) {
		for ri, v := range vs {
			s.values[lwm2m.ResourceInstancePath(o, i, r, uint16(ri))] = v
		}
	}
	set(objServer, 0, 0, int64(1))
	set(objServer, 0, 1, int64(cfg.Lifetime))
	set(objServer, 0, 2, int64(0))
	set(objServer, 0, 3, int64(0))
	set(objServer, 0, 6, false)
	set(objServer, 0, 7, cfg.Binding)

	s.instances[lwm2m.InstancePath(objDevice, 0)] = true
	set(objDevice, 0, 0, cfg.Manufacturer)
	set(objDevice, 0, 1, cfg.Model)
	set(objDevice, 0, 2, cfg.Serial)
	set(objDevice, 0, 3, cfg.Firmware)
	setMulti(objDevice, 0, 6, int64(1), int64(5))
	setMulti(objDevice, 0, 7, int64(3800), int64(5000))
	set(objDevice, 0, 9, int64(100))
	set(objDevice, 0, 10, int64(15))
	setMulti(objDevice, 0, 11, int64(0))
	set(objDevice, 0, 13, time.Time{}) // placeholder: computed on read
	set(objDevice, 0, 14, "+02:00")
	set(objDevice, 0, 15, "Europe/Berlin")
	set(objDevice, 0, 16, cfg.Binding)
	set(objDevice, 0, 17, "Simulator")
	set(objDevice, 0, 18, "1.0")
	set(objDevice, 0, 19, cfg.Firmware)

	s.addTemperature(0)
	return s
}

// addTemperature creates a 3303 instance with plausible defaults.
func (s *store) addTemperature(id uint16) {
	s.instances[lwm2m.InstancePath(objTemperature, id)] = true
	set := func(r uint16, v any) { s.values[lwm2m.ResourcePath(objTemperature, id, r)] = v }
	set(resSensorValue, 21.5)
	set(5701, "Cel")
	set(resMinMeasured, 21.5)
	set(resMaxMeasured, 21.5)
	set(resMinRange, -40.0)
	set(resMaxRange, 85.0)
	set(5750, "Room")
}

// deleteInstance removes an instance and all its values.
func (s *store) deleteInstance(p lwm2m.Path) {
	delete(s.instances, p)
	for k := range s.values {
		if p.Contains(k) {
			delete(s.values, k)
		}
	}
}

// exists reports whether p names something in the tree: an implemented
// object, an existing instance, a defined resource of an existing instance,
// or an existing instance of a multiple resource.
func (s *store) exists(p lwm2m.Path) bool {
	switch p.Depth {
	case lwm2m.DepthRoot:
		return true
	case lwm2m.DepthObject:
		return knownObject(p.Object)
	case lwm2m.DepthInstance:
		return s.instances[p]
	case lwm2m.DepthResource:
		_, ok := resourceDef(p.Object, p.Resource)
		return ok && s.instances[p.Parent()]
	default:
		d, ok := resourceDef(p.Object, p.Resource)
		if !ok || !d.multi {
			return false
		}
		_, ok = s.values[p]
		return ok
	}
}

// records returns the values at or below p, sorted by path.
func (s *store) records(p lwm2m.Path, now time.Time) []lwm2m.Record {
	var out []lwm2m.Record
	for k, v := range s.values {
		if !p.Contains(k) {
			continue
		}
		if k.Object == objDevice && k.Resource == resDeviceCurrentTime {
			v = now.Add(s.timeOffset).UTC().Truncate(time.Second)
		}
		out = append(out, lwm2m.Record{Path: k, Value: v})
	}
	slices.SortFunc(out, func(a, b lwm2m.Record) int { return comparePath(a.Path, b.Path) })
	return out
}

// instanceIDs returns the existing instances of an object in order.
func (s *store) instanceIDs(object uint16) []uint16 {
	var ids []uint16
	for k := range s.instances {
		if k.Object == object {
			ids = append(ids, k.Instance)
		}
	}
	slices.Sort(ids)
	return ids
}

// resourceInstanceIDs returns the instance IDs of a multiple resource in order.
func (s *store) resourceInstanceIDs(p lwm2m.Path) []uint16 {
	var ids []uint16
	for k := range s.values {
		if k.Depth == lwm2m.DepthResourceInstance && p.Contains(k) {
			ids = append(ids, k.ResourceInstance)
		}
	}
	slices.Sort(ids)
	return ids
}

func comparePath(a, b lwm2m.Path) int {
	x := [5]int{int(a.Object), int(a.Instance), int(a.Resource), int(a.ResourceInstance), int(a.Depth)}
	y := [5]int{int(b.Object), int(b.Instance), int(b.Resource), int(b.ResourceInstance), int(b.Depth)}
	return slices.Compare(x[:], y[:])
}

// normalize turns the Go numeric types a caller of Set may pass into the
// int64/uint64/float64 forms lwm2m.CoerceValue understands.
func normalize(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint:
		return uint64(x)
	case uint8:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	case float32:
		return float64(x)
	}
	return v
}

// coerce converts v to the type of the resource at p.
func coerce(p lwm2m.Path, v any) (any, error) {
	d, ok := resourceDef(p.Object, p.Resource)
	if !ok {
		return nil, fmt.Errorf("sim: no resource %s", p)
	}
	return lwm2m.CoerceValue(d.typ, normalize(v))
}
