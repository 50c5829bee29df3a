package lwm2m

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Registration is a device's current registration with the server.
// ID is stable for an (organisation, endpoint) pair: a re-register of the
// same endpoint replaces the registration but keeps its ID, so that REST
// clients and client-level subscriptions keep working.
type Registration struct {
	ID             string          `json:"id"`
	Organisation   string          `json:"organisation"`
	Endpoint       string          `json:"endpoint"`
	Lifetime       uint32          `json:"lifetime"` // seconds
	Version        string          `json:"version"`  // "1.0", "1.1" or "1.2"
	Binding        string          `json:"binding"`  // "U", "UQ", "S", ...
	QueueMode      bool            `json:"queueMode"`
	SMS            string          `json:"sms,omitempty"`
	RootPath       string          `json:"rootPath"`                 // alternate path from </..>;rt="oma.lwm2m", "/" when absent
	ContentFormats []ContentFormat `json:"contentFormats,omitempty"` // ct= of the root link
	Objects        []LinkedObject  `json:"objects"`
	Address        string          `json:"address"`   // host:port the device sends from
	Transport      string          `json:"transport"` // "udp" or "dtls"
	RegisteredAt   time.Time       `json:"registeredAt"`
	LastUpdate     time.Time       `json:"lastUpdate"`
	ExpiresAt      time.Time       `json:"expiresAt"`
	// Device is what the server read from the device's object 3 after the
	// registration; nil until then. An Update keeps it, a Register does not.
	Device *DeviceInfo `json:"device,omitempty"`
}

// DeviceInfo is the identity a device reports in object 3 (Device):
// resources 0 (Manufacturer), 1 (Model Number), 2 (Serial Number) and
// 3 (Firmware Version). Pre-subscription criteria match on it.
type DeviceInfo struct {
	Manufacturer    string `json:"manufacturer,omitempty"`
	ModelNumber     string `json:"modelNumber,omitempty"`
	SerialNumber    string `json:"serialNumber,omitempty"`
	FirmwareVersion string `json:"firmwareVersion,omitempty"`
}

// LinkedObject is one object or object instance announced in the
// registration payload, with its version (ver=) when given.
type LinkedObject struct {
	Path    Path   `json:"path"` // depth 1 (object) or 2 (instance)
	Version string `json:"version,omitempty"`
}

// Expired reports whether the registration's lifetime has run out at now.
func (r *Registration) Expired(now time.Time) bool { return !now.Before(r.ExpiresAt) }

// Traffic counts CoAP traffic with devices.
type Traffic struct {
	BytesSent        int64 `json:"bytesSent"`
	BytesReceived    int64 `json:"bytesReceived"`
	TransactionCount int64 `json:"transactionCount"` // request/response exchanges, either direction
}

// Attributes are the LwM2M notification attributes (Write-Attributes).
// Nil fields are not set.
type Attributes struct {
	Pmin  *uint32  `json:"pmin,omitempty"`
	Pmax  *uint32  `json:"pmax,omitempty"`
	Epmin *uint32  `json:"epmin,omitempty"`
	Epmax *uint32  `json:"epmax,omitempty"`
	Gt    *float64 `json:"gt,omitempty"`
	Lt    *float64 `json:"lt,omitempty"`
	St    *float64 `json:"st,omitempty"`
}

// IsZero reports whether no attribute is set.
func (a Attributes) IsZero() bool {
	return a.Pmin == nil && a.Pmax == nil && a.Epmin == nil && a.Epmax == nil && a.Gt == nil && a.Lt == nil && a.St == nil
}

// Overlay returns a with the attributes set in top replacing its own, as a
// device applies a Write-Attributes.
func (a Attributes) Overlay(top Attributes) Attributes {
	o := a
	for _, f := range []struct{ dst, src **uint32 }{{&o.Pmin, &top.Pmin}, {&o.Pmax, &top.Pmax}, {&o.Epmin, &top.Epmin}, {&o.Epmax, &top.Epmax}} {
		if *f.src != nil {
			*f.dst = *f.src
		}
	}
	for _, f := range []struct{ dst, src **float64 }{{&o.Gt, &top.Gt}, {&o.Lt, &top.Lt}, {&o.St, &top.St}} {
		if *f.src != nil {
			*f.dst = *f.src
		}
	}
	return o
}

// Query renders the attributes as CoAP Uri-Query values ("pmin=5", ...), in a fixed order.
func (a Attributes) Query() []string {
	var q []string
	u := func(k string, v *uint32) {
		if v != nil {
			q = append(q, k+"="+strconv.FormatUint(uint64(*v), 10))
		}
	}
	f := func(k string, v *float64) {
		if v != nil {
			q = append(q, k+"="+strconv.FormatFloat(*v, 'g', -1, 64))
		}
	}
	u("pmin", a.Pmin)
	u("pmax", a.Pmax)
	f("gt", a.Gt)
	f("lt", a.Lt)
	f("st", a.St)
	u("epmin", a.Epmin)
	u("epmax", a.Epmax)
	return q
}

// ParseAttributes parses Uri-Query values such as "pmin=5" or "gt=20.5";
// unknown keys are an error, as LwM2M requires 4.00 for them.
func ParseAttributes(query []string) (Attributes, error) {
	var a Attributes
	for _, kv := range query {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "pmin", "pmax", "epmin", "epmax":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return a, fmt.Errorf("lwm2m: attribute %s: %w", k, err)
			}
			x := uint32(n)
			switch k {
			case "pmin":
				a.Pmin = &x
			case "pmax":
				a.Pmax = &x
			case "epmin":
				a.Epmin = &x
			case "epmax":
				a.Epmax = &x
			}
		case "gt", "lt", "st":
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return a, fmt.Errorf("lwm2m: attribute %s: %w", k, err)
			}
			switch k {
			case "gt":
				a.Gt = &x
			case "lt":
				a.Lt = &x
			case "st":
				a.St = &x
			}
		default:
			return a, fmt.Errorf("lwm2m: unknown attribute %q", k)
		}
	}
	return a, nil
}

// Errors of device-management operations. Device answers other than
// success come back as *DeviceError.
var (
	// ErrClientNotFound: no registration with that ID (or it expired).
	ErrClientNotFound = errors.New("lwm2m: client not registered")
	// ErrTimeout: the device did not answer in time.
	ErrTimeout = errors.New("lwm2m: device did not answer in time")
)

// DeviceError is a CoAP error response from the device (4.xx or 5.xx).
type DeviceError struct {
	Op   string // "read", "write", ...
	Code uint8  // CoAP code byte: class<<5 | detail (4.04 = 132)
	Msg  string // diagnostic payload, if any
}

// Class returns the CoAP response class (4 or 5).
func (e *DeviceError) Class() int { return int(e.Code >> 5) }

// Detail returns the CoAP response detail (the 04 of 4.04).
func (e *DeviceError) Detail() int { return int(e.Code & 0x1f) }

func (e *DeviceError) Error() string {
	s := fmt.Sprintf("lwm2m: %s: device answered %d.%02d", e.Op, e.Class(), e.Detail())
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}
